"""Pseudonymous ids for DICOM cases: HMAC-SHA256 of UIDs under a key the user keeps.

The key is 32 random bytes (hex) in a file created with 0600 permissions on first use. It
is never written into an index; the manifest records only a check value (the HMAC of a
constant), so a wrong key is refused when a hit is linked back to its study.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from medcap.errors import InputError

_ID_HEX = 24  # 96 bits: no collision in any PACS, short enough to read
_CHECK_TEXT = b"medcap pseudonym key check v1"
_KINDS = {"study": "st", "series": "se", "instance": "in"}


@dataclass(frozen=True)
class PseudonymKey:
    """A loaded pseudonym key; `path` is kept for messages only."""

    path: str
    secret: bytes

    def pseudonym(self, kind: str, uid: str) -> str:
        """The pseudonymous id of a study, series or instance UID, e.g. `se-3f9a...`."""
        prefix = _KINDS[kind]
        digest = hmac.new(self.secret, f"{kind}:{uid.strip()}".encode(), hashlib.sha256)
        return f"{prefix}-{digest.hexdigest()[:_ID_HEX]}"

    def check_value(self) -> str:
        """The HMAC of a constant: recorded in the manifest to recognise this key later."""
        return hmac.new(self.secret, _CHECK_TEXT, hashlib.sha256).hexdigest()[:16]

    def check(self, expected: str, where: str) -> None:
        """Refuse this key when `expected` (a manifest's check value) says another was used."""
        if expected and not hmac.compare_digest(expected, self.check_value()):
            raise InputError(
                f"pseudonym key {self.path} is not the key {where} was built with; "
                "pass the key file used for the build"
            )


def load_pseudonym_key(path: str | Path, *, create: bool = True) -> PseudonymKey:
    """Read the key file at `path`; create it (0600, 32 random bytes) when missing and `create`."""
    file = Path(path).expanduser()
    if not file.exists():
        if not create:
            raise InputError(f"pseudonym key {file} does not exist; pass the key file of the build")
        file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_pseudonym_key(file, create=False)  # another process made it just now
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    if file.is_dir():
        raise InputError(f"pseudonym key {file} is a directory; pass a file path")
    text = file.read_text(encoding="ascii", errors="replace").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 16:
        raise InputError(
            f"pseudonym key {file} is not a medcap key (expected 64 hex digits); "
            "pass the key file medcap created, or a new path to create one"
        )
    return PseudonymKey(str(file), secret)
