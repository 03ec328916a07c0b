"""Shared plumbing for the transformers backends: device/dtype checks, offline-safe loading,
LoRA adapters and batched generation that survives running out of GPU memory."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from medcap.config import DEFAULTS, GenerationConfig
from medcap.devices import resolve_device
from medcap.errors import InputError, MissingExtraError, OfflineFetchError, first_line
from medcap.generation.adapter import read_adapter_info
from medcap.generation.backends.base import BaseBackend
from medcap.offline import is_offline
from medcap.snapshots.bundle import bundle_model_dir
from medcap.snapshots.folders import CONFIG, check_model_folder

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

GPU_ONLY_ATTENTION = frozenset({"flash_attention_2", "flash_attention_3"})
ATTENTION_CHOICES = ("eager", "sdpa", *sorted(GPU_ONLY_ATTENTION))


# The oldest transformers the generation tests pass with (5.0.0 and 5.24 were run): loading
# takes `dtype=` and the tiny configs use v5's `rope_parameters`. pyproject.toml's [gen]
# floor says the same (a test keeps them equal).
MIN_TRANSFORMERS = (5, 0)


def require_transformers() -> None:
    """Raise MissingExtraError when the [gen] extra (transformers, peft) is missing, and an
    InputError when transformers is older than MIN_TRANSFORMERS."""
    try:
        import peft  # noqa: F401
        import transformers
    except ImportError as exc:
        raise MissingExtraError(exc.name or "transformers", "gen") from None
    found = tuple(int(part) for part in re.findall(r"\d+", transformers.__version__)[:2])
    if found < MIN_TRANSFORMERS:
        floor = ".".join(map(str, MIN_TRANSFORMERS))
        raise InputError(
            f"transformers {transformers.__version__} is too old for medcap's generators "
            f"(needs >= {floor}); upgrade with: pip install -U 'transformers>={floor}'"
        )


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` -> bfloat16 on GPU, float32 on CPU; half precision on CPU is refused."""
    import torch

    choices = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in choices:
        raise InputError(f"unknown dtype {dtype!r}; use auto, fp32, bf16 or fp16")
    if device.type == "cpu" and dtype != "fp32":
        raise InputError(
            f"dtype {dtype} is a GPU setting and this run is on the CPU; use --dtype fp32 or auto"
        )
    return choices[dtype]


def check_attention(attn_implementation: str, device: torch.device) -> str:
    """Validate the attention kernel for the device (flash attention needs a GPU)."""
    if attn_implementation not in ATTENTION_CHOICES:
        raise InputError(
            f"unknown attention implementation {attn_implementation!r}; "
            f"use one of {', '.join(ATTENTION_CHOICES)}"
        )
    if attn_implementation in GPU_ONLY_ATTENTION and device.type != "cuda":
        raise InputError(f"attention {attn_implementation} needs a CUDA GPU; use sdpa on the CPU")
    return attn_implementation


def looks_like_path(model_id: str) -> bool:
    """True for strings meant as local paths rather than hub ids."""
    return model_id.startswith(("/", ".", "~")) or Path(model_id).expanduser().exists()


def local_model_dir(model_id: str) -> Path | None:
    """The local folder a generator id names: the path itself, or the active bundle's copy
    of a hub id (MEDCAP_BUNDLE); None for a hub id to load from the cache or the hub."""
    if looks_like_path(model_id):
        return Path(model_id).expanduser()
    return bundle_model_dir(model_id)


def check_generator_folder(
    folder: Path, label: str, model_class: str, *, chat_template: bool
) -> None:
    """One line naming what is wrong with a local generator folder before transformers reads
    it: a missing file, a truncated shard, an architecture transformers does not know, or a
    model of another family than the backend's."""
    import transformers

    if not folder.is_dir():
        what = "is not a directory" if folder.exists() else "does not exist"
        raise InputError(f"{label} path {folder} {what}; pass a model directory with --model")
    config = check_model_folder(
        folder, f"{label} model", processor=True, chat_template=chat_template
    )
    model_type = config.get("model_type")
    architectures = [str(a) for a in config.get("architectures") or []]
    if model_type not in transformers.CONFIG_MAPPING:
        raise InputError(
            f"{folder / CONFIG} names an architecture this transformers "
            f"{transformers.__version__} does not know (model_type {model_type!r}, "
            f"architectures {architectures}); pass a {label} model folder or upgrade transformers"
        )
    if architectures and model_class not in architectures:
        raise InputError(
            f"{folder / CONFIG} is a {architectures[0]} model, not a {label} model "
            f"({model_class}); pass a {label} folder or choose the matching --backend"
        )


