"""Building an index directory: files, alignment, atomic writes, resume, overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.errors import InputError
from medcap.index import build_index, open_index
from medcap.index.finalize import partial_dir
from tests.index.vector_encoder import Killed, VectorEncoder, dying, make_records

CFG = replace_set(DEFAULTS.index, shard_size=8)


def test_build_writes_every_artifact_aligned_row_for_row(tmp_path: Path) -> None:
    enc = VectorEncoder(dim=16)
    records = make_records(30, corrupt=[4, 17])
    index = build_index(
        records, enc, tmp_path / "idx", CFG, dataset_name="vec", dataset_fingerprint="dfp"
    )
    out = tmp_path / "idx"
    names = {p.name for p in out.iterdir()}
    assert {"manifest.json", "image.faiss", "caption.faiss", "items.parquet", "emb"} <= names
    assert not partial_dir(out).exists()
    m = index.manifest
    assert (m.count, m.dim, m.metric) == (28, 16, "inner_product")
    assert m.fingerprint == "vec-0001" and m.spec == enc.spec
    assert (
        m.index.type == "flat"
        and m.index.factory == "Flat"
        and "flat_max_vectors" in m.index.reason
    )
    assert m.sources[0].fingerprint == "dfp" and m.sources[0].split == "train"
    assert len(m.shards) == 4 and sum(s.count for s in m.shards) == 28
    raw = json.loads((out / "manifest.json").read_text())
    assert raw["format_version"] == 2 and raw["encoder"]["fingerprint"] == "vec-0001"
    assert set(raw["checksums"]) == set(raw["files"])

    kept = [r for i, r in enumerate(records) if i not in (4, 17)]
    items = pq.read_table(out / "items.parquet")
    assert items.column("image_id").to_pylist() == [r.image_id for r in kept]
    assert items.column("caption").to_pylist() == [r.caption for r in kept]
    assert items.column("cuis").to_pylist() == [list(r.cuis) for r in kept]
    assert json.loads(items.column("extra")[0].as_py())["modality"] == kept[0].extra["modality"]
    img, cap = enc.vectors(kept)
    np.testing.assert_allclose(index.embeddings("images"), img, atol=2e-3)
    np.testing.assert_allclose(index.embeddings("captions"), cap, atol=2e-3)
    assert [s.image_id for s in index.skipped()] == ["case_00004", "case_00017"]
    assert m.skipped_count == 2
    emb = np.load(out / "emb" / "image_00000.npy")
    assert emb.dtype == np.float16 and emb.shape == (7, 16)  # 8 inputs, case 4 skipped


def test_duplicate_image_ids_are_skipped_and_listed(tmp_path: Path) -> None:
    records = make_records(10) + make_records(3, start=2)
    index = build_index(records, VectorEncoder(), tmp_path / "idx", CFG)
    assert len(index) == 10
    reasons = [s.reason for s in index.skipped()]
    assert len(reasons) == 3 and all("duplicate" in r for r in reasons)


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build_index(make_records(10), VectorEncoder(), out, CFG)
    with pytest.raises(InputError, match="--overwrite"):
        build_index(make_records(12), VectorEncoder(), out, CFG)
    assert len(open_index(out)) == 10  # the earlier index is intact
    assert len(build_index(make_records(12), VectorEncoder(), out, CFG, overwrite=True)) == 12
    assert len(open_index(out)) == 12


def test_no_usable_cases_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no cases to index"):
        build_index(make_records(3, corrupt=[0, 1, 2]), VectorEncoder(), tmp_path / "idx", CFG)
    assert not (tmp_path / "idx").exists()


def test_killed_build_leaves_no_index_and_resume_equals_uninterrupted(tmp_path: Path) -> None:
    records = make_records(45, corrupt=[20])
    full = build_index(records, VectorEncoder(), tmp_path / "full", CFG)

    out = tmp_path / "idx"
    with pytest.raises(Killed):
        build_index(dying(records, after=27), VectorEncoder(), out, CFG)
    work = partial_dir(out)
    assert work.is_dir() and not out.exists()
    assert not (work / "manifest.json").exists()
    assert sorted(p.name for p in (work / "emb").glob("shard_*.json")) == [
        "shard_00000.json", "shard_00001.json", "shard_00002.json"
    ]  # fmt: skip
    with pytest.raises(InputError, match="--resume"):
        open_index(out)
    with pytest.raises(InputError, match="unfinished build"):
        open_index(work)
    with pytest.raises(InputError, match="--resume"):
        build_index(records, VectorEncoder(), out, CFG)

    enc = VectorEncoder()
    resumed = build_index(records, enc, out, CFG, resume=True)
    assert enc.encoded == 45 - 24  # shards 0-2 (24 cases) were reused, the rest encoded
    assert not work.exists()
    assert resumed.image_ids() == full.image_ids()
    for target in ("images", "captions"):
        np.testing.assert_array_equal(resumed.embeddings(target), full.embeddings(target))
    assert pq.read_table(out / "items.parquet").equals(
        pq.read_table(tmp_path / "full" / "items.parquet")
    )
    assert (out / "image.faiss").read_bytes() == (tmp_path / "full" / "image.faiss").read_bytes()
    assert [s.image_id for s in resumed.skipped()] == ["case_00020"]


def test_resume_refuses_other_records(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    with pytest.raises(Killed):
        build_index(dying(make_records(30), after=20), VectorEncoder(), out, CFG)
    with pytest.raises(InputError, match="other records"):
        build_index(make_records(30, start=100), VectorEncoder(), out, CFG, resume=True)
    with pytest.raises(InputError, match="fingerprint"):
        build_index(make_records(30), VectorEncoder(fingerprint="other"), out, CFG, resume=True)


def test_resume_after_kill_between_manifest_and_rename(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build_index(make_records(10), VectorEncoder(), out, CFG)
    out.rename(partial_dir(out))  # as if killed right after writing the manifest
    with pytest.raises(InputError, match="unfinished"):
        open_index(partial_dir(out))
    index = build_index(make_records(10), VectorEncoder(), out, CFG, resume=True)
    assert len(index) == 10 and not partial_dir(out).exists()


def test_overwrite_never_replaces_a_directory_that_is_not_an_index(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match="not an index directory"):
        build_index(make_records(5), VectorEncoder(), out, CFG, overwrite=True)
    assert (out / "thesis.tex").read_text() == "precious"


def test_a_failed_swap_puts_the_old_index_back_and_resume_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from medcap.index import finalize

    out = tmp_path / "idx"
    build_index(make_records(10), VectorEncoder(dim=16), out, CFG)
    real_replace = os.replace

    def replace_failing_into_out(src: Path, dst: Path) -> None:
        if Path(src) == partial_dir(out):  # the finished rebuild moving into place
            raise OSError("injected: the rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(finalize.os, "replace", replace_failing_into_out)
    with pytest.raises(OSError, match="injected"):
        build_index(make_records(20), VectorEncoder(dim=16), out, CFG, overwrite=True)
    assert len(open_index(out)) == 10  # the old index is back, checksums intact
    assert not out.with_name("idx.old").exists()
    monkeypatch.setattr(finalize.os, "replace", real_replace)
    rebuilt = build_index(
        make_records(20), VectorEncoder(dim=16), out, CFG, overwrite=True, resume=True
    )
    assert len(rebuilt) == 20 and not partial_dir(out).exists()
