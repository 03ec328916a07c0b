"""What the service computes, without HTTP: the opened index, its encoder and caption
backend, and the batched searches the micro-batchers run on the encoder's thread.

Built only on the library: `medcap.open_index` (a Retriever: `.encoder`, `.index`),
the index's own search, filters, items and thumbnails, and the generation package.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medcap.config import DEFAULTS, GenerationConfig, SearchMode, current
from medcap.errors import InputError
from medcap.serve.params import SearchParams
from medcap.serve.settings import ServeOptions
from medcap.types import Hit, ImageRef, Record

if TYPE_CHECKING:
    from PIL import Image

    from medcap.data.dicom.links import StudyLinker
    from medcap.generation.backends.base import CaptionBackend
    from medcap.generation.captioning import CaptionResult, NeighbourSearch
    from medcap.retrieval import Retriever
    from medcap.retrieval.refine import Refinement

LOG = logging.getLogger(__name__)


class CaseNotFoundError(InputError):
    """An image_id that is not in the served index (a 404)."""


@dataclass(frozen=True)
class ImageQuery:
    """A decoded query image and how to search it; `exclude_id` is dropped from its hits."""

    image: Image.Image
    params: SearchParams
    exclude_id: str | None = None


@dataclass(frozen=True)
class TextQuery:
    """A query text and how to search it."""

    text: str
    params: SearchParams


class Engine:
    """The loaded index, encoder and caption backend; every method is thread-safe to call
    from the encoder's one worker thread (searches) or any thread (lookups)."""

    def __init__(
        self,
        retriever: Retriever,
        backend: CaptionBackend,
        generation: GenerationConfig,
        *,
        column_values_max: int,
    ) -> None:
        self.retriever = retriever
        self.index = retriever.index
        self.backend = backend
        self.generation = generation  # settings of the caption backend, resolved
        self.column_values_max = column_values_max
        self.columns: list[str] = self.index.columns.names
        self.linker: StudyLinker | None = None  # viewer links (DICOM, with the key)
        self._manifest_key = _manifest_key(self.index.path)
        self._reload_lock = threading.Lock()

    # ---- the index on disk changes (index remove, sync, add) ------------------------
    def fresh(self) -> None:
        """Reopen the index when its manifest changed on disk, so withdrawn cases are never
        answered again (the encoder and caption backend are kept)."""
        key = _manifest_key(self.index.path)
        if key is None or key == self._manifest_key:
            return  # unchanged, or mid-swap (the old files are still open here)
        with self._reload_lock:
            if key == self._manifest_key:
                return
            from medcap.index import open_index
            from medcap.retrieval import Retriever

            old = self.index
            index = open_index(
                old.path, expected_fingerprint=old.manifest.fingerprint, device=old.device
            )
            index.load()
            self.retriever = Retriever(self.retriever.encoder, index)
            self.index = index
            self.columns = index.columns.names
            self.__dict__.pop("_summary", None)
            self._manifest_key = key
            LOG.info("reloaded %s: %d cases (it changed on disk)", old.path, len(index))

    def _linked(self, hits: list[Hit]) -> list[Hit]:
        """`hits` with a `viewer_url` in their metadata where the linker knows the study."""
        if self.linker is None:
            return hits
        out = []
        for hit in hits:
            url = self.linker.url_for(hit.metadata)
            meta = {**hit.metadata, "viewer_url": url} if url else hit.metadata
            out.append(dataclasses.replace(hit, metadata=meta) if url else hit)
        return out

    # ---- batched searches (run on the encoder thread) --------------------------------
    def search_images(self, queries: Sequence[ImageQuery]) -> list[list[Hit] | BaseException]:
        """Encode every query image in one batch, then search (one index call per group)."""
        vectors = self.retriever.encoder.encode_images([q.image for q in queries])
        return self.search_vectors(vectors, [(q.params, q.exclude_id) for q in queries])

    def search_texts(self, queries: Sequence[TextQuery]) -> list[list[Hit] | BaseException]:
        """Encode every query text in one batch, then search (one index call per group)."""
        vectors = self.retriever.encoder.encode_texts([q.text for q in queries])
        return self.search_vectors(vectors, [(q.params, None) for q in queries])

    def search_vectors(
        self,
        vectors: NDArray[np.float32],
        queries: Sequence[tuple[SearchParams, str | None]],
    ) -> list[list[Hit] | BaseException]:
        """Hits for query vectors (n, d), one (params, image_id to exclude) per vector.

        Queries with the same mode and filters share one index search at their largest k;
        each keeps its own first k hits (the index orders ties by row, so a longer list
        starts with the shorter one). A failing group fails only its own queries."""
        self.fresh()
        groups: dict[Any, list[int]] = defaultdict(list)
        for i, (params, _) in enumerate(queries):
            groups[params.group_key()].append(i)
        answers: list[list[Hit] | BaseException] = [[] for _ in queries]
        for members in groups.values():
            params = queries[members[0]][0]
            try:
                found = self.index.search(
                    vectors[members],
                    max(queries[i][0].k for i in members),
                    target=params.mode,
                    exclude_ids=[queries[i][1] for i in members],
                    where=params.where,
                )
            except Exception as exc:  # noqa: BLE001 - reported to these queries only
                for i in members:
                    answers[i] = exc
                continue
            for i, hits in zip(members, found, strict=True):
                answers[i] = self._linked(hits[: queries[i][0].k])
        return answers

    def case_neighbours(self, image_id: str, params: SearchParams) -> list[Hit]:
        """Nearest cases to an indexed case's stored image vector (itself excluded)."""
        row = self._row(image_id)
        vector = self.index.vectors(np.array([row], dtype=np.int64), "images")
        [found] = self.search_vectors(vector, [(params, image_id)])
        if isinstance(found, BaseException):
            raise found
        return found

    def search_refined(
        self,
        params: SearchParams,
        refine: Refinement,
        *,
        image: Image.Image | None = None,
        text: str | None = None,
        case: str | None = None,
    ) -> list[Hit]:
        """One refined query (an image, text or indexed case), outside the micro-batches:
        its vector is changed by `refine` (medcap.retrieval.refine) before the search."""
        self.fresh()
        retriever = self.retriever
        if image is not None:
            vector = retriever.encoder.encode_images([image])
        elif text is not None:
            vector = retriever.encoder.encode_texts([text])
        else:
            assert case is not None
            vector = self.index.vectors(np.array([self._row(case)], dtype=np.int64), "images")
        images = [image] if image is not None else None
        [found] = retriever.search_refined(
            vector, refine, params.k, mode=params.mode, images=images, exclude_ids=[case],
            where=params.where,
        )  # fmt: skip
        return self._linked(found)

    # ---- captions (run on the generation thread) ------------------------------------
    def caption(self, image: Image.Image, k: int, neighbours: NeighbourSearch) -> CaptionResult:
        """Caption one image from its `k` nearest neighbours found through `neighbours`."""
        from medcap.generation.captioning import caption_with_evidence

        cfg = dataclasses.replace(self.generation, k=k)
        [result] = caption_with_evidence(neighbours, self.backend, [image], [None], cfg)
        return result

    # ---- cases -----------------------------------------------------------------------
    def _row(self, image_id: str) -> int:
        self.fresh()
        row = self.index.row_of(image_id)
        if row is None:
            raise CaseNotFoundError(f"no case {image_id!r} in this index")
        return row

    def case(self, image_id: str) -> Hit:
        """The indexed case `image_id` (rank 0, score 0.0)."""
        row = self._row(image_id)
        return self._linked([self.index.hit(row)])[0]

    def thumbnail(self, image_id: str) -> bytes:
        """JPEG bytes of a case: the index's stored thumbnail, else one made from its file."""
        from medcap.retrieval.thumbnails import make_thumbnail

        case = self.case(image_id)
        stored = self.index.thumbnail(image_id)
        if stored is not None:
            return stored
        if case.image_path is not None:
            record = Record(image_id, ImageRef(path=case.image_path), case.caption)
            made = make_thumbnail(
                record, current().index.thumbnail_size or DEFAULTS.index.thumbnail_size
            )
            if made is not None:
                return made
        raise CaseNotFoundError(
            f"case {image_id!r} has no thumbnail: the index stores none and its image file "
            "cannot be read; rebuild the index with thumbnails"
        )

    @property
    def summary(self) -> dict[str, Any]:
        """The manifest in short (GET /v1/index), with the filterable columns' values."""
        self.fresh()
        return self._summary

    @functools.cached_property
    def _summary(self) -> dict[str, Any]:
        m = self.index.manifest
        cols = self.index.columns
        most = self.column_values_max
        columns = {}
        for name in self.columns:
            values = sorted({v for v in cols.values(name) if v})
            columns[name] = {
                "kind": cols.kinds.get(name, "text"),
                "values": values if len(values) <= most else None,
            }
        return {
            "count": m.count,
            "encoder": {
                "spec": m.encoder.spec,
                "fingerprint": m.encoder.fingerprint,
                "embed_dim": m.encoder.embed_dim,
            },
            "index_type": m.index.type,
            "factory": m.index.factory,
            "metric": m.metric,
            "created_at": m.created_at,
            "medcap_version": m.medcap_version,
            "has_thumbnails": m.has_thumbnails,
            "sources": [
                {"dataset": s.dataset, "split": s.split, "count": s.count} for s in m.sources
            ],
            "columns": columns,
            "caption_backend": {"name": self.backend.name, "model": self.backend.model},
        }


