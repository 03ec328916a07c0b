"""Items 16 and 17: an empty part is a valid part; only a resumable build keeps .partial."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.errors import InputError
from medcap.index import build_index, merge_parts, open_index
from medcap.index.finalize import partial_dir
from tests.index.vector_encoder import Killed, VectorEncoder, dying, make_records

CFG = replace_set(DEFAULTS.index, shard_size=8)


def test_a_part_with_no_case_is_a_valid_empty_part(tmp_path: Path) -> None:
    records = make_records(12)  # two chunks of 8: parts 0/3 and 1/3 get one each, 2/3 none
    parts = [
        build_index(records, VectorEncoder(), tmp_path / f"part-{i}", CFG, part=f"{i}/3")
        for i in range(3)
    ]
    assert [len(p) for p in parts] == [8, 4, 0]
    assert not any(partial_dir(tmp_path / f"part-{i}").exists() for i in range(3))
    empty = open_index(tmp_path / "part-2")
    assert empty.search(np.ones((1, 16), np.float32) / 4, 3, target="images") == [[]]
    merged = merge_parts([tmp_path / f"part-{i}" for i in range(3)], tmp_path / "merged", CFG)
    whole = build_index(records, VectorEncoder(), tmp_path / "whole", CFG)
    assert merged.image_ids() == whole.image_ids()
    np.testing.assert_array_equal(merged.embeddings("images"), whole.embeddings("images"))


def test_a_part_of_undecodable_cases_is_empty_too(tmp_path: Path) -> None:
    records = make_records(12, corrupt=range(8, 12))
    index = build_index(records, VectorEncoder(), tmp_path / "part-1", CFG, part="1/2")
    assert len(index) == 0 and len(index.skipped()) == 4


@pytest.mark.parametrize("corrupt", [(), (0, 1, 2)], ids=["no-input", "nothing-decodable"])
def test_a_build_with_nothing_to_resume_leaves_no_partial(
    tmp_path: Path, corrupt: tuple[int, ...]
) -> None:
    out = tmp_path / "idx"
    records = make_records(len(corrupt), corrupt=corrupt)
    for _ in range(2):  # the rerun gets the same error, not "pass --resume"
        with pytest.raises(InputError, match="no cases to index"):
            build_index(records, VectorEncoder(), out, CFG)
        assert not partial_dir(out).exists() and not out.exists()


def test_a_build_killed_before_its_first_shard_leaves_no_partial(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    with pytest.raises(Killed):
        build_index(dying(make_records(20), after=5), VectorEncoder(), out, CFG)
    assert not partial_dir(out).exists()
    with pytest.raises(Killed):  # after two complete shards: kept for --resume
        build_index(dying(make_records(20), after=17), VectorEncoder(), out, CFG)
    assert len(list((partial_dir(out) / "emb").glob("shard_*.json"))) == 2
    assert len(build_index(make_records(20), VectorEncoder(), out, CFG, resume=True)) == 20
