"""A traced copy of an encoder's image tower, cached by fingerprint, for fast image search.

`import open_clip` takes ~2.7 s on a 2-core machine (it imports torchvision and
transformers): more than everything else in a one-image `medcap search` together. A
TorchScript trace of the image tower loads with torch alone in ~0.05 s. `save_image_tower`
writes one per encoder fingerprint to the cache folder (MEDCAP_CACHE_DIR, else
$XDG_CACHE_HOME/medcap, else ~/.cache/medcap); `load_image_tower` returns an encoder that
embeds images on the CPU through it and loads the full encoder for anything else.

The trace must reproduce the eager model (checked before saving), and the preprocessing
here must reproduce open_clip's (checked by tests), so both paths give the same vectors.
A missing, unreadable or stale file only means the slower path. TorchScript is deprecated
upstream; where it is gone, nothing is cached and search takes the full path.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from medcap.atomic import write_atomic, write_json_atomic
from medcap.config import DEFAULTS
from medcap.errors import first_line
from medcap.types import Record, Skipped

if TYPE_CHECKING:
    from medcap.encoder.encoder import Encoder

log = logging.getLogger(__name__)

TOWER_DIR = "image-towers"
FORMAT = 1
_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "random": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}  # open_clip evaluates "random" as bicubic


def cache_root() -> Path:
    """medcap's cache folder (MEDCAP_CACHE_DIR, else $XDG_CACHE_HOME/medcap, else ~/.cache)."""
    if os.environ.get("MEDCAP_CACHE_DIR"):
        return Path(os.environ["MEDCAP_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "medcap"


def tower_paths(fingerprint: str) -> tuple[Path, Path]:
    """(TorchScript file, JSON record) of the cached image tower for a fingerprint."""
    stem = cache_root() / TOWER_DIR / fingerprint[:40]
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def supported_preprocess(cfg: dict[str, Any]) -> bool:
    """Whether `preprocess` below reproduces open_clip's eval transform for `cfg`."""
    size = cfg.get("size")
    sizes = [size] * 2 if isinstance(size, int) else list(size or [])
    mode = cfg.get("resize_mode") or "shortest"
    square = len(sizes) == 2 and sizes[0] == sizes[1]
    interpolation = cfg.get("interpolation") or "bicubic"
    return interpolation in _RESAMPLE and (mode == "squash" or (mode == "shortest" and square))


def preprocess(image: Image.Image, cfg: dict[str, Any]) -> NDArray[np.float32]:
    """open_clip's eval transform in PIL and numpy: (3, s, s) float32, normalised.

    Shortest side to s then a centre crop ("shortest"), or a plain resize ("squash"),
    with the same size and crop arithmetic as torchvision's Resize and CenterCrop.
    """
    size = cfg["size"] if isinstance(cfg["size"], int) else int(cfg["size"][0])
    resample = _RESAMPLE[cfg.get("interpolation") or "bicubic"]
    image = image.convert("RGB")
    if (cfg.get("resize_mode") or "shortest") == "squash":
        if image.size != (size, size):
            image = image.resize((size, size), resample)
    else:
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(size * long / short)
        new_w, new_h = (size, new_long) if w <= h else (new_long, size)
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), resample)
        top = int(round((new_h - size) / 2.0))
        left = int(round((new_w - size) / 2.0))
        if (new_w, new_h) != (size, size):
            image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255)
    mean = np.asarray(cfg["mean"], dtype=np.float32)
    std = np.asarray(cfg["std"], dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def _trace_visual(encoder: Encoder) -> Any | None:
    """A TorchScript trace of the image tower on the CPU, or None if it is not supported
    or does not reproduce the eager model."""
    visual = getattr(encoder.model, "visual", None)
    if visual is None or "multimodal_cfg" in encoder.architecture["config"]:
        return None  # CoCa's encode_image is not its visual tower's output
    if not supported_preprocess(encoder.preprocess_cfg) or not hasattr(torch, "jit"):
        return None
    size = encoder.input_size
    try:
        with torch.inference_mode(False), torch.no_grad():
            visual = visual.to("cpu").eval()
            traced = torch.jit.trace(  # type: ignore[no-untyped-call]
                visual, torch.randn(2, 3, size, size), check_trace=False
            )
            probe = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
            same = torch.allclose(traced(probe), visual(probe), atol=1e-5, rtol=1e-4)
    finally:
        encoder.model.to(encoder.device)
    if not same:
        log.info("not caching the image tower: its trace differs from the model")
        return None
    return traced


def save_image_tower(encoder: Encoder) -> Path | None:
    """Trace the encoder's image tower into the cache (once per fingerprint).

    Returns the file, or None when the model or its preprocessing is not supported, or
    the trace does not match the eager model. Never raises for an unwritable cache.
    """
    pt_path, meta_path = tower_paths(encoder.fingerprint)
    if pt_path.exists() and meta_path.exists():
        return pt_path
    record = {
        "format": FORMAT,
        "fingerprint": encoder.fingerprint,
        "spec": encoder.spec,
        "embed_dim": encoder.embed_dim,
        "preprocess": dict(encoder.preprocess_cfg),
        "torch": torch.__version__,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
            traced = _trace_visual(encoder)
            if traced is None:
                return None
            write_atomic(pt_path, lambda handle: torch.jit.save(traced, handle))
        write_json_atomic(meta_path, record)  # last: its presence marks a complete entry
    except (RuntimeError, OSError, TypeError) as exc:
        log.info("not caching the image tower (%s)", first_line(exc, 160))
        return None
    return pt_path


class ImageTowerEncoder:
    """Stands in for an Encoder: images through the cached trace (CPU), the rest through
    the full encoder, built by `load_full` on first use."""

    def __init__(
        self, module: Any, record: dict[str, Any], load_full: Callable[[], Encoder]
    ) -> None:
        self._module = module
        self._load_full = load_full
        self.preprocess_cfg: dict[str, Any] = record["preprocess"]
        self.fingerprint: str = record["fingerprint"]
        self.spec: str = record["spec"]
        self.embed_dim = int(record["embed_dim"])

    def __repr__(self) -> str:
        return f"ImageTowerEncoder(spec={self.spec!r}, dim={self.embed_dim})"

    @cached_property
    def full(self) -> Encoder:
        """The full open_clip encoder (loaded on first use)."""
        return self._load_full()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.full, name)  # the model itself, its tokenizer: the full encoder

    def encode_texts(self, texts: Sequence[str], **options: Any) -> NDArray[np.float32]:
        """Texts go through the full encoder (see Encoder.encode_texts)."""
        return self.full.encode_texts(texts, **options)

    def encode_cases(
        self, records: Sequence[Record], **options: Any
    ) -> tuple[list[Record], NDArray[np.float32], NDArray[np.float32], list[Skipped]]:
        """Cases go through the full encoder (see Encoder.encode_cases)."""
        return self.full.encode_cases(records, **options)

    def encode_images(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None
    ) -> NDArray[np.float32]:
        """Embed PIL images -> (n, d) float32, L2-normalised (as Encoder.encode_images)."""
        size = batch_size or DEFAULTS.encoder.batch_size
        out = [np.zeros((0, self.embed_dim), dtype=np.float32)]
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            pixels = torch.from_numpy(
                np.stack([preprocess(im, self.preprocess_cfg) for im in chunk])
            )
            with torch.inference_mode():
                features = self._module(pixels)
            out.append(torch.nn.functional.normalize(features.float(), dim=-1).numpy())
        return np.concatenate(out)


def load_image_tower(
    fingerprint: str, load_full: Callable[[], Encoder]
) -> ImageTowerEncoder | None:
    """The cached image tower for `fingerprint` as an encoder, or None if there is none."""
    pt_path, meta_path = tower_paths(fingerprint)
    if not meta_path.exists() or not pt_path.exists():
        return None
    try:
        record = json.loads(meta_path.read_text())
        if record.get("format") != FORMAT or record.get("fingerprint") != fingerprint:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(pt_path), map_location="cpu")  # type: ignore[no-untyped-call]
    except (OSError, RuntimeError, ValueError, AttributeError) as exc:
        log.warning("ignoring the cached image tower %s (%s)", pt_path, str(exc)[:120])
        return None
    return ImageTowerEncoder(module.eval(), record, load_full)
