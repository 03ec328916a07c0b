"""User-facing errors: one line that says what happened, where, and what to do."""

from __future__ import annotations


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


class ServiceError(MedcapError):
    """A `medcap serve` service refused a request or could not be reached; `status` is the
    HTTP status (0 when no answer came)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class MissingExtraError(MedcapError):
    """An optional dependency group is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'medcap[{extra}]'"
        )


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first non-empty line of an exception's message (its type name when it has none),
    cut to `limit` characters: a library's multi-line error inside a one-line message."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if limit is None else text[:limit]
