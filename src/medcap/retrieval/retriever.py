"""Retriever: an index directory plus the encoder that built it; search by image or text.

Modes name what comes back: `captions` ranks the indexed captions (image -> text, or
text -> text), `images` ranks the indexed images (image -> image, or text -> image).
Results are `medcap.types.Hit` lists, best first (score descending, ties by row; see
medcap.index.store). Scores are cosine similarities. The encoder may load lazily, on the
first query, so an index opened for its metadata or filters costs no model load.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from medcap.config import DEFAULTS, EncoderConfig, SearchMode, current
from medcap.errors import InputError
from medcap.index import IndexDir, open_index
from medcap.index.filters import Filters
from medcap.index.manifest import Manifest, check_fingerprint
from medcap.retrieval.refine import Refinement, Roi, crop_roi, mix, rocchio
from medcap.types import Hit, Record, Skipped

if TYPE_CHECKING:
    from PIL import Image

    from medcap.encoder import Encoder

LOG = logging.getLogger(__name__)
MODES: tuple[str, ...] = ("captions", "images")


class QueryEncoder(Protocol):
    """What a Retriever needs from an encoder (`medcap.encoder.Encoder`, or the cached
    image tower of `medcap.encoder.image_tower`)."""

    @property
    def spec(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...

    def encode_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]: ...

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]: ...

    def encode_cases(
        self, records: Sequence[Record]
    ) -> tuple[list[Record], NDArray[np.float32], NDArray[np.float32], list[Skipped]]: ...


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


def _k(k: int | None) -> int:
    """`k`, or the default when not given; 0 and negatives are refused (by IndexDir.search)."""
    return DEFAULTS.retrieval.k if k is None else k


class Retriever:
    """Search an index with the encoder that built it.

    >>> r = open_retriever("runs/index")
    >>> r.search(text="Axial CT of the chest showing a nodule", k=5)[0][0].image_id
    """

    def __init__(
        self,
        encoder: QueryEncoder | None,
        index: IndexDir,
        *,
        load_encoder: Callable[[], QueryEncoder] | None = None,
    ) -> None:
        if encoder is None and load_encoder is None:
            raise ValueError("pass an encoder or a load_encoder callable")
        if encoder is not None:
            check_fingerprint(index.manifest, encoder.fingerprint, str(index.path))
        self.index = index
        self._encoder = encoder
        self._load_encoder = load_encoder
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "loaded" if self._encoder is not None else "loads on first query"
        return f"Retriever(index={str(self.index.path)!r}, encoder={self.manifest.spec!r}, {state})"

    def __len__(self) -> int:
        return len(self.index)

    @property
    def manifest(self) -> Manifest:
        """The index's manifest (encoder, count, index type, sources, ...)."""
        return self.index.manifest

    @property
    def encoder(self) -> QueryEncoder:
        """The query encoder (loaded now if it was not yet; refused if it is another one)."""
        with self._lock:
            if self._encoder is None:
                assert self._load_encoder is not None
                encoder = self._load_encoder()
                check_fingerprint(self.index.manifest, encoder.fingerprint, str(self.index.path))
                self._encoder = encoder
            return self._encoder

    def item(self, image_id: str) -> Hit:
        """The indexed case `image_id` (rank 0, score 0.0)."""
        return self.index.item(image_id)

    def column(self, name: str) -> list[str]:
        """Column `name` (`split` or a metadata column) of every case, in row order."""
        return self.index.column(name)

    def search(
        self,
        queries: Any = None,
        k: int | None = None,
        *,
        text: str | Sequence[str] | None = None,
        mode: SearchMode | None = None,
        where: Filters | None = None,
        exclude_ids: Sequence[str | None] | None = None,
        roi: Roi | None = None,
        roi_weight: float | None = None,
        text_weight: float | None = None,
        more_like: Sequence[str] = (),
        less_like: Sequence[str] = (),
    ) -> list[list[Hit]]:
        """Top-k hits per query: images (`queries`) or texts (`text=`), one list each.

        An image query is a file path (PNG, JPEG, DICOM, ...), a PIL image or a numpy
        array ((H, W) or (H, W, C)); pass one or a list. `mode` defaults to captions for
        images and images for texts. `where` keeps only cases whose metadata match, e.g.
        `{"modality": "CT", "split": ["train"]}`, or a number range `{"size_cm": "1..3"}`.
        k defaults to 5; k < 1 is an error.

        Refinements (medcap.retrieval.refine): `roi=(x, y, w, h)` searches a region of each
        image (mixed with the whole image by `roi_weight`); `text=` together with images
        steers them toward the words (`text_weight`); `more_like` / `less_like` are indexed
        image_ids marked relevant / not relevant (one feedback round). Weights default to
        the `refine` config section.

        >>> hits = index.search("scan.png", k=3, where={"modality": "CT"})[0]
        >>> hits = index.search(text=["chest CT with a nodule"], mode="images")[0]
        >>> hits = index.search("scan.png", roi=(40, 30, 64, 64), text="with contrast")[0]
        """
        from medcap.data.query_images import as_query_list, load_query_image

        if queries is None and text is None:
            raise InputError("search needs image queries or text=[...]")
        steer = text if queries is not None else None
        if steer is not None and not isinstance(steer, str):
            raise InputError('steer image queries with one text (text="..."), not a list')
        refine = Refinement(
            roi=roi, roi_weight=roi_weight, text=steer, text_weight=text_weight,
            more_like=tuple(more_like), less_like=tuple(less_like),
        )  # fmt: skip
        if queries is None:
            assert text is not None
            texts = [text] if isinstance(text, str) else list(text)
            return self.search_texts(
                texts, k, mode=mode or DEFAULTS.retrieval.text_mode,
                exclude_ids=exclude_ids, where=where, refine=refine,
            )  # fmt: skip
        images = [load_query_image(q) for q in as_query_list(queries)]
        return self.search_images(
            images, k, mode=mode or DEFAULTS.retrieval.mode, exclude_ids=exclude_ids,
            where=where, refine=refine,
        )  # fmt: skip

    def stored_vectors(self, image_ids: Sequence[str], target: str) -> NDArray[np.float32]:
        """The indexed (len(ids), d) unit vectors of cases, images or captions (`target`)."""
        rows = []
        for image_id in image_ids:
            row = self.index.row_of(image_id)
            if row is None:
                raise InputError(
                    f"case {image_id!r} is not in the index {self.index.path}; "
                    "mark hits by the image_id a search returned"
                )
            rows.append(row)
        return self.index.vectors(np.asarray(rows, dtype=np.int64), _target(target))

    def refine_vectors(
        self,
        queries: NDArray[np.float32],
        refine: Refinement,
        *,
        mode: SearchMode,
        images: Sequence[Image.Image] | None = None,
    ) -> NDArray[np.float32]:
        """Query vectors (n, d) changed by `refine` (steering text, feedback, and a region
        when `refine.roi_rerank` is 0), unit.

        `images` are the originals of image queries (needed for a region); `mode` names
        the space searched, whose stored vectors the feedback cases contribute."""
        if refine.empty:
            return queries
        cfg = refine.settings(current().refine)
        q = queries
        if refine.roi is not None and images is None:
            raise InputError("a region (roi) refines image queries only")
        if refine.roi is not None and images is not None and cfg.roi_rerank == 0:
            crops = [
                crop_roi(im, refine.roi, source=f"query image {i + 1}", min_px=cfg.roi_min_px)
                for i, im in enumerate(images)
            ]
            q = mix(q, self.encoder.encode_images(crops), cfg.roi_weight)
        if refine.text is not None:
            q = mix(q, self.encoder.encode_texts([refine.text]), cfg.text_weight)
        if refine.more_like or refine.less_like:
            q = rocchio(
                q,
                self.stored_vectors(refine.more_like, mode),
                self.stored_vectors(refine.less_like, mode),
                cfg,
            )
        return q

    def search_images(
        self,
        images: Sequence[Image.Image],
        k: int | None = None,
        *,
        mode: SearchMode = DEFAULTS.retrieval.mode,
        exclude_ids: Sequence[str | None] | None = None,
        where: Filters | None = None,
        refine: Refinement | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits for each query image (PIL, any mode): captions or similar cases;
        `refine` changes each query first (see medcap.retrieval.refine)."""
        target = _target(mode)
        if not images:
            return []
        queries = self.encoder.encode_images(list(images))
        if refine is not None and not refine.empty:
            return self.search_refined(
                queries, refine, _k(k), mode=mode, images=images, exclude_ids=exclude_ids,
                where=where,
            )  # fmt: skip
        return self.index.search(
            queries, _k(k), target=target, exclude_ids=exclude_ids, where=where
        )

    def search_texts(
        self,
        texts: Sequence[str],
        k: int | None = None,
        *,
        mode: SearchMode = DEFAULTS.retrieval.text_mode,
        exclude_ids: Sequence[str | None] | None = None,
        where: Filters | None = None,
        refine: Refinement | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits for each query text: images (text -> image) or captions (text -> text).

        An empty or blank text is refused (InputError): it has no meaning to search for.
        `refine` may carry feedback (more_like / less_like); a region or steering text
        is for image queries and refused here.
        """
        target = _target(mode)
        check_text_queries(texts)
        if not texts:
            return []
        queries = self.encoder.encode_texts(list(texts))
        if refine is not None and not refine.empty:
            return self.search_refined(
                queries, refine, _k(k), mode=mode, exclude_ids=exclude_ids, where=where
            )
        return self.index.search(
            queries, _k(k), target=target, exclude_ids=exclude_ids, where=where
        )

    def search_refined(
        self,
        queries: NDArray[np.float32],
        refine: Refinement,
        k: int,
        *,
        mode: SearchMode,
        images: Sequence[Image.Image] | None = None,
        exclude_ids: Sequence[str | None] | None = None,
        where: Filters | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits for query vectors (n, d) refined by `refine` (see
        medcap.retrieval.refine): the vector refinements, the index search, then, for a
        region, the re-scoring of `roi_rerank` candidates by their own same region."""
        cfg = refine.settings(current().refine)
        vectors = self.refine_vectors(queries, refine, mode=mode, images=images)
        rerank = refine.roi is not None and images is not None and cfg.roi_rerank > 0
        fetch = max(k, cfg.roi_rerank) if rerank else k
        found = self.index.search(
            vectors, fetch, target=_target(mode), exclude_ids=exclude_ids, where=where
        )
        if not rerank:
            return found
        assert refine.roi is not None and images is not None
        from medcap.retrieval.region import rescore_by_region

        return [
            rescore_by_region(
                hits,
                image,
                refine.roi,
                weight=cfg.roi_weight,
                k=k,
                encode_images=self.encoder.encode_images,
                index=self.index,
                min_px=cfg.roi_min_px,
            )  # fmt: skip
            for hits, image in zip(found, images, strict=True)
        ]

    def search_records(
        self,
        records: Sequence[Record],
        k: int | None = None,
        *,
        mode: SearchMode = DEFAULTS.retrieval.mode,
        exclude_self: bool = True,
        where: Filters | None = None,
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
        found = self.index.search(image_emb, _k(k), target=target, exclude_ids=exclude, where=where)
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
    index: IndexDir,
    model: str | None = None,
    *,
    device: str | None = "auto",
    cfg: EncoderConfig | None = None,
) -> Encoder:
    """Load the encoder of `index` (or `model`), refused unless its weights built the index.

    Every query path loads its encoder here or hands it to `Retriever`, which checks the
    same way, so no query is ever embedded by an encoder other than the index's. `cfg`
    (batch size, workers, precision) defaults to DEFAULTS.encoder; `device` overrides it.
    """
    from medcap.encoder import load_encoder

    encoder = load_encoder(resolve_model(index, model), device=device, cfg=cfg)
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
    keys = spec.identity_files  # a checkpoint's or snapshot's files: fingerprints are cached
    fingerprint = cached_fingerprint(*keys) if keys else None
    check_fingerprint(index.manifest, fingerprint, str(index.path))
    return fingerprint is not None


def open_retriever(
    index_dir: str | Path,
    *,
    device: str = "auto",
    model: str | None = None,
    index_device: str | None = None,
    image_tower: bool = False,
    lazy: bool = False,
    verify: bool | None = None,
) -> Retriever:
    """Open an index directory and load its encoder (or `model`); refuses another encoder.

    device is the encoder's; index_device the search back-end's (default from config);
    verify checks the index files' checksums (default IndexConfig.verify). With `lazy`,
    the encoder loads at the first query (a missing checkpoint is still reported now).
    With `image_tower` on the CPU, image queries use the encoder's cached traced image
    tower (medcap.encoder.image_tower), which starts without importing open_clip; the
    full encoder then loads only if texts or records are searched (checked like any
    other), and a missing cache entry is written for next time. Every encoder is loaded
    by `load_index_encoder`, so each query path is checked against the index.
    """
    index = open_index(index_dir, device=index_device, verify=verify)

    def load_full() -> Encoder:
        return load_index_encoder(index, model, device=device)

    if lazy:
        resolve_model(index, model)  # a moved checkpoint is reported now, not at the first query
        return Retriever(None, index, load_encoder=load_full)
    from medcap.devices import resolve_device

    if not image_tower or resolve_device(device).type != "cpu":
        return Retriever(load_full(), index)
    from medcap.encoder.image_tower import load_image_tower, save_image_tower

    tower = load_image_tower(index.manifest.fingerprint, load_full)
    if tower is not None and _tower_is_requested(index, model):
        return Retriever(tower, index)
    encoder = load_full()
    save_image_tower(encoder)
    return Retriever(encoder, index)