def load_pretrained(loader: Callable[..., Any], model_id: str, what: str, **kwargs: Any) -> Any:
    """Call `loader(model_id, **kwargs)` (a `from_pretrained`); failures become one-line errors."""
    if looks_like_path(model_id) and not Path(model_id).expanduser().exists():
        raise InputError(
            f"{what} path {model_id} does not exist; pass an existing directory with --model"
        )
    local = looks_like_path(model_id)
    if not local and is_offline("models"):  # MEDCAP_OFFLINE too: the local cache only
        kwargs = {**kwargs, "local_files_only": True}
    try:
        return loader(str(Path(model_id).expanduser()) if local else model_id, **kwargs)
    except (OSError, ValueError) as exc:
        if local:
            raise InputError(
                f"{what} at {model_id} could not be loaded ({first_line(exc)}); "
                "pass a saved model directory"
            ) from None
        if not isinstance(exc, OSError):  # a hub id that was found but is not usable: a real bug
            raise
        raise OfflineFetchError(
            f"could not load {what} {model_id!r}: not in the local Hugging Face cache and the "
            "hub is unreachable; download it on a connected machine (`medcap fetch` writes a "
            "bundle to use with MEDCAP_BUNDLE), or pass a local directory with --model PATH"
        ) from None


def attention_option(attn_implementation: str, device: torch.device) -> dict[str, str]:
    """`from_pretrained` keyword for the attention kernel; sdpa is transformers' own default."""
    chosen = check_attention(attn_implementation, device)
    return {} if chosen == "sdpa" else {"attn_implementation": chosen}


def attach_adapter(model: Any, adapter: str | Path) -> Any:
    """Wrap `model` with the LoRA adapter saved in directory `adapter` (inference mode)."""
    from peft import PeftModel

    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise InputError(
            f"{path} is not a LoRA adapter directory (no adapter_config.json); pass --adapter DIR"
        )
    return PeftModel.from_pretrained(model, str(path), is_trainable=False)


# What running out of GPU memory looks like besides torch.OutOfMemoryError: the caching
# allocator's message, CUDA's own, and cuBLAS/cuDNN failing to allocate a workspace or handle
# (their NOT_INITIALIZED/INTERNAL_ERROR statuses are usually that too). A false positive only
# costs a retry at a smaller batch; at batch 1 the error is raised as it is.
ALLOCATION_FAILURES = (
    "out of memory",
    "cublas_status_alloc_failed",
    "cublas_status_not_initialized",
    "cudnn_status_alloc_failed",
    "cudnn_status_not_initialized",
    "cudnn_status_internal_error",
)
REGROW_AFTER = 8  # successful batches in a row before a halved batch size doubles again


def is_out_of_memory(exc: BaseException) -> bool:
    """True for GPU out-of-memory errors: torch's, CUDA's, and cuBLAS/cuDNN allocation failures."""
    import torch

    if isinstance(exc, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in message for m in ALLOCATION_FAILURES)


def batch_buckets(limit: int) -> list[int]:
    """The batch sizes a static-cache run uses: `limit` and the powers of two below it."""
    sizes = {limit}
    size = 1
    while size < limit:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


