"""Caption backends behind one interface (`CaptionBackend`), built by name with `get_backend`.

Each backend is one module here with a `BaseBackend` subclass; the registry finds it.
"""

from __future__ import annotations

from medcap.generation.backends.base import (
    BaseBackend,
    CaptionBackend,
    backend_class,
    backend_names,
    fine_tunable_backends,
    get_backend,
    register_backend,
)

__all__ = [
    "BaseBackend",
    "CaptionBackend",
    "backend_class",
    "backend_names",
    "fine_tunable_backends",
    "get_backend",
    "register_backend",
]
