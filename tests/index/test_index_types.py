"""Index types: what `auto` picks and why, and approximate recall against exact search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.errors import InputError
from medcap.index import build_index, open_index
from medcap.index.planner import estimate_hnsw_bytes, plan_index
from tests.index.vector_encoder import VectorEncoder, make_records


def test_auto_picks_flat_while_small() -> None:
    plan = plan_index(60_000, 512, DEFAULTS.index)
    assert (plan.type, plan.factory) == ("flat", "Flat")
    assert "60000 vectors <= flat_max_vectors" in plan.reason


def test_auto_picks_hnsw_beyond_flat_max_when_it_fits() -> None:
    cfg = replace_set(DEFAULTS.index, flat_max_vectors=1000, memory_budget_gb=8.0)
    plan = plan_index(500_000, 512, cfg)
    assert plan.type == "hnsw" and plan.factory == f"HNSW{cfg.hnsw_m}"
    assert plan.params == {"efSearch": cfg.hnsw_ef_search}
    assert "> flat_max_vectors 1000" in plan.reason and "fit" in plan.reason
    assert 2 * estimate_hnsw_bytes(500_000, 512, cfg.hnsw_m) <= 8e9


def test_auto_picks_ivfpq_sized_to_a_small_budget() -> None:
    cfg = replace_set(DEFAULTS.index, memory_budget_gb=0.12)
    plan = plan_index(2_000_000, 512, cfg)
    assert plan.type == "ivfpq" and plan.factory == "IVF1024,PQ32x4fs"
    assert plan.params == {"nprobe": cfg.ivf_nprobe, "rerank_factor": cfg.ivf_rerank_factor}
    assert "exceed the 0.12 GB budget" in plan.reason
    assert 2 * plan.bytes_per_index <= 0.12e9
    bigger = plan_index(2_000_000, 512, replace_set(cfg, memory_budget_gb=0.2))
    assert bigger.factory == "IVF1024,PQ64x4fs"  # more memory buys a longer code


def test_ivfpq_on_too_few_vectors_falls_back_to_flat() -> None:
    plan = plan_index(100, 64, replace_set(DEFAULTS.index, index_type="ivfpq"))
    assert plan.type == "flat" and "100 vectors < 256" in plan.reason


def test_flat_over_budget_goes_approximate_even_below_flat_max() -> None:
    plan = plan_index(900_000, 512, replace_set(DEFAULTS.index, memory_budget_gb=1.0))
    assert plan.type != "flat" and "exceed the 1 GB budget" in plan.reason


def test_unknown_type_and_empty_input_are_refused() -> None:
    with pytest.raises(InputError, match="unknown index type"):
        plan_index(10, 8, replace_set(DEFAULTS.index, index_type="lsh"))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no vectors"):
        plan_index(0, 8, DEFAULTS.index)


@pytest.mark.parametrize("index_type", ["hnsw", "ivfpq"])
def test_approximate_recall_at_10_against_exact(tmp_path: Path, index_type: str) -> None:
    cfg = replace_set(DEFAULTS.index, shard_size=500, index_type=index_type)
    enc = VectorEncoder(dim=32)
    index = build_index(make_records(2000), enc, tmp_path / index_type, cfg)
    m = index.manifest
    assert m.index.type == index_type and m.index.requested == index_type
    assert m.index.factory.startswith("HNSW" if index_type == "hnsw" else "IVF")
    gallery = index.embeddings("images")
    rng = np.random.default_rng(3)
    queries = gallery[rng.choice(len(gallery), 100, replace=False)] + 0.3 / np.sqrt(
        32
    ) * rng.standard_normal((100, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = np.argsort(-(queries @ gallery.T), axis=1)[:, :10]
    found = index.search_rows(queries, 10, target="images")
    recall = np.mean(
        [len({r for r, _ in f} & set(e)) / 10 for f, e in zip(found, exact, strict=True)]
    )
    assert recall >= 0.9, recall
    reopened = open_index(tmp_path / index_type)
    assert reopened.search_rows(queries[:5], 10, target="images") == found[:5]
