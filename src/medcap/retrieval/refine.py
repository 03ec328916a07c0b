"""Refining a query the way a radiologist does: by region, by example and by concept.

A `Refinement` says how one query vector is changed before the index is searched:

- by region: `roi=(x, y, w, h)` in pixels of the original image; the crop is embedded on
  its own. The whole image finds `roi_rerank` candidates, and each is re-scored by how
  its own image's same region (the same share of its width and height) matches the
  query's region: score = (1 - roi_weight) * score + roi_weight * region similarity, so
  a lesion at the same place in a similar case ranks first. A region alone says nothing
  of where it lies: embedding only the crop lost location matches on the phantoms
  (benchmarks/bench_refine.py). With `roi_rerank=0` the region's vector is mixed into
  the query instead (`roi_weight` its share);
- by concept: `text="... with a fracture"` steers an image query; the image and text
  vectors are mixed (`text_weight` is the text's share);
- by example (relevance feedback, Rocchio 1971): `more_like` / `less_like` name indexed
  cases; the query moves toward the mean of the first and away from the mean of the
  second, in the space being searched (their stored image vectors when images are
  searched, their caption vectors when captions are):
  q' = alpha*q + beta*mean(relevant) - gamma*mean(others).

Every mix is re-normalised, so the result is again a unit vector (cosine scores stay
cosines). Pure numpy and PIL here; the Retriever supplies the vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medcap.config import DEFAULTS, RefineConfig, replace_set
from medcap.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

Roi = tuple[int, int, int, int]  # x, y, width, height in pixels of the original image


@dataclass(frozen=True)
class Refinement:
    """How to change a query before searching (every part optional; weights None: config).

    >>> Refinement(roi=(40, 30, 64, 64), more_like=("phantom_train_000012",))
    """

    roi: Roi | None = None
    roi_weight: float | None = None
    text: str | None = None
    text_weight: float | None = None
    more_like: tuple[str, ...] = field(default_factory=tuple)
    less_like: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "more_like", tuple(self.more_like))
        object.__setattr__(self, "less_like", tuple(self.less_like))
        if self.roi is not None:
            object.__setattr__(self, "roi", _roi_tuple(self.roi))
        if self.text is not None and not self.text.strip():
            raise InputError("the steering text is empty; give words, or leave it out")
        for name in ("roi_weight", "text_weight"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= float(value) <= 1.0:
                raise InputError(f"{name.replace('_', '-')} must be in [0, 1], got {value}")
        both = sorted(set(self.more_like) & set(self.less_like))
        if both:
            raise InputError(f"case {both[0]!r} is marked both more-like and less-like")

    @property
    def empty(self) -> bool:
        """Whether this refines nothing (the query is searched as it is)."""
        return self.roi is None and self.text is None and not self.more_like and not self.less_like

    def settings(self, cfg: RefineConfig = DEFAULTS.refine) -> RefineConfig:
        """`cfg` with this refinement's own weights applied."""
        return replace_set(cfg, roi_weight=self.roi_weight, text_weight=self.text_weight)

    def describe(self, cfg: RefineConfig = DEFAULTS.refine) -> dict[str, Any]:
        """The parts given, with their weights resolved from `cfg` (for JSON answers)."""
        cfg = self.settings(cfg)
        out: dict[str, Any] = {}
        if self.roi is not None:
            out.update(roi=list(self.roi), roi_weight=cfg.roi_weight)
        if self.text is not None:
            out.update(text=self.text, text_weight=cfg.text_weight)
        if self.more_like or self.less_like:
            out.update(more_like=list(self.more_like), less_like=list(self.less_like))
        return out


def _roi_tuple(roi: Sequence[int] | Sequence[float]) -> Roi:
    values = list(roi)
    if len(values) != 4 or not all(float(v).is_integer() for v in values):
        raise InputError(f"a region is four whole pixel numbers x,y,w,h, got {roi!r}")
    x, y, w, h = (int(v) for v in values)
    return x, y, w, h


def parse_roi(text: str) -> Roi:
    """`"x,y,w,h"` (pixels of the original image) -> (x, y, w, h)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise InputError(f"--roi {text!r}: write the region as x,y,w,h in pixels, e.g. 40,30,64,64")
    return _roi_tuple(values)


def check_roi(
    roi: Roi, width: int, height: int, *, source: str = "the image", min_px: int = 1
) -> Roi:
    """`roi` if it lies inside a `width` x `height` image and is at least `min_px` square."""
    x, y, w, h = roi
    if w < min_px or h < min_px:
        raise InputError(
            f"region {x},{y},{w},{h} of {source} is smaller than {min_px} pixels a side "
            "(refine.roi_min_px); draw a larger one"
        )
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise InputError(
            f"region {x},{y},{w},{h} lies outside {source} ({width}x{height} pixels); "
            f"keep x+w <= {width} and y+h <= {height}"
        )
    return roi


def crop_roi(
    image: Image.Image, roi: Roi, *, source: str = "the image", min_px: int = 1
) -> Image.Image:
    """The pixels of `roi` (checked against the image's size) as a new image."""
    x, y, w, h = check_roi(roi, image.width, image.height, source=source, min_px=min_px)
    return image.crop((x, y, x + w, y + h))


def relative_box(roi: Roi, width: int, height: int) -> tuple[float, float, float, float]:
    """`roi` as shares of a `width` x `height` image: (left, top, right, bottom) in [0, 1]."""
    x, y, w, h = roi
    return x / width, y / height, (x + w) / width, (y + h) / height


def crop_relative(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """The same region of another image: `box` (shares, from relative_box) in its pixels."""
    left, top = round(box[0] * image.width), round(box[1] * image.height)
    right = max(left + 1, round(box[2] * image.width))
    bottom = max(top + 1, round(box[3] * image.height))
    return image.crop((left, top, right, bottom))


def normalise(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """Rows (n, d) scaled to unit length; a zero row is refused (it has no direction)."""
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if np.any(norms <= 1e-12):
        raise InputError(
            "the refined query cancels out (a zero vector); lower the less-like weight "
            "(refine.rocchio_gamma) or mark fewer cases"
        )
    unit: NDArray[np.float32] = (v / norms).astype(np.float32)
    return unit


def mix(
    base: NDArray[np.float32], other: NDArray[np.float32], weight: float
) -> NDArray[np.float32]:
    """normalise((1 - weight) * base + weight * other) for unit rows (n, d) of both."""
    return normalise((1.0 - weight) * np.atleast_2d(base) + weight * np.atleast_2d(other))


def rocchio(
    query: NDArray[np.float32],
    relevant: NDArray[np.float32],
    nonrelevant: NDArray[np.float32],
    cfg: RefineConfig = DEFAULTS.refine,
) -> NDArray[np.float32]:
    """One feedback round: alpha*q + beta*mean(relevant) - gamma*mean(nonrelevant), unit.

    query: (n, d) unit rows; relevant, nonrelevant: (m, d) stored unit vectors (m may be 0).
    """
    q = cfg.rocchio_alpha * np.atleast_2d(query).astype(np.float32)
    if len(relevant):
        q = q + cfg.rocchio_beta * np.asarray(relevant, np.float32).mean(axis=0)
    if len(nonrelevant):
        q = q - cfg.rocchio_gamma * np.asarray(nonrelevant, np.float32).mean(axis=0)
    return normalise(q)
