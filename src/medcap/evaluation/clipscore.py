"""CLIPScore and RefCLIPScore (Hessel et al., EMNLP 2021) with a medcap encoder.

CLIP-S(c, v) = w * max(cos(c, v), 0) with w = 2.5; RefCLIP-S is the harmonic mean of
CLIP-S(c, v) and max(max_r cos(c, r), 0) over the references r. Scores are per caption
and averaged. The encoder is any object with `encode_images` / `encode_texts` returning
L2-normalised rows (a medcap `Encoder`), so its numbers depend on that encoder: report
its spec next to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from medcap.config import DataConfig
from medcap.types import Skipped


class ImageTextEncoder(Protocol):
    """What CLIPScore needs from an encoder."""

    spec: str

    def encode_images(self, images: Sequence[Any]) -> NDArray[np.float32]: ...

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


def clip_scores_from_embeddings(
    image_emb: NDArray[np.floating],
    candidate_emb: NDArray[np.floating],
    reference_embs: Sequence[NDArray[np.floating]] | None = None,
    *,
    weight: float = 2.5,
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Per-item CLIP-S and RefCLIP-S from L2-normalised embeddings.

    Args:
        image_emb: (n, d) image embeddings.
        candidate_emb: (n, d) embeddings of the generated captions.
        reference_embs: per item, an (r_i, d) array of reference caption embeddings.
    """
    cos = np.sum(np.asarray(image_emb, np.float64) * np.asarray(candidate_emb, np.float64), axis=1)
    clip_s = weight * np.maximum(cos, 0.0)
    if reference_embs is None:
        return clip_s, None
    ref_sim = np.array(
        [
            max(float(np.max(np.asarray(refs, np.float64) @ np.asarray(cand, np.float64))), 0.0)
            for cand, refs in zip(candidate_emb, reference_embs, strict=True)
        ]
    )
    denom = clip_s + ref_sim
    safe = np.where(denom > 0, denom, 1.0)
    refclip_s = np.where(denom > 0, 2 * clip_s * ref_sim / safe, 0.0)
    return clip_s, refclip_s


def compute_clipscores(
    encoder: ImageTextEncoder,
    images: Sequence[Any],
    candidates: Sequence[str],
    references: Sequence[Sequence[str]] | None = None,
    *,
    weight: float = 2.5,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Mean and per-item CLIP-S (and RefCLIP-S when references are given) for PIL images."""
    image_emb = _batched(encoder.encode_images, images, batch_size)
    cand_emb = _batched(encoder.encode_texts, candidates, batch_size)
    ref_embs = None
    if references is not None:
        flat = [ref for refs in references for ref in refs]
        flat_emb = _batched(encoder.encode_texts, flat, batch_size)
        bounds = np.cumsum([0] + [len(refs) for refs in references])
        ref_embs = [flat_emb[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    clip_s, refclip_s = clip_scores_from_embeddings(image_emb, cand_emb, ref_embs, weight=weight)
    out: dict[str, Any] = {"CLIPScore": float(clip_s.mean()) if len(clip_s) else 0.0}
    per_item = {"CLIPScore": clip_s.tolist()}
    if refclip_s is not None:
        out["RefCLIPScore"] = float(refclip_s.mean()) if len(refclip_s) else 0.0
        per_item["RefCLIPScore"] = refclip_s.tolist()
    out["per_item"] = per_item
    return out


def _batched(fn: Any, items: Sequence[Any], batch_size: int) -> NDArray[np.float32]:
    parts = [fn(list(items[i : i + batch_size])) for i in range(0, len(items), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def load_images_by_id(
    source: str | Path, image_ids: Iterable[str], data_config: DataConfig | None = None
) -> tuple[dict[str, Any], list[Skipped]]:
    """Decode the images of `image_ids` from a dataset (any split); list the ones not found."""
    from medcap.data.images import load_image
    from medcap.data.readers import open_dataset
    from medcap.errors import ImageDecodeError

    wanted = set(image_ids)
    dataset = open_dataset(source, config=data_config)
    found: dict[str, Any] = {}
    skipped: list[Skipped] = []
    for split in dataset.splits():
        for record in dataset.records(split):
            if record.image_id in wanted and record.image_id not in found:
                try:
                    found[record.image_id] = load_image(record.image)
                except ImageDecodeError as exc:
                    skipped.append(Skipped(str(source), None, record.image_id, str(exc)))
                    wanted.discard(record.image_id)
        if len(found) == len(wanted):
            break
    for image_id in sorted(wanted - set(found)):
        skipped.append(Skipped(str(source), None, image_id, "image_id not found in the dataset"))
    return found, skipped
