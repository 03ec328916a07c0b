"""Item 14: resuming a build verifies each complete shard; a damaged one is embedded again."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.index import build_index
from medcap.index.finalize import partial_dir
from tests.index.vector_encoder import Killed, VectorEncoder, dying, make_records

CFG = replace_set(DEFAULTS.index, shard_size=8)


def _interrupted(tmp_path: Path) -> Path:
    out = tmp_path / "idx"
    with pytest.raises(Killed):
        build_index(dying(make_records(40), after=27), VectorEncoder(), out, CFG)
    assert (partial_dir(out) / "emb" / "shard_00001.json").exists()
    return out


@pytest.mark.parametrize("damage", ["truncate", "same_size"])
def test_a_damaged_shard_is_embedded_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    full = build_index(make_records(40), VectorEncoder(), tmp_path / "full", CFG)
    out = _interrupted(tmp_path)
    shard = partial_dir(out) / "emb" / "image_00001.npy"
    data = shard.read_bytes()
    if damage == "truncate":
        shard.write_bytes(data[: len(data) // 2])
    else:
        shard.write_bytes(data[:-8] + bytes(8))  # the last vector's tail zeroed
    enc = VectorEncoder()
    with caplog.at_level(logging.WARNING, logger="medcap.index.build"):
        index = build_index(make_records(40), enc, out, CFG, resume=True)
    warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(warnings) == 1 and "shard 00001" in warnings[0]
    assert enc.encoded == 40 - 16  # shards 0 and 2 reused; 1 and 3-4 embedded
    for target in ("images", "captions"):
        np.testing.assert_array_equal(index.embeddings(target), full.embeddings(target))
