"""One writer per output: an OS file lock on `<out>.lock`, held while `<out>` is written.

Index builds (and `--resume`), `index add` and `index merge`, caption runs and training
runs each hold the lock of what they write, so a second medcap process aimed at the same
output stops at once with one line instead of interleaving its writes. The lock is
`flock` on a file beside the output: the kernel drops it when the holder exits, however
it exits (`kill -9` included), so a crash never leaves a stale lock. The holder writes its
pid into the file for the refusal message, and removes the file when it is done.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from medcap.errors import InputError


def lock_path(out: Path) -> Path:
    """The lock file of an output (`<out>.lock`, beside it)."""
    return out.with_name(out.name + ".lock")


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


def _still_linked(fd: int, path: Path) -> bool:
    """Whether `fd` is the file now at `path` (a releasing holder may have removed it)."""
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[Path]:
    """Hold the write lock of `out` for the `with` block; yields the lock file.

    Raises InputError naming the holder's pid when another process holds it.
    """
    out = Path(out)
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InputError(
                f"{out} is being written by another medcap process (pid {holder}); "
                "wait for it or choose another --out"
            ) from None
        if _still_linked(fd, path):
            break
        os.close(fd)  # locked a file its holder had just removed: lock the current one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        # Remove the file while still holding the lock, so no one locks a removed file
        # and believes it holds the lock (the check above catches the opposite order).
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
