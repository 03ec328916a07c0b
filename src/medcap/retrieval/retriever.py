"""Retriever: an index directory plus the encoder that built it; search by image or text.

Modes name what comes back: `captions` ranks the indexed captions (image -> text, or
text -> text), `images` ranks the indexed images (image -> image, or text -> image).
Results are `medcap.types.Hit` lists, best first (score descending, ties by row; see
medcap.index.store). Scores are cosine similarities.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from medcap.config import DEFAULTS, SearchMode
from medcap.errors import InputError
from medcap.index import IndexDir, open_index
from medcap.index.manifest import check_fingerprint
from medcap.types import Hit, Record

if TYPE_CHECKING:
    from PIL import Image

    from medcap.encoder import Encoder

LOG = logging.getLogger(__name__)
MODES: tuple[str, ...] = ("captions", "images")


def _target(mode: str) -> Literal["images", "captions"]:
    if mode not in MODES:
        raise InputError(f"unknown search mode {mode!r}; valid: {', '.join(MODES)}")
    return "images" if mode == "images" else "captions"


def check_text_queries(texts: Sequence[str]) -> None:
    """Refuse empty or blank text queries (the encoder would embed them all the same)."""
    for number, text in enumerate(texts, start=1):
        if not text.strip():
            which = f" {number} of {len(texts)}" if len(texts) > 1 else ""
            raise InputError(f"text query{which} is empty; give words to search for")


class Retriever:
    """Search an index with the encoder that built it.

    >>> r = open_retriever("runs/index")
    >>> r.search_texts(["Axial CT of the chest showing a nodule"], 5)[0][0].image_id
    """

    def __init__(self, encoder: Encoder, index: IndexDir) -> None:
        check_fingerprint(index.manifest, encoder.fingerprint, str(index.path))
        self.encoder = encoder
        self.index = index

    def __repr__(self) -> str:
        return f"Retriever(index={str(self.index.path)!r}, encoder={self.encoder.spec!r})"

    def search_images(
        self,
        images: Sequence[Image.Image],
        k: int | None = None,
        *,
        mode: SearchMode = DEFAULTS.retrieval.mode,
        exclude_ids: Sequence[str | None] | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits for each query image (PIL, any mode): captions or similar cases."""
        target = _target(mode)
        if not images:
            return []
        queries = self.encoder.encode_images(list(images))
        k = k or DEFAULTS.retrieval.k
        return self.index.search(queries, k, target=target, exclude_ids=exclude_ids)

    def search_texts(
        self,
        texts: Sequence[str],
        k: int | None = None,
        *,
        mode: SearchMode = DEFAULTS.retrieval.text_mode,
        exclude_ids: Sequence[str | None] | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits for each query text: images (text -> image) or captions (text -> text).

        An empty or blank text is refused (InputError): it has no meaning to search for.
        """
        target = _target(mode)
        check_text_queries(texts)
        if not texts:
            return []
        queries = self.encoder.encode_texts(list(texts))
        k = k or DEFAULTS.retrieval.k
        return self.index.search(queries, k, target=target, exclude_ids=exclude_ids)

    def search_records(
        self,
        records: Sequence[Record],
        k: int | None = None,
        *,
        mode: SearchMode = DEFAULTS.retrieval.mode,
        exclude_self: bool = True,
    ) -> list[list[Hit]]:
        """Top-k hits for each record's image; with `exclude_self` its own image_id is dropped.

        A record whose image cannot be decoded gets an empty list (and a logged warning).
        """
        target = _target(mode)
        if not records:
            return []
        kept, image_emb, _, skipped = self.encoder.encode_cases(list(records))
        for s in skipped:
            LOG.warning("no search for %s: %s", s.image_id, s.reason)
        exclude = [r.image_id for r in kept] if exclude_self else None
        found = self.index.search(
            image_emb, k or DEFAULTS.retrieval.k, target=target, exclude_ids=exclude
        )
        by_id = {r.image_id: hits for r, hits in zip(kept, found, strict=True)}
        return [by_id.get(r.image_id, []) for r in records]


def resolve_model(index: IndexDir, model: str | None) -> str:
    """The encoder spec to load for `index`: `model` if given, else the manifest's."""
    if model:
        return model
    info = index.manifest.encoder
    if info.checkpoint:
        if not os.path.exists(info.checkpoint):
            raise InputError(
                f"the encoder checkpoint {info.checkpoint} recorded in "
                f"{index.path / 'manifest.json'} no longer exists; pass --model with its new "
                f"path (its fingerprint must be {info.fingerprint})"
            )
        return info.checkpoint
    return info.spec


def load_index_encoder(
    index: IndexDir, model: str | None = None, *, device: str = "auto"
) -> Encoder:
    """Load the encoder of `index` (or `model`), refused unless its weights built the index.

    Every query path loads its encoder here or hands it to `Retriever`, which checks the
    same way, so no query is ever embedded by an encoder other than the index's.
    """
    from medcap.encoder import load_encoder

    encoder = load_encoder(resolve_model(index, model), device=device)
    check_fingerprint(index.manifest, encoder.fingerprint, str(index.path))
    return encoder


def _tower_is_requested(index: IndexDir, model: str | None) -> bool:
    """Whether the image tower cached under the index's fingerprint is the encoder asked
    for: always without `model`; for a checkpoint `model` when its weights were hashed
    before (a known other fingerprint is refused at once); otherwise unknown (False)."""
    if not model or not Path(model).expanduser().exists():
        return not model
    from medcap.encoder.checkpoint import cached_fingerprint
    from medcap.encoder.spec import parse_spec

    spec = parse_spec(model)
    fingerprint = cached_fingerprint(spec.path) if spec.path and spec.kind == "checkpoint" else None
    check_fingerprint(index.manifest, fingerprint, str(index.path))
    return fingerprint is not None


def open_retriever(
    index_dir: str | Path,
    *,
    device: str = "auto",
    model: str | None = None,
    index_device: str | None = None,
    image_tower: bool = False,
    verify: bool | None = None,
) -> Retriever:
    """Open an index directory and load its encoder (or `model`); refuses another encoder.

    device is the encoder's; index_device the search back-end's (default from config);
    verify checks the index files' checksums (default IndexConfig.verify). With
    `image_tower` on the CPU, image queries use the encoder's cached traced image tower
    (medcap.encoder.image_tower), which starts without importing open_clip; the full
    encoder then loads only if texts or records are searched (checked like any other),
    and a missing cache entry is written for next time.
    """
    from medcap.devices import resolve_device

    index = open_index(index_dir, device=index_device, verify=verify)

    def load_full() -> Encoder:
        return load_index_encoder(index, model, device=device)

    if not image_tower or resolve_device(device).type != "cpu":
        return Retriever(load_full(), index)
    from medcap.encoder.image_tower import load_image_tower, save_image_tower

    tower = load_image_tower(index.manifest.fingerprint, load_full)
    if tower is not None and _tower_is_requested(index, model):
        return Retriever(tower, index)  # type: ignore[arg-type]
    encoder = load_full()
    save_image_tower(encoder)
    return Retriever(encoder, index)
