"""Caption backends behind one interface (`CaptionBackend`), built by name with `get_backend`."""

from __future__ import annotations

from medcap.generation.backends.base import (
    CaptionBackend,
    backend_names,
    get_backend,
    register_backend,
)

__all__ = ["CaptionBackend", "backend_names", "get_backend", "register_backend"]
