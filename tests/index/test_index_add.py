"""`add_to_index`: append cases with the same encoder, atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.errors import IndexMismatchError, InputError
from medcap.index import add_to_index, build_index, open_index
from medcap.index.finalize import partial_dir
from tests.index.vector_encoder import Killed, VectorEncoder, dying, make_records

CFG = replace_set(DEFAULTS.index, shard_size=10)


def test_add_appends_new_cases_and_keeps_old_rows(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    first = build_index(make_records(25), VectorEncoder(), out, CFG, dataset_name="a")
    old_ids = first.image_ids()
    old_vectors = first.embeddings("images")
    new = make_records(12, start=100, split="valid") + make_records(3, start=20)  # 3 duplicates
    index, added = add_to_index(out, new, VectorEncoder(), CFG, dataset_name="b", split="valid")
    assert added == 12 and len(index) == 37
    assert index.image_ids()[:25] == old_ids
    np.testing.assert_array_equal(index.embeddings("images")[:25], old_vectors)
    assert [s.dataset for s in index.manifest.sources] == ["a", "b"]
    assert index.manifest.sources[1].count == 12
    assert sum("duplicate" in s.reason for s in index.skipped()) == 3
    found = index.search(index.embeddings("images")[25:], 1, target="images")
    assert [h[0].image_id for h in found] == [f"case_{i:05d}" for i in range(100, 112)]
    assert index.item("case_00105").split == "valid"
    assert not partial_dir(out).exists()
    assert len(open_index(out, preload=True)) == 37


def test_add_keeps_a_trained_ivfpq_index(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    cfg = replace_set(CFG, index_type="ivfpq", shard_size=200)
    built = build_index(make_records(600), VectorEncoder(dim=16), out, cfg)
    index, added = add_to_index(out, make_records(50, start=1000), VectorEncoder(dim=16), cfg)
    assert added == 50 and index.manifest.index == built.manifest.index
    found = index.search(index.embeddings("images")[-5:], 1, target="images")
    assert [h[0].image_id for h in found] == [f"case_{i:05d}" for i in range(1045, 1050)]


def test_add_refuses_another_encoder_naming_both_fingerprints(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build_index(make_records(10), VectorEncoder(), out, CFG)
    with pytest.raises(IndexMismatchError) as err:
        add_to_index(out, make_records(5, start=50), VectorEncoder(fingerprint="other-77"), CFG)
    assert "vec-0001" in str(err.value) and "other-77" in str(err.value)
    assert len(open_index(out)) == 10


def test_add_with_nothing_new_or_a_crash_leaves_the_index_intact(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build_index(make_records(10), VectorEncoder(), out, CFG)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="no new cases"):
        add_to_index(out, make_records(10), VectorEncoder(), CFG)
    with pytest.raises(Killed):
        add_to_index(out, dying(make_records(30, start=40), after=25), VectorEncoder(), CFG)
    assert (out / "manifest.json").read_bytes() == before
    assert not partial_dir(out).exists()
    assert len(open_index(out, preload=True)) == 10