class OomBatcher:
    """Runs `fn` over batches of at most `batch_size` items. On running out of GPU memory
    it halves the batch and retries, so a long run is not lost; after `regrow_after`
    successful batches in a row it doubles again (up to the configured size), so one
    crowded moment does not slow the rest of the run. Each out-of-memory after a regrowth
    doubles the wait before the next one.

    With `buckets` (static KV cache) every call gets a size from `batch_buckets(batch_size)`
    and a short last chunk is padded by repeating its final item (its results are dropped):
    a static cache compiles its graphs once per batch size, not once per chunk length.
    """

    def __init__(
        self, batch_size: int, *, buckets: bool = False, regrow_after: int = REGROW_AFTER
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        self.limit = batch_size
        self.batch_size = batch_size
        self.buckets = batch_buckets(batch_size) if buckets else None
        self.regrow_after = regrow_after
        self._successes = 0
        self._probing = False  # the batch size just grew and has not succeeded yet

    def _round(self, n: int, *, up: bool) -> int:
        """`n` as the nearest bucket size above (`up`) or below it; `n` without buckets."""
        if self.buckets is None:
            return n
        if up:
            return next(b for b in self.buckets if b >= n)
        return max(b for b in self.buckets if b <= n)

    def _shrink(self, failed: int) -> None:
        self.batch_size = self._round(max(1, min(self.batch_size, failed) // 2), up=False)
        if self._probing:
            self.regrow_after *= 2  # the grown size ran out at once: wait longer next time
        self._probing = False
        self._successes = 0
        log.warning(
            "out of GPU memory at batch %d; retrying with batch %d", failed, self.batch_size
        )

    def _grow(self) -> None:
        self._probing = False
        self._successes += 1
        if self.batch_size < self.limit and self._successes >= self.regrow_after:
            self.batch_size = self._round(min(self.limit, self.batch_size * 2), up=True)
            self._successes = 0
            self._probing = True
            log.info("batch size back up to %d", self.batch_size)

    def run(self, items: Sequence[T], fn: Callable[[Sequence[T]], list[R]]) -> list[R]:
        """Apply `fn` to consecutive slices of `items`; returns the concatenated results."""
        out: list[R] = []
        start = 0
        while start < len(items):
            chunk = list(items[start : start + self.batch_size])
            padded = chunk + chunk[-1:] * (self._round(len(chunk), up=True) - len(chunk))
            try:
                results = fn(padded)
            except Exception as exc:
                if not is_out_of_memory(exc) or self.batch_size == 1:
                    raise
                results = None
            if results is None:
                # Freed only out here: inside `except` the traceback still holds the failed
                # call's frames, and with them the tensors of the batch that did not fit.
                self._shrink(len(padded))
                _free_cuda_memory()
                continue
            out.extend(results[: len(chunk)])
            start += len(chunk)
            self._grow()
        return out


def _free_cuda_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def new_tokens(
    sequences: torch.Tensor, prompt_length: int, input_ids: torch.Tensor
) -> torch.Tensor:
    """The generated part of `generate` output: drop the echoed prompt when it is there."""
    if sequences.shape[1] >= prompt_length and bool(
        (sequences[:, :prompt_length] == input_ids).all()
    ):
        return sequences[:, prompt_length:]
    return sequences


def model_name(model: Any, fallback: str = "custom") -> str:
    """The id or path a model was loaded from, when transformers recorded it."""
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", "") or ""
    return str(name) or fallback


def load_model_and_processor(
    model_class: str,
    processor_class: str,
    label: str,
    model_id: str,
    cfg: GenerationConfig,
    device: torch.device,
    dtype: torch.dtype,
    *,
    chat_template: bool = False,
) -> tuple[Any, Any]:
    """Load a transformers model and processor (by class name) from a hub id, a path, or the
    active bundle's copy of a hub id; a local folder is checked first (check_generator_folder).
    """
    import transformers

    local = local_model_dir(model_id)
    if local is not None:
        check_generator_folder(local, label, model_class, chat_template=chat_template)
        model_id = str(local)
    model = load_pretrained(
        getattr(transformers, model_class).from_pretrained,
        model_id,
        f"{label} model",
        dtype=dtype,
        **attention_option(cfg.attn_implementation, device),
    )
    processor = load_pretrained(
        getattr(transformers, processor_class).from_pretrained, model_id, f"{label} processor"
    )
    return model.to(device), processor


class PretrainedBackend(BaseBackend):
    """Set-up shared by the transformers backends: a given or loaded model and processor,
    an optional LoRA adapter, left padding, and a batcher that halves on out-of-memory."""

    model_class: ClassVar[str] = ""  # transformers class names `load` uses
    processor_class: ClassVar[str] = ""
    label: ClassVar[str] = ""  # how messages name the model family
    needs_chat_template: ClassVar[bool] = False  # its prompts go through a chat template

    @classmethod
    def load(
        cls, model_id: str, cfg: GenerationConfig, device: torch.device, dtype: torch.dtype
    ) -> tuple[Any, Any]:
        """Load the model and its processor from a hub id (cache only when offline) or a path."""
        return load_model_and_processor(
            cls.model_class,
            cls.processor_class,
            cls.label,
            model_id,
            cfg,
            device,
            dtype,
            chat_template=cls.needs_chat_template,
        )

    def __init__(
        self,
        *,
        model: Any | None = None,
        processor: Any | None = None,
        model_id: str | None = None,
        adapter: str | Path | None = None,
        cfg: GenerationConfig = DEFAULTS.generation,
    ) -> None:
        require_transformers()
        import torch

        if (model is None) != (processor is None):
            raise ValueError("pass both model and processor, or neither")
        self.cfg = cfg
        info = read_adapter_info(adapter) if adapter else None
        if model is None:
            model_id = model_id or (info.base_model if info else None) or self.default_model
            device = resolve_device(cfg.device)
            model, processor = self.load(model_id, cfg, device, resolve_dtype(cfg.dtype, device))
        self.model = model_id or model_name(model)
        if adapter:
            model = attach_adapter(model, adapter)
            self.model += f"+{Path(adapter).name}"
        self.net = model.eval()
        assert processor is not None  # both given, or both loaded above
        self.processor: Any = processor
        self.processor.tokenizer.padding_side = "left"
        self.device = next(model.parameters()).device
        self.dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        self._batcher = OomBatcher(cfg.batch_size, buckets=cfg.static_cache)
        tokenizer = self.processor.tokenizer
        self._pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self._torch = torch
