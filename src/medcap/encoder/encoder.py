"""Encoder: one open_clip model from a spec; embeds images, texts and cases in batches.

>>> enc = load_encoder("medcap-tiny")
>>> enc.encode_texts(["Axial CT of the chest"]).shape
(1, 64)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from medcap.config import DEFAULTS, EncoderConfig, replace_set
from medcap.devices import resolve_device
from medcap.encoder.checkpoint import (
    fingerprint_state,
    remember_fingerprint,
    remembered_fingerprint,
)
from medcap.encoder.decode import decode_batches, skipped_entry
from medcap.encoder.factory import BuiltModel, build_model
from medcap.encoder.spec import parse_spec
from medcap.errors import InputError
from medcap.types import Record, Skipped

log = logging.getLogger(__name__)

Precision = str  # "auto" | "fp32" | "bf16" | "fp16"


def autocast_dtype(device: torch.device, precision: Precision) -> torch.dtype | None:
    """The autocast dtype for a precision setting (None: plain fp32)."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "fp32":
        return None
    if precision in ("bf16", "fp16"):
        return torch.bfloat16 if precision == "bf16" else torch.float16
    raise InputError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """torch.autocast for `dtype`, or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class Encoder:
    """An open_clip CLIP model with its preprocessing and tokenizer.

    All outputs are (n, embed_dim) float32 numpy arrays with L2-normalised rows.
    """

    def __init__(
        self,
        spec: str,
        built: BuiltModel,
        *,
        device: torch.device,
        precision: Precision = "auto",
        cfg: EncoderConfig = DEFAULTS.encoder,
        checkpoint: Path | None = None,
    ) -> None:
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self.spec = spec
        self.cfg = cfg
        self.device = device
        self.model = built.model.to(device).eval()
        self.tokenizer = built.tokenizer
        self.architecture = built.architecture
        self.preprocess_cfg = built.preprocess_cfg
        self.sidecar = built.sidecar
        self.checkpoint = checkpoint  # the .pt file, for checkpoint specs
        self._checkpoint_key = built.checkpoint_key
        self.autocast_dtype = autocast_dtype(device, precision)
        pp = {k: tuple(v) if isinstance(v, list) else v for k, v in built.preprocess_cfg.items()}
        self.preprocess = image_transform_v2(PreprocessCfg(**pp), is_train=False)
        self.embed_dim = int(built.architecture["config"]["embed_dim"])
        self.input_size = int(max(torch.tensor(pp["size"]).reshape(-1).tolist()))  # pixels
        self.context_length = int(
            open_clip.get_model_tokenize_cfg(self.model).get("context_length", 77)
        )

    def __repr__(self) -> str:
        return f"Encoder(spec={self.spec!r}, dim={self.embed_dim}, device={self.device})"

    @cached_property
    def fingerprint(self) -> str:
        """sha256 hex of architecture + the weights loaded (for a checkpoint, cached by the
        file's path, size and times; never taken from its sidecar)."""
        cached = remembered_fingerprint(self._checkpoint_key)
        if cached:
            return cached
        fingerprint = fingerprint_state(self.architecture, self.model.state_dict())
        if self._checkpoint_key is not None:
            remember_fingerprint(self._checkpoint_key, fingerprint)
        return fingerprint

    @property
    def logit_scale(self) -> float | None:
        """exp(logit_scale) of the CLIP model: how contrastive training sharpened cosine
        similarities before the softmax (100 at most for CLIP); None if the model has none."""
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.detach().exp()) if isinstance(scale, torch.Tensor) else None

    def _forward(self, fn: Any, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(self.device, self.autocast_dtype):
            features = fn(batch.to(self.device, non_blocking=True))
        return torch.nn.functional.normalize(features.float(), dim=-1)

    def _empty(self) -> NDArray[np.float32]:
        return np.zeros((0, self.embed_dim), dtype=np.float32)

    def encode_pixels(self, pixels: torch.Tensor) -> NDArray[np.float32]:
        """Embed preprocessed pixels (n, 3, H, W) -> (n, d) float32, L2-normalised."""
        return self._forward(self.model.encode_image, pixels).cpu().numpy()

    def encode_images(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None
    ) -> NDArray[np.float32]:
        """Embed PIL images (any mode; converted to RGB) -> (n, d) float32, L2-normalised."""
        size = batch_size or self.cfg.batch_size
        out = [self._empty()]
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            pixels = torch.stack([self.preprocess(im.convert("RGB")) for im in chunk])
            out.append(self.encode_pixels(pixels))
        return np.concatenate(out)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids (n, context_length) for texts (truncated to the context length)."""
        return self.tokenizer(list(texts))  # type: ignore[no-any-return]

    def encode_texts(
        self, texts: Sequence[str], *, batch_size: int | None = None
    ) -> NDArray[np.float32]:
        """Embed texts -> (n, d) float32, L2-normalised."""
        size = batch_size or self.cfg.batch_size
        out = [self._empty()]
        for start in range(0, len(texts), size):
            tokens = self.tokenize(texts[start : start + size])
            out.append(self._forward(self.model.encode_text, tokens).cpu().numpy())
        return np.concatenate(out)

    def encode_image_bytes(
        self, blobs: Sequence[bytes], *, batch_size: int | None = None
    ) -> tuple[NDArray[np.float32], list[int]]:
        """Embed encoded images (JPEG, PNG, ... bytes), decoding them with torchvision on the
        encoder's device (nvjpeg on CUDA) while the previous batch runs through the model.

        Returns ((m, d) float32 L2-normalised embeddings of the decodable images, in input
        order; the indices of `blobs` that could not be decoded). Resizing happens on the
        tensor (bicubic, antialiased), so vectors differ slightly from `encode_images`.
        """
        from concurrent.futures import ThreadPoolExecutor

        from medcap.encoder.decode import normalize
        from medcap.encoder.gpu_decode import decode_resize_gpu

        size = batch_size or self.cfg.batch_size
        mean, std = self.preprocess_cfg["mean"], self.preprocess_cfg["std"]
        cuda = self.device.type == "cuda"
        side_stream = torch.cuda.Stream(self.device) if cuda else None  # type: ignore[no-untyped-call]

        def decode(start: int) -> tuple[Any, list[int], list[int], Any]:
            chunk = blobs[start : start + size]
            with torch.cuda.stream(side_stream) if cuda else contextlib.nullcontext():
                pixels, order, failed = decode_resize_gpu(chunk, self.input_size, self.device)
                done = torch.cuda.Event() if cuda else None  # type: ignore[no-untyped-call]
                if done is not None:
                    done.record()
            return pixels, [start + i for i in order], [start + i for i in failed], done

        parts: list[tuple[list[int], NDArray[np.float32]]] = []
        failures: list[int] = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = [pool.submit(decode, s) for s in range(0, len(blobs), size)[:2]]
            next_start = 2 * size
            while pending:
                pixels, order, failed, done = pending.pop(0).result()
                if next_start < len(blobs):
                    pending.append(pool.submit(decode, next_start))
                    next_start += size
                failures.extend(failed)
                if done is not None:
                    torch.cuda.current_stream(self.device).wait_event(done)
                    pixels.record_stream(torch.cuda.current_stream(self.device))
                if order:
                    parts.append((order, self.encode_pixels(normalize(pixels, mean, std))))
        if not parts:
            return self._empty(), sorted(failures)
        index = np.concatenate([np.asarray(o) for o, _ in parts])
        vectors = np.concatenate([v for _, v in parts])
        return vectors[np.argsort(index, kind="stable")], sorted(failures)

    def encode_cases(
        self, records: Sequence[Record], *, batch_size: int | None = None, progress: bool = False
    ) -> tuple[list[Record], NDArray[np.float32], NDArray[np.float32], list[Skipped]]:
        """Embed each record's image and caption; undecodable images are skipped, not fatal.

        Returns (kept records, image embeddings (m, d), caption embeddings (m, d), skipped),
        rows in the order of `records`. Grayscale and other modes are converted, never dropped.
        """
        size = batch_size or self.cfg.batch_size
        kept: list[Record] = []
        skipped: list[Skipped] = []
        image_out, text_out = [self._empty()], [self._empty()]
        bar = _progress_bar(len(records), progress)
        try:
            batches = decode_batches(
                records,
                self.preprocess,
                batch_size=size,
                num_workers=self.cfg.num_workers,
                pin_memory=self.device.type == "cuda",
                draft_size=self.input_size,
            )
            for batch in batches:
                for i, reason in batch.failures:
                    skipped.append(skipped_entry(records[i], reason))
                    log.warning("skipped %s: %s", records[i].image_id, reason)
                if batch.pixels is not None:
                    batch_records = [records[i] for i in batch.indices]
                    kept.extend(batch_records)
                    image_out.append(self.encode_pixels(batch.pixels))
                    tokens = self.tokenize([r.caption for r in batch_records])
                    text_out.append(self._forward(self.model.encode_text, tokens).cpu().numpy())
                bar.update(len(batch.indices) + len(batch.failures))
        finally:
            bar.close()
        return kept, np.concatenate(image_out), np.concatenate(text_out), skipped


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, unit="case", desc="embedding", disable=None if enabled else True, leave=False
    )


def load_encoder(
    spec: str,
    *,
    device: str | None = None,
    precision: Precision | None = None,
    cfg: EncoderConfig | None = None,
) -> Encoder:
    """Build the encoder a spec names (see medcap.encoder.spec for the forms).

    `device` ("auto", "cpu", "cuda:1") and `precision` ("auto": bf16 autocast on GPU, fp32
    on CPU) override `cfg` (EncoderConfig: batch size, DataLoader workers, init seed).

    >>> load_encoder("medcap-tiny").embed_dim
    64
    """
    cfg = replace_set(cfg or DEFAULTS.encoder, device=device, precision=precision)
    parsed = parse_spec(spec)
    built = build_model(parsed, seed=cfg.init_seed, probe_timeout_s=cfg.hub_probe_timeout_s)
    checkpoint = parsed.path.resolve() if parsed.kind == "checkpoint" and parsed.path else None
    return Encoder(
        parsed.recorded,
        built,
        device=resolve_device(cfg.device),
        precision=cfg.precision,
        cfg=cfg,
        checkpoint=checkpoint,
    )
