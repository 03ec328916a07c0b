"""The caption backend interface and the registry that finds backends by name.

A backend is one module in this package holding a `BaseBackend` subclass with a `name`:
the registry finds it there, so adding a backend is adding one file. The class says what
the rest of medcap needs to know about it (default model, default prompt template, LoRA
target modules, how to load its model and how to turn a training example into tensors);
nothing outside this package branches on a backend's name.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from medcap.errors import InputError

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from medcap.config import GenerationConfig
    from medcap.generation.collate import TrainExample
    from medcap.generation.prompt import Prompt

_HELPER_MODULES = frozenset({"base", "hf"})  # modules of this package that hold no backend


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


class BaseBackend:
    """What a backend class declares about itself; subclasses override what applies.

    Options given to `get_backend` reach the constructor: `model_id` and `adapter` override
    the default model (a model-free backend refuses them), `cfg` carries the generation
    settings; `GenerationConfig.template` and `.lora_targets` override the defaults below.
    """

    name: ClassVar[str] = ""  # registry name; empty in abstract classes
    default_model: ClassVar[str] = ""  # hub id or path it loads by default; "" = no model
    default_template: ClassVar[str] = "default"  # prompt template when none is chosen
    lora_targets: ClassVar[tuple[str, ...]] = ()  # modules LoRA wraps; () = not fine-tunable

    @classmethod
    def load(
        cls, model_id: str, cfg: GenerationConfig, device: torch.device, dtype: torch.dtype
    ) -> tuple[Any, Any]:
        """(model, processor) from a hub id or a local directory."""
        raise InputError(f"the {cls.name} backend loads no model")

    @classmethod
    def encode_example(
        cls,
        processor: Any,
        model_config: Any,
        image: Image,
        example: TrainExample,
        cfg: GenerationConfig,
    ) -> dict[str, torch.Tensor]:
        """Tensors of one training example, tokenised as `generate` tokenises (no batch dim)."""
        raise InputError(not_fine_tunable(cls.name))

    @classmethod
    def collate(
        cls, items: Sequence[dict[str, torch.Tensor]], pad_id: int
    ) -> dict[str, torch.Tensor]:
        """Right-pad encoded examples into one batch (pads are masked and unlabelled)."""
        raise InputError(not_fine_tunable(cls.name))


# name -> backend class, or "module:Class" for backends registered by hand and imported on use.
_REGISTRY: dict[str, type[BaseBackend] | str] = {}
_discovered = False


def _discover() -> None:
    """Register every backend class defined in this package's modules (once)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module(__package__ or "medcap.generation.backends")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in _HELPER_MODULES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseBackend)
                and value.__module__ == module.__name__
                and value.name
            ):
                _REGISTRY.setdefault(value.name, value)


def backend_names() -> list[str]:
    """Registered backend names."""
    _discover()
    return sorted(_REGISTRY)


def fine_tunable_backends() -> list[str]:
    """Names of the backends that have LoRA target modules (`medcap train generator`)."""
    return [name for name in backend_names() if backend_class(name).lora_targets]


def not_fine_tunable(name: str) -> str:
    """The one-line message for fine-tuning a backend that cannot be fine-tuned."""
    return (
        f"cannot fine-tune backend {name!r}; use --backend {' or '.join(fine_tunable_backends())}"
    )


def register_backend(name: str, backend: type[BaseBackend] | str) -> None:
    """Add a backend under `name`: a `BaseBackend` subclass, or "module:Class" imported on use."""
    _discover()
    _REGISTRY[name] = backend


def backend_class(name: str) -> type[BaseBackend]:
    """The class registered as `name`; an unknown name is an InputError listing the known ones."""
    _discover()
    entry = _REGISTRY.get(name)
    if entry is None:
        raise InputError(
            f"unknown caption backend {name!r}; choose one of {', '.join(backend_names())}"
        )
    if isinstance(entry, str):
        module_name, attribute = entry.split(":")
        entry = _REGISTRY[name] = getattr(importlib.import_module(module_name), attribute)
    return entry


def get_backend(name: str, **options: Any) -> CaptionBackend:
    """Build the backend registered as `name`, passing `options` to its constructor."""
    factory: Any = backend_class(name)  # each backend class has its own constructor options
    backend: CaptionBackend = factory(**options)
    return backend
