"""User-facing errors: one line that says what happened, where, and what to do."""

from __future__ import annotations


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace runs collapsed), at most `limit` chars."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MedcapError(Exception):
    """Base class for errors a user can cause and fix; the CLI prints them as one line."""


class InputError(MedcapError):
    """Bad user input: a missing file, a missing column, an unreadable image, a bad option."""


class ImageDecodeError(InputError):
    """An image file or byte string that cannot be decoded."""


class ImageTooLargeError(ImageDecodeError):
    """An image whose header declares more pixels than the configured limit (not decoded)."""


class OfflineFetchError(MedcapError):
    """Something had to be fetched from a hub while offline; says what to pass instead."""


class IndexMismatchError(MedcapError):
    """An index opened with an encoder other than the one that built it."""


class CorruptArtifactError(MedcapError):
    """A damaged or incomplete artifact file (index, parquet, checkpoint, manifest)."""


class MissingExtraError(MedcapError):
    """An optional dependency group is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'medcap[{extra}]'"
        )
