"""`remove_from_index` on every index type: rows gone, order kept, an IVF-PQ index keeps
its training (centroids and codebooks are not retrained), searches still right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.index import build_index, faiss_ops, open_index, remove_from_index
from medcap.index.manifest import INDEX_FILES
from tests.index.vector_encoder import VectorEncoder, make_records


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivfpq"])
def test_remove_on_every_index_type(tmp_path: Path, index_type: str) -> None:
    cfg = replace_set(DEFAULTS.index, shard_size=500, index_type=index_type)
    out = tmp_path / index_type
    index = build_index(make_records(2000), VectorEncoder(dim=32), out, cfg)
    ids = index.image_ids()
    vectors = index.embeddings("images")
    before = faiss_ops.read_index(out / INDEX_FILES["images"])
    gone = set(ids[::7])  # every shard loses cases
    after, removed = remove_from_index(out, gone)
    assert removed == len(gone)
    kept = [i for i in ids if i not in gone]
    assert after.image_ids() == kept and len(after) == 2000 - len(gone)
    assert open_index(out, verify=True).manifest.index.factory == index.manifest.index.factory
    rows = np.array([ids.index(i) for i in kept])
    for query, row in zip(vectors[rows[:50]], rows[:50], strict=True):
        [hits] = after.search(query[None], 5, target="images")
        assert hits[0].image_id == ids[row]  # each kept case still finds itself first
        assert gone.isdisjoint(h.image_id for h in hits)
    if index_type == "ivfpq":  # the same training: IVF centroids and PQ codebooks
        import faiss

        now = faiss_ops.read_index(out / INDEX_FILES["images"])  # kept alive: views below
        old, new = faiss.extract_index_ivf(before), faiss.extract_index_ivf(now)
        assert new.ntotal == len(kept)
        assert np.array_equal(
            old.quantizer.reconstruct_n(0, old.nlist), new.quantizer.reconstruct_n(0, new.nlist)
        )
        assert np.array_equal(
            faiss.vector_to_array(faiss.downcast_index(old).pq.centroids),
            faiss.vector_to_array(faiss.downcast_index(new).pq.centroids),
        )
