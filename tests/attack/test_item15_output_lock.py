"""Item 15: one writer per output, by an OS lock that a killed holder releases."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from medcap.config import DEFAULTS, replace_set
from medcap.errors import InputError
from medcap.index import build_index
from medcap.locking import lock_path
from tests.attack.helpers import (
    lock_holder,
    one_error_line,
    run_cli,
    start_python,
    stop,
    wait_for,
)
from tests.index.vector_encoder import VectorEncoder, make_records

CFG = replace_set(DEFAULTS.index, shard_size=8)

# A real build that stops after its first shard until its stdin closes: it holds the lock.
SLOW_BUILD = """
import sys
from medcap.config import DEFAULTS, replace_set
from medcap.index import build_index
from tests.index.vector_encoder import VectorEncoder, make_records

def records():
    for i, record in enumerate(make_records(30)):
        if i == 10:
            sys.stdin.read()  # blocks: the test kills this process here
        yield record

build_index(records(), VectorEncoder(), sys.argv[1], replace_set(DEFAULTS.index, shard_size=8))
"""

SECOND_BUILD = """
import sys
from medcap.config import DEFAULTS, replace_set
from medcap.errors import MedcapError
from medcap.index import build_index
from tests.index.vector_encoder import VectorEncoder, make_records

try:
    build_index(make_records(30), VectorEncoder(), sys.argv[1],
                replace_set(DEFAULTS.index, shard_size=8), resume=True)
except MedcapError as exc:
    print(exc)
    sys.exit(1)
"""


def test_second_build_is_refused_and_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    lock = lock_path(out)
    holder = start_python(SLOW_BUILD, str(out))
    try:
        shard = tmp_path / "idx.partial" / "emb" / "shard_00000.json"
        wait_for(lambda: shard.exists(), "the first build's first shard", holder)
        assert lock.read_text().strip() == str(holder.pid)
        second = start_python(SECOND_BUILD, str(out))
        stdout, stderr = second.communicate(timeout=120)
        assert second.returncode == 1, stderr
        assert stdout.strip() == (
            f"{out} is being written by another medcap process (pid {holder.pid}); "
            "wait for it or choose another --out"
        )
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=120)
    finally:
        stop(holder)
    index = build_index(make_records(30), VectorEncoder(), out, CFG, resume=True)
    assert len(index) == 30 and not lock.exists()


def test_cli_build_add_and_merge_are_refused_while_locked(
    capsys: pytest.CaptureFixture[str], phantom_dir: Path, attack_index: Path, tmp_path: Path
) -> None:
    out = tmp_path / "idx"
    holder = lock_holder(out)
    try:
        code, _, err = run_cli(
            capsys, "index", "build", "--data", phantom_dir, "--out", out, "--split", "test"
        )
        assert code == 1 and f"(pid {holder.pid})" in one_error_line(err)
        assert not out.exists() and not (tmp_path / "idx.partial").exists()
        code, _, err = run_cli(capsys, "index", "merge", attack_index, "--out", out)
        assert code == 1 and "being written by another medcap process" in one_error_line(err)
    finally:
        stop(holder)
    holder = lock_holder(attack_index)
    try:
        code, _, err = run_cli(
            capsys, "index", "add", attack_index, "--data", phantom_dir, "--split", "valid"
        )
        assert code == 1 and f"(pid {holder.pid})" in one_error_line(err)
    finally:
        stop(holder)


def test_caption_and_train_runs_hold_their_outputs(
    phantom_dir: Path, attack_index: Path, tmp_path: Path
) -> None:
    from medcap.runs.caption import BatchRun, caption_split
    from medcap.train.loop import train_encoder

    csv_out = tmp_path / "captions.csv"
    run_dir = tmp_path / "run"
    holders: list[Any] = [lock_holder(csv_out), lock_holder(run_dir)]
    try:
        run = BatchRun(str(phantom_dir), "test", str(attack_index), str(csv_out))
        with pytest.raises(InputError, match=f"pid {holders[0].pid}"):
            caption_split(run, DEFAULTS.generation, progress=False)
        with pytest.raises(InputError, match=f"pid {holders[1].pid}"):
            train_encoder(phantom_dir, run_dir, cfg=DEFAULTS.train)
    finally:
        for holder in holders:
            stop(holder)
    assert not csv_out.exists() and not run_dir.exists()
