"""The index directory's `manifest.json`: what was indexed, with which encoder, how.

The manifest is written last, after every other file of the directory is complete, so
its presence is what makes a directory an index. It records the size and the checksum
(medcap.checksums) of each file, so that a truncated, replaced or altered file is caught
when the index is opened, before FAISS or pyarrow read it.

Format 2 added the checksums. A format-1 index cannot be verified: it opens only when
verification is turned off (`--no-verify`), with a logged warning, and otherwise is
refused with the advice to rebuild it. Refusing by default keeps the promise that every
opened index was checked; the escape hatch keeps an old index usable while it is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medcap.atomic import write_json_atomic
from medcap.errors import CorruptArtifactError, IndexMismatchError, InputError

LOG = logging.getLogger(__name__)
FORMAT_VERSION = 2
UNVERIFIABLE_VERSION = 1  # no checksums: opened only without verification
MANIFEST_NAME = "manifest.json"
METRIC = "inner_product"  # over L2-normalised float32 vectors, i.e. cosine similarity
TARGETS: tuple[str, ...] = ("images", "captions")
INDEX_FILES = {"images": "image.faiss", "captions": "caption.faiss"}
ITEMS_NAME = "items.parquet"
THUMBS_NAME = "thumbnails.parquet"
SKIPPED_NAME = "skipped.jsonl"
EMB_DIR = "emb"


@dataclass(frozen=True)
class EncoderInfo:
    """The encoder that produced the vectors."""

    spec: str  # as given by the user (a name, hf-hub id, or a path)
    fingerprint: str
    embed_dim: int
    checkpoint: str | None = None  # absolute path when the spec is a local file


@dataclass(frozen=True)
class IndexInfo:
    """The FAISS index type, its factory string, search parameters and why it was chosen."""

    type: str  # flat | hnsw | ivfpq
    factory: str  # FAISS index_factory string, e.g. "Flat", "HNSW32", "IVF1024,PQ64x8"
    params: dict[str, Any] = field(default_factory=dict)  # efSearch, nprobe, rerank_factor
    reason: str = ""
    requested: str = "auto"


@dataclass(frozen=True)
class SourceInfo:
    """One dataset split that went into the index (a build, then each `index add`)."""

    dataset: str
    fingerprint: str
    split: str
    count: int  # cases indexed from it
    added_at: str
    # The metadata columns allowed into items.parquet (DataConfig.keep_columns); None: not
    # recorded (an index written before medcap recorded it, or by a caller that did not say).
    kept_columns: tuple[str, ...] | None = None
    # DICOM sources: the pseudonym key's check value (an HMAC of a constant, not the key),
    # so a wrong key is refused when hits are linked back to their studies.
    pseudonym_check: str = ""

    def __post_init__(self) -> None:
        if self.kept_columns is not None:  # JSON gives a list
            object.__setattr__(self, "kept_columns", tuple(str(c) for c in self.kept_columns))


@dataclass(frozen=True)
class RemovalInfo:
    """One `index remove` (or `index sync --remove-missing`): how many cases, when; not which."""

    count: int
    removed_at: str


@dataclass(frozen=True)
class ShardInfo:
    """One float16 embedding shard under `emb/`."""

    name: str  # e.g. "00003": files emb/image_00003.npy, caption_00003.npy, items_00003.parquet
    count: int


@dataclass(frozen=True)
class Manifest:
    """Everything needed to open, check and extend an index directory."""

    encoder: EncoderInfo
    dim: int
    count: int
    index: IndexInfo
    sources: tuple[SourceInfo, ...]
    shards: tuple[ShardInfo, ...]
    files: dict[str, int]  # file name relative to the directory -> size in bytes
    checksums: dict[str, str] = field(default_factory=dict)  # same names -> "algo:hex"
    skipped_count: int = 0
    has_thumbnails: bool = False
    metric: str = METRIC
    format_version: int = FORMAT_VERSION
    created_at: str = ""
    medcap_version: str = ""
    part: str = ""  # "i/n" for one part of a `--shard i/n` build (see medcap.index.merge)
    engine: str = "local"  # what embedded the cases: "local" (one process) or "ray" (a cluster)
    removals: tuple[RemovalInfo, ...] = ()  # withdrawn cases: counts and times, never ids

    @property
    def spec(self) -> str:
        """The encoder spec the index was built with."""
        return self.encoder.spec

    @property
    def fingerprint(self) -> str:
        """The encoder fingerprint every query encoder must match."""
        return self.encoder.fingerprint

    @property
    def dataset_fingerprint(self) -> str:
        """Fingerprint of the first (building) dataset."""
        return self.sources[0].fingerprint if self.sources else ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return asdict(self)


def parse_manifest(raw: dict[str, Any], where: str, *, verify: bool = True) -> Manifest:
    """Build a Manifest from its JSON dict; `where` names the file in errors.

    A format-1 manifest (no checksums) is refused when `verify`, else read with a warning.
    """
    version = raw.get("format_version")
    if version == UNVERIFIABLE_VERSION and verify:
        raise InputError(
            f"{where}: index format 1 records no checksums, so its files cannot be verified; "
            "rebuild the index with `medcap index build` (or pass --no-verify to open it "
            "unverified)"
        )
    if version == UNVERIFIABLE_VERSION:
        LOG.warning("%s: index format 1 has no checksums; opening it unverified", where)
    elif version != FORMAT_VERSION:
        raise CorruptArtifactError(
            f"{where}: index format version {version!r} is not supported (this medcap reads "
            f"version {FORMAT_VERSION}); rebuild the index with `medcap index build`"
        )
    try:
        return Manifest(
            encoder=EncoderInfo(**raw["encoder"]),
            dim=int(raw["dim"]),
            count=int(raw["count"]),
            index=IndexInfo(**raw["index"]),
            sources=tuple(SourceInfo(**s) for s in raw["sources"]),
            shards=tuple(ShardInfo(**s) for s in raw["shards"]),
            files={str(k): int(v) for k, v in raw["files"].items()},
            checksums={str(k): str(v) for k, v in raw.get("checksums", {}).items()},
            skipped_count=int(raw.get("skipped_count", 0)),
            has_thumbnails=bool(raw.get("has_thumbnails", False)),
            metric=str(raw["metric"]),
            format_version=int(version),
            created_at=str(raw.get("created_at", "")),
            medcap_version=str(raw.get("medcap_version", "")),
            part=str(raw.get("part", "")),
            engine=str(raw.get("engine", "local")),
            removals=tuple(RemovalInfo(**r) for r in raw.get("removals", [])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptArtifactError(
            f"{where}: manifest is missing or has a bad field ({exc}); rebuild the index"
        ) from None


def read_manifest(directory: Path, *, verify: bool = True) -> Manifest:
    """Read and check `directory/manifest.json` (see `parse_manifest` for `verify`)."""
    path = directory / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CorruptArtifactError(
            f"{path} is missing: {directory} is not a complete index"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptArtifactError(f"{path}: not valid JSON ({exc}); rebuild the index") from None
    if not isinstance(raw, dict):
        raise CorruptArtifactError(f"{path}: expected a JSON object; rebuild the index")
    return parse_manifest(raw, str(path), verify=verify)


def index_fingerprint(directory: Path) -> str:
    """sha256 hex of `directory/manifest.json`: it records every file's checksum, so any
    rebuild, addition or change of the index gives another value (a run's identity)."""
    path = directory / MANIFEST_NAME
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        raise InputError(
            f"{path} is missing: {directory} is not an index; build one with `medcap index build`"
        ) from None


def write_manifest(manifest: Manifest, directory: Path) -> Path:
    """Write `directory/manifest.json` atomically."""
    path = directory / MANIFEST_NAME
    write_json_atomic(path, manifest.to_dict())
    return path


def parse_part(text: str) -> tuple[int, int]:
    """ "i/n" (0 <= i < n) -> (i, n): which of n parts a `--shard i/n` build indexes."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        raise InputError(f"--shard {text!r} must be i/n with 0 <= i < n, e.g. 0/4 ... 3/4")
    return i, n


def check_fingerprint(manifest: Manifest, expected: str | None, where: str) -> None:
    """Refuse an encoder whose fingerprint differs from the one that built the index."""
    if expected is not None and expected != manifest.fingerprint:
        raise IndexMismatchError(
            f"{where} was built with encoder {manifest.spec!r} (fingerprint "
            f"{manifest.fingerprint}) but the encoder in use has fingerprint {expected}; "
            "use the same encoder or rebuild the index with this one"
        )
