"""The ShardEngine contract: any engine that hands back each chunk, in any order, gives the
one-process index; the manifest names the engine; progress reports rate and ETA."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.index import build_index
from medcap.index.chunks import BuildProgress, Chunk, ShardWriter, encode_chunk
from medcap.index.shards import Thumbnailer
from tests.index.vector_encoder import VectorEncoder, make_records

CFG = replace_set(DEFAULTS.index, shard_size=8)


@dataclass
class BackwardsEngine:
    """Takes every chunk first, then writes them last to first (as a cluster may)."""

    encoder: VectorEncoder
    name: str = "backwards"
    progress_every_s: float | None = None
    order: list[str] = field(default_factory=list)

    def run(
        self,
        chunks: Iterable[Chunk],
        write: ShardWriter,
        *,
        batch_size: int,
        make_thumbnail: Thumbnailer | None,
    ) -> None:
        for chunk in reversed(list(chunks)):
            self.order.append(chunk.name)
            write(chunk, encode_chunk(chunk, self.encoder, batch_size=batch_size,
                                      make_thumbnail=make_thumbnail))  # fmt: skip


def _manifest(index: Path) -> dict[str, object]:
    raw = json.loads((index / "manifest.json").read_text())
    raw.pop("created_at")
    raw["sources"][0].pop("added_at")
    return dict(raw)


def test_an_engine_writing_shards_out_of_order_builds_the_same_index(tmp_path: Path) -> None:
    records = make_records(30, corrupt=[4, 17])
    enc = VectorEncoder(dim=16)
    build_index(records, enc, tmp_path / "local", CFG, dataset_name="vec")
    engine = BackwardsEngine(VectorEncoder(dim=16))
    built = build_index(records, enc, tmp_path / "other", CFG, dataset_name="vec", engine=engine)
    assert engine.order == ["00003", "00002", "00001", "00000"]
    assert built.manifest.engine == "backwards"
    local, other = _manifest(tmp_path / "local"), _manifest(tmp_path / "other")
    assert (local.pop("engine"), other.pop("engine")) == ("local", "backwards")
    assert local == other  # same shards, files and checksums
    assert [s.image_id for s in built.skipped()] == ["case_00004", "case_00017"]


def test_an_engine_that_skips_a_chunk_fails_the_build(tmp_path: Path) -> None:
    class Forgetful(BackwardsEngine):
        def run(self, chunks: Iterable[Chunk], write: ShardWriter, **_: object) -> None:
            for chunk in list(chunks)[1:]:
                write(chunk, encode_chunk(chunk, self.encoder, batch_size=4, make_thumbnail=None))

    with pytest.raises(RuntimeError, match="without writing shard 00000"):
        build_index(make_records(20), VectorEncoder(), tmp_path / "idx", CFG,
                    engine=Forgetful(VectorEncoder()))  # fmt: skip
    assert not (tmp_path / "idx").exists()


def test_progress_line_counts_rate_from_the_first_embedded_chunk() -> None:
    meter = BuildProgress(100, bar=False, every_s=None)
    meter.update(30, embedded=False)  # reused shards: done, but no rate
    assert meter.line() == "indexed 30/100 cases (30.0%)"
    meter.update(10, embedded=True)
    meter.update(20, embedded=True)
    assert meter.first is not None
    line = meter.line(now=meter.first[0] + 4.0)  # 20 cases in the 4 s after the first chunk
    assert line == "indexed 60/100 cases (60.0%), 5.0 cases/s, ETA 0m08s"
    meter.close()
