"""The caption backend interface and the registry that builds backends by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from medcap.errors import InputError

if TYPE_CHECKING:
    from PIL.Image import Image

    from medcap.generation.prompt import Prompt


@runtime_checkable
class CaptionBackend(Protocol):
    """Writes one caption per (image, prompt) pair.

    Example:
        >>> backend = get_backend("consensus")
        >>> backend.generate([image], [build_prompt(hits, k=5)])
        ['Axial CT of the chest showing a 2 cm nodule in the right upper lobe.']
    """

    name: str  # registry name, e.g. "qwen2-vl"
    model: str  # model id or path the backend runs ("" for model-free backends)

    def generate(self, images: Sequence[Image], prompts: Sequence[Prompt]) -> list[str]:
        """One caption per image; `images[i]` goes with `prompts[i]`."""
        ...


BackendFactory = Callable[..., CaptionBackend]

# name -> "module:callable", imported on first use so heavy libraries load only when needed.
_REGISTRY: dict[str, str | BackendFactory] = {
    "consensus": "medcap.generation.backends.consensus:ConsensusBackend",
    "qwen2-vl": "medcap.generation.backends.qwen2vl:Qwen2VLBackend",
    "blip2-lora": "medcap.generation.backends.blip2_lora:Blip2LoraBackend",
}


def backend_names() -> list[str]:
    """Registered backend names."""
    return sorted(_REGISTRY)


def register_backend(name: str, factory: str | BackendFactory) -> None:
    """Add a backend under `name` (a callable, or a "module:attribute" string)."""
    _REGISTRY[name] = factory


def get_backend(name: str, **options: Any) -> CaptionBackend:
    """Build the backend registered as `name`, passing `options` to its constructor."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise InputError(
            f"unknown caption backend {name!r}; choose one of {', '.join(backend_names())}"
        )
    if isinstance(entry, str):
        module_name, attribute = entry.split(":")
        entry = getattr(importlib.import_module(module_name), attribute)
    backend: CaptionBackend = entry(**options)
    return backend