def load_engine(options: ServeOptions) -> Engine:
    """Open the index, load its encoder and the caption backend, and warm them up (the
    first real query then costs what every later one does). Runs on the encoder thread."""
    from medcap.api import open_index
    from medcap.data.dicom.links import open_linker
    from medcap.generation.captioning import build_backend, resolve_settings

    start = time.perf_counter()
    _set_encoder_threads(options.cfg.encoder_threads)
    retriever = open_index(
        options.index_dir,
        device=options.encoder.device,
        model=options.encoder_model,
        verify=options.verify,
    )
    retriever.index.load()  # damage shows now, not at the first search
    encoder = retriever.encoder  # loads it; refused unless it built the index
    gen = resolve_settings(options.generation, options.adapter)
    backend = build_backend(gen, model_id=options.generator_model, adapter=options.adapter)
    engine = Engine(retriever, backend, gen, column_values_max=options.cfg.column_values_max)
    engine.linker = open_linker(
        retriever.manifest, options.pseudonym_key, options.viewer_url,
        where=str(options.index_dir), token=options.dicomweb_token,
    )  # fmt: skip
    _warm_up(engine, encoder.encode_texts(["warm up"]))
    LOG.info(
        "loaded %s: %d cases, encoder %s, caption backend %s, in %.1f s",
        options.index_dir, len(retriever), retriever.manifest.spec, backend.name,
        time.perf_counter() - start,
    )  # fmt: skip
    return engine


def _manifest_key(path: Any) -> tuple[int, int, int] | None:
    """Identity of an index's manifest.json (inode, mtime, size); None while it is missing."""
    try:
        st = os.stat(os.path.join(path, "manifest.json"))
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _set_encoder_threads(threads: int | None) -> None:
    """torch's CPU threads: `threads`, or one core less than the machine has, leaving a
    core to the event loop (HTTP parsing and JSON) so the two do not fight over cores."""
    import torch

    torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) - 1))


def _warm_up(engine: Engine, vector: NDArray[np.float32]) -> None:
    """One image encode and one search per target, so lazy set-up happens before serving."""
    from PIL import Image

    engine.retriever.encoder.encode_images([Image.new("RGB", (64, 64))])
    modes: tuple[SearchMode, ...] = ("images", "captions")
    for mode in modes:
        engine.search_vectors(vector, [(SearchParams(1, mode), None)])
