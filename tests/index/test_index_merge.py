"""`--shard i/n` builds and `merge_parts`: the parts merge into what one build writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.errors import InputError
from medcap.index import add_to_index, build_index, merge_parts, open_index
from medcap.types import ImageRef
from tests.index.vector_encoder import VectorEncoder, make_records

CFG = replace_set(DEFAULTS.index, shard_size=20)


def _records() -> list:
    records = make_records(130, corrupt=[7, 95])
    # case_00064 appears again in chunk 5 (another part when n=3): the first one stays.
    records[110] = dataclasses.replace(records[64], image=ImageRef(data=b"again"))
    return records


def _build_parts(tmp_path: Path, n: int) -> list[Path]:
    parts = []
    for i in range(n):
        out = tmp_path / f"part{i}"
        build_index(_records(), VectorEncoder(dim=16), out, CFG, part=f"{i}/{n}",
                    dataset_fingerprint="d1", split="train")  # fmt: skip
        parts.append(out)
    return parts


@pytest.mark.parametrize("n", [1, 3])
def test_merged_parts_equal_one_build(tmp_path: Path, n: int) -> None:
    whole = build_index(_records(), VectorEncoder(dim=16), tmp_path / "whole", CFG,
                        dataset_fingerprint="d1", split="train")  # fmt: skip
    parts = _build_parts(tmp_path, n)
    part_counts = [len(open_index(p)) for p in parts]
    merged = merge_parts(list(reversed(parts)), tmp_path / "merged", CFG)
    assert sum(part_counts) == len(merged) + (1 if n == 3 else 0)  # the repeated id, once
    assert merged.image_ids() == whole.image_ids()
    for target in ("images", "captions"):
        np.testing.assert_array_equal(merged.embeddings(target), whole.embeddings(target))  # type: ignore[arg-type]
    queries = whole.embeddings("images")[:10]
    assert [
        [h.image_id for h in hits] for hits in merged.search(queries, 5, target="captions")
    ] == [[h.image_id for h in hits] for hits in whole.search(queries, 5, target="captions")]
    assert {s.image_id for s in merged.skipped()} == {s.image_id for s in whole.skipped()}
    assert merged.manifest.count == whole.manifest.count and not merged.manifest.part


def test_each_part_is_a_searchable_index_that_add_refuses(tmp_path: Path) -> None:
    part = _build_parts(tmp_path, 2)[1]
    index = open_index(part)
    assert index.manifest.part == "1/2"
    assert {int(s.name) % 2 for s in index.manifest.shards} == {1}
    hits = index.search(index.embeddings("images")[:1], 1, target="images")[0]
    assert hits[0].image_id == index.image_ids()[0]
    with pytest.raises(InputError, match="part 1/2 of a sharded build"):
        add_to_index(part, make_records(3, start=500), VectorEncoder(dim=16), CFG)


def test_merge_refuses_parts_that_do_not_belong_together(tmp_path: Path) -> None:
    parts = _build_parts(tmp_path, 3)
    with pytest.raises(InputError, match="parts 2/3 are missing"):
        merge_parts(parts[:2], tmp_path / "m1", CFG)
    with pytest.raises(InputError, match="are both part 0/3"):
        merge_parts([parts[0], parts[0], parts[1]], tmp_path / "m2", CFG)
    other = tmp_path / "other"
    build_index(_records(), VectorEncoder(dim=16, fingerprint="vec-0002"), other, CFG,
                part="2/3", dataset_fingerprint="d1", split="train")  # fmt: skip
    with pytest.raises(InputError, match="same encoder"):
        merge_parts([parts[0], parts[1], other], tmp_path / "m3", CFG)
    whole = tmp_path / "whole"
    build_index(_records(), VectorEncoder(dim=16), whole, CFG)
    with pytest.raises(InputError, match="not part of a sharded build"):
        merge_parts([whole], tmp_path / "m4", CFG)
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m1.partial").exists()


@pytest.mark.parametrize("bad", ["3/3", "1", "a/b", "-1/2", "0/0"])
def test_bad_shard_spec_is_an_input_error(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InputError, match="must be i/n"):
        build_index(make_records(5), VectorEncoder(dim=16), tmp_path / "x", CFG, part=bad)
