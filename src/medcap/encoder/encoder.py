"""Encoder: one open_clip model from a spec; embeds images, texts and cases in batches.

>>> enc = load_encoder("medcap-tiny")
>>> enc.encode_texts(["Axial CT of the chest"]).shape
(1, 64)
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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
from medcap.encoder.decode import (
    DecodedBatch,
    ImageDecoder,
    normalize,
    skipped_entry,
    uint8_transform,
)
from medcap.encoder.factory import BuiltModel, build_model
from medcap.encoder.gpu_decode import decode_batch, geometry_of
from medcap.encoder.spec import parse_spec
from medcap.errors import InputError
from medcap.types import ImageRef, Record, Skipped

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
        self.geometry = geometry_of(pp)  # None: only Pillow reproduces this preprocessing
        self._decoder: ImageDecoder | None = None  # Pillow workers, started on first use
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
        """Features of a batch on the device, float32, L2-normalised (not copied back)."""
        with torch.inference_mode(), autocast(self.device, self.autocast_dtype):
            features = fn(batch.to(self.device, non_blocking=True))
        return torch.nn.functional.normalize(features.float(), dim=-1)

    def _to_numpy(self, parts: list[torch.Tensor]) -> NDArray[np.float32]:
        # One copy back per call: a copy per batch would stop the host until the GPU is done.
        if not parts:
            return self._empty()
        vectors: NDArray[np.float32] = torch.cat(parts).cpu().numpy()
        return vectors

    def _empty(self) -> NDArray[np.float32]:
        return np.zeros((0, self.embed_dim), dtype=np.float32)

    def _normalized(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels moved to the device and normalised there."""
        mean, std = self.preprocess_cfg["mean"], self.preprocess_cfg["std"]
        return normalize(pixels.to(self.device, non_blocking=True), mean, std)

    def encode_pixels(self, pixels: torch.Tensor) -> NDArray[np.float32]:
        """Embed preprocessed pixels (n, 3, H, W) -> (n, d) float32, L2-normalised."""
        return self._to_numpy([self._forward(self.model.encode_image, pixels)])

    def encode_images(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None
    ) -> NDArray[np.float32]:
        """Embed PIL images (any mode; converted to RGB) -> (n, d) float32, L2-normalised."""
        size = batch_size or self.cfg.batch_size
        out = []
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            pixels = torch.stack([self.preprocess(im.convert("RGB")) for im in chunk])
            out.append(self._forward(self.model.encode_image, pixels))
        return self._to_numpy(out)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids (n, context_length) for texts (truncated to the context length)."""
        return self.tokenizer(list(texts))  # type: ignore[no-any-return]

    def encode_texts(
        self, texts: Sequence[str], *, batch_size: int | None = None
    ) -> NDArray[np.float32]:
        """Embed texts -> (n, d) float32, L2-normalised."""
        size = batch_size or self.cfg.batch_size
        out = []
        for start in range(0, len(texts), size):
            tokens = self.tokenize(texts[start : start + size])
            out.append(self._forward(self.model.encode_text, tokens))
        return self._to_numpy(out)

    @property
    def decodes_on_device(self) -> bool:
        """Whether `encode_cases` decodes JPEG/PNG bytes with torchvision on the device
        (nvjpeg under CUDA) rather than with Pillow in DataLoader workers."""
        if self.geometry is None or self.cfg.image_decode == "workers":
            return False
        return self.cfg.image_decode == "device" or self.device.type == "cuda"

    def _device_batches(
        self, refs: Sequence[ImageRef], size: int, prepare: Any = None
    ) -> Iterator[tuple[DecodedBatch, Any]]:
        """Decode `refs` with `decode_batch` on a thread, two batches ahead of the model.

        Yields (batch with indices into `refs`, `prepare(batch)` computed on that thread).
        On CUDA the decoding runs on a side stream whose work the model's stream waits for.
        """
        assert self.geometry is not None
        geometry, device = self.geometry, self.device
        side = torch.cuda.Stream(device) if device.type == "cuda" else None  # type: ignore[no-untyped-call]

        def work(start: int) -> tuple[DecodedBatch, Any, Any]:
            done = None
            with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
                if side is not None:
                    # nvjpeg writes on its own stream into memory allocated on this one: the
                    # previous batch's kernels here must finish before that memory is reused.
                    side.synchronize()
                batch = decode_batch(refs[start : start + size], geometry, device)
                if side is not None:
                    done = torch.cuda.Event()  # type: ignore[no-untyped-call]
                    done.record(side)
            batch.indices = [start + i for i in batch.indices]
            batch.failures = [(start + i, why) for i, why in batch.failures]
            return batch, done, prepare(batch) if prepare is not None else None

        starts = iter(range(0, len(refs), size))
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = deque(pool.submit(work, s) for s in itertools.islice(starts, 2))
            while pending:
                batch, done, extra = pending.popleft().result()
                following = next(starts, None)
                if following is not None:
                    pending.append(pool.submit(work, following))
                if done is not None and batch.pixels is not None:
                    current = torch.cuda.current_stream(device)
                    current.wait_event(done)
                    batch.pixels.record_stream(current)  # freed only after the model used it
                yield batch, extra

    def _worker_batches(
        self, records: Sequence[Record], size: int
    ) -> Iterator[tuple[DecodedBatch, torch.Tensor]]:
        """Pillow decoding in the persistent DataLoader workers; captions tokenized here."""
        if self._decoder is None:
            self._decoder = ImageDecoder(
                uint8_transform(self.preprocess),
                num_workers=self.cfg.num_workers,
                pin_memory=self.device.type == "cuda",
                draft_size=self.input_size,
            )
        for batch in self._decoder.batches(records, batch_size=size):
            yield batch, self.tokenize([records[i].caption for i in batch.indices])

    def encode_image_bytes(
        self, blobs: Sequence[bytes], *, batch_size: int | None = None
    ) -> tuple[NDArray[np.float32], list[int]]:
        """Embed encoded images (JPEG, PNG, ... bytes), decoding them with torchvision on the
        encoder's device (nvjpeg on CUDA) while the previous batch runs through the model.

        Returns ((m, d) float32 L2-normalised embeddings of the decodable images, in input
        order; the indices of `blobs` that could not be decoded). Resizing happens on the
        tensor (PIL's antialiased filter), so vectors differ slightly from `encode_images`.
        """
        if self.geometry is None:
            raise InputError(
                f"{self.spec}: its preprocessing (non-square or padded resize) is done by "
                "Pillow only; embed with encode_images or encode_cases"
            )
        refs = [ImageRef(data=blob) for blob in blobs]
        order: list[int] = []
        parts: list[torch.Tensor] = []
        failed: list[int] = []
        for batch, _ in self._device_batches(refs, batch_size or self.cfg.batch_size):
            failed.extend(i for i, _ in batch.failures)
            if batch.pixels is not None:
                order.extend(batch.indices)
                parts.append(self._forward(self.model.encode_image, self._normalized(batch.pixels)))
        vectors = self._to_numpy(parts)
        return vectors[np.argsort(order, kind="stable")], sorted(failed)

    def encode_cases(
        self, records: Sequence[Record], *, batch_size: int | None = None, progress: bool = False
    ) -> tuple[list[Record], NDArray[np.float32], NDArray[np.float32], list[Skipped]]:
        """Embed each record's image and caption; undecodable images are skipped, not fatal.

        Returns (kept records, image embeddings (m, d), caption embeddings (m, d), skipped),
        rows in the order of `records`. Grayscale and other modes are converted, never dropped.
        Images decode on the device when `decodes_on_device` (nvjpeg under CUDA), else with
        Pillow in `cfg.num_workers` DataLoader workers that persist across calls.
        """
        size = batch_size or self.cfg.batch_size
        order: list[int] = []
        failures: list[tuple[int, str]] = []
        image_out: list[torch.Tensor] = []
        text_out: list[torch.Tensor] = []
        if self.decodes_on_device:
            captions = [r.caption for r in records]
            batches: Iterator[tuple[DecodedBatch, Any]] = self._device_batches(
                [r.image for r in records],
                size,
                lambda b: self.tokenize([captions[i] for i in b.indices]),
            )
        else:
            batches = self._worker_batches(records, size)
        bar = _progress_bar(len(records), progress)
        try:
            for batch, tokens in batches:
                failures.extend(batch.failures)
                if batch.pixels is not None:
                    order.extend(batch.indices)
                    pixels = self._normalized(batch.pixels)
                    image_out.append(self._forward(self.model.encode_image, pixels))
                    text_out.append(self._forward(self.model.encode_text, tokens))
                bar.update(len(batch.indices) + len(batch.failures))
        finally:
            bar.close()
        skipped = []
        for i, reason in sorted(failures):
            skipped.append(skipped_entry(records[i], reason))
            log.warning("skipped %s: %s", records[i].image_id, reason)
        rows = np.argsort(order, kind="stable")
        kept = [records[order[r]] for r in rows]
        return kept, self._to_numpy(image_out)[rows], self._to_numpy(text_out)[rows], skipped

    def close(self) -> None:
        """Stop the image-decoding worker processes, if any were started."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None


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
