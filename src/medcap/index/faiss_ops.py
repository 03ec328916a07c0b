"""Every FAISS call medcap makes: create, train, add, search, read, write.

This is the only module that imports faiss. Vectors are float32, C-contiguous, (n, d)
and L2-normalised; the metric is always inner product (= cosine similarity). Importing
it changes no FAISS setting: the one medcap tunes is set around each call that uses it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medcap.errors import CorruptArtifactError

# faiss's loader logs each SIMD variant it tries at INFO; keep that off the CLI's stderr.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
import faiss  # noqa: E402

LOG = logging.getLogger(__name__)

# faiss 1.15 switches a flat search from its per-query loop to BLAS only when
# nq * d >= 128000 (about 250 queries at d=512). On 2 cores BLAS is already ~10x
# faster from 2 queries on (80,000 x 512: 64 queries took 350 ms per-query vs 36 ms
# with BLAS; benchmarks/bench_index.py), so medcap's calls always take the BLAS path.
_BLAS_THRESHOLD = 1
_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved = 0


@contextmanager
def _always_blas() -> Iterator[None]:
    """FAISS's global BLAS threshold at 1 while any medcap call runs, restored after the last.

    A count, not a save/restore per call: concurrent searches (the app's sessions) would
    otherwise restore each other's setting and could leave it changed.
    """
    global _blas_users, _blas_saved
    with _blas_lock:
        if _blas_users == 0:
            _blas_saved = faiss.cvar.distance_compute_blas_threshold
            faiss.cvar.distance_compute_blas_threshold = _BLAS_THRESHOLD
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                faiss.cvar.distance_compute_blas_threshold = _blas_saved


def new_index(factory: str, dim: int) -> Any:
    """An empty inner-product index from a FAISS factory string ("Flat", "HNSW32", ...)."""
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if hasattr(index, "do_polysemous_training"):
        # The factory turns on polysemous PQ training (tens of seconds); medcap's
        # searches never use polysemous filtering, so skip it.
        index.do_polysemous_training = False
    return index


def is_trained(index: Any) -> bool:
    """Whether the index is ready for `add` (flat and HNSW always are)."""
    return bool(index.is_trained)


def train_index(index: Any, sample: NDArray[np.float32]) -> None:
    """Train an index that needs it (IVF centroids, PQ codebooks) on `sample` (n, d)."""
    if not index.is_trained:
        with _always_blas():  # k-means assigns points with flat searches
            index.train(np.ascontiguousarray(sample, dtype=np.float32))


def emptied(index: Any) -> Any:
    """`index` without its vectors but with its training (IVF centroids, PQ codebooks)."""
    index.reset()
    return index


def add_vectors(index: Any, vectors: NDArray[np.float32]) -> None:
    """Append `vectors` (n, d); their rows continue from `index.ntotal`."""
    with _always_blas():  # IVF assigns each vector to a list with a quantizer search
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))


def set_search_params(index: Any, params: dict[str, Any]) -> None:
    """Apply search-time parameters known to FAISS (efSearch, nprobe); others are ignored."""
    space = faiss.ParameterSpace()
    for name in ("efSearch", "nprobe"):
        if name in params:
            space.set_index_parameter(index, name, int(params[name]))


def search(
    index: Any, queries: NDArray[np.float32], k: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Top-k rows by inner product: scores (q, k) float32 descending, rows (q, k), -1 = none."""
    with _always_blas():
        scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, rows


def _parameters(index: Any, selector: Any, widen: int) -> Any:
    """Search parameters that restrict `index` to `selector`, with its own nprobe /
    efSearch times `widen` (a parameter object replaces the index's settings)."""
    api: Any = faiss  # the SWIG classes take their fields as keywords (not in faiss's stubs)
    inner = api.downcast_index(index.index) if hasattr(index, "id_map") else index
    ivf = api.try_extract_index_ivf(inner)
    if ivf is not None:
        nprobe = min(int(ivf.nlist), int(ivf.nprobe) * widen)
        return api.SearchParametersIVF(sel=selector, nprobe=nprobe)
    if hasattr(inner, "hnsw"):
        return api.SearchParametersHNSW(sel=selector, efSearch=int(inner.hnsw.efSearch) * widen)
    return api.SearchParameters(sel=selector)


def search_rows_in(
    index: Any,
    queries: NDArray[np.float32],
    k: int,
    rows: NDArray[np.int64],
    *,
    widen: int = 1,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Top-k among `rows` only (an IDSelectorBitmap inside the FAISS search): scores and
    rows (q, k) as `search` returns them. widen: HNSW visits `widen` times its efSearch
    candidates, IVF probes `widen` times its nprobe lists (a filter leaves fewer kept
    vectors per graph step or list)."""
    n = count(index)
    keep = np.zeros(n, dtype=bool)
    keep[rows] = True
    bits = np.packbits(keep, bitorder="little")  # must outlive the search: FAISS reads it
    selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
    params = _parameters(index, selector, max(1, widen))
    with _always_blas():
        scores, found = index.search(
            np.ascontiguousarray(queries, dtype=np.float32), k, params=params
        )
    del bits
    return scores, found


def range_search(
    index: Any, query: NDArray[np.float32], threshold: float
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Every (score, row) with inner product > `threshold` for one query (d,)."""
    q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    with _always_blas():
        _, scores, rows = index.range_search(q, float(threshold))
    return scores.astype(np.float32), rows.astype(np.int64)


def flat_vectors(index: Any) -> NDArray[np.float32]:
    """The (n, d) float32 vectors a flat index holds, as a read-only view (no copy)."""
    n, d = int(index.ntotal), int(index.d)
    view = faiss.rev_swig_ptr(index.get_xb(), n * d).reshape(n, d)
    view.flags.writeable = False
    return view


def reconstruct(index: Any, rows: NDArray[np.int64]) -> NDArray[np.float32]:
    """The stored vectors of `rows` (m,) -> (m, d) float32."""
    return index.reconstruct_batch(np.ascontiguousarray(rows, dtype=np.int64))  # type: ignore[no-any-return]


def half_precision_index(vectors: NDArray[np.float32]) -> Any:
    """An inner-product index of `vectors` stored as float16 (FAISS scalar quantizer fp16)."""
    index = faiss.IndexScalarQuantizer(
        vectors.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def count(index: Any) -> int:
    """Number of vectors in the index."""
    return int(index.ntotal)


def dimension(index: Any) -> int:
    """Vector dimension of the index."""
    return int(index.d)


def write_index(index: Any, path: Path) -> None:
    """Write an index (from the CPU) to `path`."""
    if num_gpus() > 0 and hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        index = faiss.index_gpu_to_cpu(index)
    faiss.write_index(index, str(path))


def read_index(path: Path) -> Any:
    """Read an index; a damaged file raises CorruptArtifactError naming it."""
    if not path.exists():
        raise CorruptArtifactError(
            f"{path} is missing; rebuild the index with `medcap index build`"
        )
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1][-160:] if str(exc).strip() else "read error"
        raise CorruptArtifactError(
            f"{path} is damaged or truncated ({detail}); "
            "rebuild the index with `medcap index build`"
        ) from None


def num_gpus() -> int:
    """GPUs visible to FAISS (0 with faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


_GPU_RESOURCES: dict[int, Any] = {}  # one StandardGpuResources per GPU for the process


def gpu_resources(gpu: int) -> Any:
    """The process's StandardGpuResources for GPU `gpu` (scratch memory and streams are
    shared by every index on that GPU instead of being reserved once per index)."""
    if gpu not in _GPU_RESOURCES:
        _GPU_RESOURCES[gpu] = faiss.StandardGpuResources()
    return _GPU_RESOURCES[gpu]


def to_gpu(index: Any, gpu: int) -> Any | None:
    """A copy of `index` on GPU `gpu` (faiss-gpu), or None when faiss-gpu cannot hold it."""
    if num_gpus() <= gpu:
        return None
    try:
        return faiss.index_cpu_to_gpu(gpu_resources(gpu), gpu, index)
    except (RuntimeError, AttributeError) as exc:  # a type without a GPU version
        LOG.warning("keeping the index on the CPU: faiss-gpu cannot copy it (%s)", exc)
        return None


def set_threads(n: int) -> None:
    """Limit FAISS's OpenMP threads."""
    faiss.omp_set_num_threads(int(n))
