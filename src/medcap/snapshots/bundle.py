"""A bundle: hub repositories copied into one folder, and hub ids resolved into it.

Layout (what `medcap fetch` writes; `bundle.json` is written last):

    BUNDLE/bundle.json                         format, recipe, and per repository: kind,
                                               id, commit, requested revision, role, files
                                               (path, size, sha256)
    BUNDLE/models/<org>--<name>/...            each model repository's files, as on the hub
    BUNDLE/datasets/<org>--<name>/...          each dataset repository's files

With `MEDCAP_BUNDLE=BUNDLE` (or `medcap --bundle BUNDLE`), a hub model id, an `hf-hub:` spec
or a hub dataset name that the bundle holds loads from its folder, with no network.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from medcap.atomic import write_json_atomic
from medcap.errors import CorruptArtifactError, InputError

BUNDLE_ENV = "MEDCAP_BUNDLE"
MANIFEST_NAME = "bundle.json"
BUNDLE_FORMAT = "medcap-bundle"
BUNDLE_VERSION = 1

RepoKind = Literal["model", "dataset"]
KIND_FOLDERS: dict[RepoKind, str] = {"model": "models", "dataset": "datasets"}


def repo_folder(kind: RepoKind, repo: str) -> str:
    """The folder of a repository inside a bundle, relative: `models/org--name`."""
    return f"{KIND_FOLDERS[kind]}/{repo.replace('/', '--')}"


@dataclass(frozen=True)
class BundleFile:
    """One file of a bundle: path relative to the bundle (POSIX), size in bytes, sha256 hex."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class BundleRepo:
    """One hub repository copied into the bundle."""

    kind: RepoKind
    repo: str  # hub id, org/name
    revision: str  # the commit the files come from
    requested: str  # the revision the recipe asked for (a branch, tag or commit)
    role: str  # what medcap uses it for: encoder, text-model, generator, bertscore, data
    folder: str  # relative to the bundle, see repo_folder
    files: tuple[BundleFile, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class BundleManifest:
    """`bundle.json`: the recipe a bundle was fetched for and every repository in it."""

    recipe: str
    created_at: str
    repos: tuple[BundleRepo, ...]
    format: str = BUNDLE_FORMAT
    version: int = BUNDLE_VERSION

    def find(self, kind: RepoKind, repo: str) -> BundleRepo | None:
        """The entry of hub repository `repo` (case-insensitive, as the hub), or None."""
        wanted = repo.lower()
        return next((r for r in self.repos if r.kind == kind and r.repo.lower() == wanted), None)

    def files(self) -> list[BundleFile]:
        """Every file the manifest lists, over all repositories."""
        return [f for r in self.repos for f in r.files]


def _repo_from_json(raw: dict[str, Any]) -> BundleRepo:
    files = tuple(
        BundleFile(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in raw["files"]
    )
    kind = raw["kind"]
    if kind not in KIND_FOLDERS:
        raise ValueError(f"unknown repository kind {kind!r}")
    return BundleRepo(
        kind=kind,
        repo=str(raw["repo"]),
        revision=str(raw["revision"]),
        requested=str(raw.get("requested", raw["revision"])),
        role=str(raw.get("role", "")),
        folder=str(raw["folder"]),
        files=files,
    )


def read_manifest(root: Path) -> BundleManifest:
    """Read `root/bundle.json`; InputError when `root` is no bundle, CorruptArtifactError
    when its manifest is damaged."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise InputError(
            f"{root} is not a medcap bundle (no {MANIFEST_NAME}); pass a folder written by "
            "`medcap fetch --out`, or finish an interrupted fetch by running it again"
        )
    return _read_manifest_cached(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_manifest_cached(path: str, mtime_ns: int) -> BundleManifest:
    try:
        raw = json.loads(Path(path).read_text())
        if raw.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"format is {raw.get('format')!r}, not {BUNDLE_FORMAT!r}")
        repos = tuple(_repo_from_json(r) for r in raw["repos"])
        return BundleManifest(str(raw.get("recipe", "")), str(raw.get("created_at", "")), repos)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptArtifactError(
            f"{path}: damaged bundle manifest ({exc}); fetch the bundle again"
        ) from None


def write_manifest(root: Path, manifest: BundleManifest) -> None:
    """Write `root/bundle.json` atomically (the last step of a fetch)."""
    write_json_atomic(root / MANIFEST_NAME, asdict(manifest))


def active_bundle() -> Path | None:
    """The bundle named by MEDCAP_BUNDLE (set by `medcap --bundle` too), or None.

    Raises InputError when the variable names a folder that is no bundle, so a typo is
    reported instead of silently reaching for the network.
    """
    value = os.environ.get(BUNDLE_ENV, "").strip()
    if not value:
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        raise InputError(f"{BUNDLE_ENV}={value}: no such folder; pass a bundle folder")
    read_manifest(root)
    return root


def use_bundle(path: str | Path | None) -> str | None:
    """Make `path` the active bundle (None: none) for this process and the processes it
    starts; returns the previous MEDCAP_BUNDLE value (None if unset) to restore later."""
    previous = os.environ.get(BUNDLE_ENV)
    if path is None:
        os.environ.pop(BUNDLE_ENV, None)
        return previous
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InputError(
            f"--bundle {path}: no such folder; pass a folder written by `medcap fetch`"
        )
    read_manifest(root)
    os.environ[BUNDLE_ENV] = str(root.resolve())
    return previous


def restore_bundle(previous: str | None) -> None:
    """Put MEDCAP_BUNDLE back as `use_bundle` found it."""
    if previous is None:
        os.environ.pop(BUNDLE_ENV, None)
    else:
        os.environ[BUNDLE_ENV] = previous


def _bundle_dir(kind: RepoKind, repo: str) -> Path | None:
    root = active_bundle()
    if root is None:
        return None
    entry = read_manifest(root).find(kind, repo)
    if entry is None:
        return None
    folder = root / entry.folder
    if not folder.is_dir():
        raise CorruptArtifactError(
            f"bundle {root} lists {repo} but its folder {entry.folder} is missing; "
            f"run `medcap fetch --verify {root}` and fetch it again"
        )
    return folder


def bundle_model_dir(repo: str) -> Path | None:
    """The active bundle's folder of model repository `repo` (org/name), or None."""
    return _bundle_dir("model", repo)


def bundle_dataset_dir(name: str) -> Path | None:
    """The active bundle's folder of dataset repository `name` (org/name), or None."""
    return _bundle_dir("dataset", name)


def bundle_note() -> str:
    """How messages name the active bundle: `bundle B` or `no bundle (MEDCAP_BUNDLE unset)`."""
    value = os.environ.get(BUNDLE_ENV, "").strip()
    return f"bundle {value}" if value else f"no bundle ({BUNDLE_ENV} unset)"
