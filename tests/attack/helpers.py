"""Helpers for the attack tests: CLI runs, one-line errors, checkpoints (real and crafted),
compact huge PNGs, lock holders."""

from __future__ import annotations

import os
import shlex
import struct
import subprocess
import sys
import time
import zlib
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from medcap.cli import main

REPO = Path(__file__).resolve().parents[2]
ATTACK_CASES = 40  # train phantoms indexed: enough neighbours, quick to embed
WAIT_S = 120.0  # generous: the suite may run on a busy machine or in the background


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`medcap ARGV` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The single `error: ...` line of a refused command (fails on tracebacks or more)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    assert "Traceback" not in err, err
    return lines[-1]


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit code 1 and stderr holding only one `error: ...` line (see `one_error_line`),
    which holds every one of `needles`."""
    assert code == 1, err
    line = one_error_line(err)
    assert len([x for x in err.splitlines() if x.strip()]) == 1, err
    for needle in needles:
        assert needle in line, (needle, line)


def write_tiny_checkpoint(path: Path, *, seed: int) -> Path:
    """A medcap-tiny checkpoint of random weights (seeded) plus its sidecar, as training
    writes them; returns the .pt path."""
    from medcap.encoder.checkpoint import fingerprint_state, write_checkpoint
    from medcap.encoder.factory import build_model
    from medcap.encoder.spec import parse_spec

    built = build_model(parse_spec("medcap-tiny"), seed=seed)
    state = {k: v.detach().clone() for k, v in built.model.state_dict().items()}
    sidecar = {
        "architecture": built.architecture,
        "preprocess": built.preprocess_cfg,
        "fingerprint": fingerprint_state(built.architecture, state),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(path, state, sidecar)
    return path


def overwrite_weights(checkpoint: Path, change: Any) -> None:
    """Rewrite `checkpoint` in place with `change(tensor)` applied to every weight, keeping
    its byte size, inode and modification time; its sidecar is left as it was."""
    import torch

    before = checkpoint.stat()
    payload = torch.load(checkpoint, weights_only=True)
    payload["state_dict"] = {k: change(v) for k, v in payload["state_dict"].items()}
    with open(checkpoint, "r+b") as handle:  # a handle, as medcap writes it (same layout)
        torch.save(payload, handle)
    os.utime(checkpoint, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = checkpoint.stat()
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (
        before.st_size,
        before.st_ino,
        before.st_mtime_ns,
    )


def build_small_index(
    dataset: Any, checkpoint: Path, out: Path, *, cases: int = ATTACK_CASES
) -> Path:
    """Index the first `cases` train phantoms with `checkpoint`; cache its image tower."""
    from medcap.config import DEFAULTS, replace_set
    from medcap.encoder import load_encoder
    from medcap.encoder.image_tower import save_image_tower
    from medcap.index import build_index

    encoder = load_encoder(str(checkpoint), device="cpu")
    cfg = replace_set(DEFAULTS.index, shard_size=16, thumbnail_size=0)
    build_index(
        islice(dataset.records("train"), cases),
        encoder,
        out,
        cfg,
        dataset_fingerprint=dataset.fingerprint(),
        dataset_name=dataset.name,
        split="train",
    )
    save_image_tower(encoder)
    return out


def python_env() -> dict[str, str]:
    """The environment for child Python processes: this source tree and the tests first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    return env


def start_python(code: str, *args: str) -> subprocess.Popen[str]:
    """A child Python process running `code` with `args` (stdin kept open, output piped)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=python_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate: Any, what: str, proc: subprocess.Popen[str] | None = None) -> None:
    """Poll `predicate()` until true; fail after WAIT_S or when `proc` exits first."""
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process exited ({proc.returncode}) before {what}: {out} {err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill a child process and reap it (safe when it already exited)."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=WAIT_S)


# Holds medcap's lock of argv[1] until stdin closes or the process is killed.
HOLD_LOCK = """
import sys
from medcap.locking import output_lock
with output_lock(sys.argv[1]):
    sys.stdin.read()
"""


def lock_holder(out: Path) -> subprocess.Popen[str]:
    """A child process holding the output lock of `out` (returns once it holds it)."""
    from medcap.locking import lock_path

    proc = start_python(HOLD_LOCK, str(out))
    lock = lock_path(out)
    wait_for(
        lambda: lock.exists() and lock.read_text().strip() == str(proc.pid),
        f"the lock of {out}",
        proc,
    )
    return proc


class ShellPayload:
    """Pickles to a call of `os.system`: whoever unpickles it runs `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def pickled_payload(marker: Path) -> bytes:
    """torch.save bytes of a dict holding a ShellPayload (what a crafted checkpoint holds)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"state_dict": ShellPayload(marker), "optimizer": ShellPayload(marker)}, buf)
    return buf.getvalue()


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """A valid 8-bit grayscale PNG of zeros, streamed row by row (no full image in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    deflate = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte 0, then the pixels
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path
