"""A stricter network guard than the conftest's: refuse and record every socket connect
(loopback included) and every DNS lookup, for loads that must not even try the hub."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

_PATCHED = ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "create_connection")


@contextmanager
def network_refused(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Inside: every connect and lookup raises OSError and is listed in the yielded list."""
    attempts: list[str] = []

    def refuse(kind: str) -> Any:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            target = args[1] if kind == "connect" and len(args) > 1 else args[:1]
            attempts.append(f"{kind} {target!r}")
            raise OSError(f"network disabled in this test ({kind} {target!r})")

        return blocked

    with monkeypatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse("connect"))
        patch.setattr(socket.socket, "connect_ex", refuse("connect"))
        for name in _PATCHED:
            patch.setattr(socket, name, refuse(name))
        yield attempts
