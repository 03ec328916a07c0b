"""`medcap fetch`: download a recipe's repositories into a bundle (needs the hub).

Each repository is pinned to the commit its requested revision points at, downloaded with
huggingface_hub's `snapshot_download` into `BUNDLE/<models|datasets>/<org>--<name>/`
(a rerun resumes: complete files are not downloaded again), and every file is hashed and
checked against the hub's listing (size; sha256 for LFS files). `bundle.json` is written
last, so a folder without it is an unfinished fetch.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medcap.clock import now_iso
from medcap.errors import CorruptArtifactError, InputError, OfflineFetchError, first_line
from medcap.offline import is_offline, offline_variables
from medcap.snapshots.bundle import (
    MANIFEST_NAME,
    BundleFile,
    BundleManifest,
    BundleRepo,
    repo_folder,
    write_manifest,
)
from medcap.snapshots.recipes import Recipe, RecipeRepo
from medcap.snapshots.verify import sha256_of

log = logging.getLogger(__name__)


def _fetch_error(item: RecipeRepo, exc: BaseException) -> Exception:
    """One line for a failed download: a missing or gated repository, or no connection."""
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        return InputError(
            f"{item.repo} is gated: accept its terms on the hub and log in (HF_TOKEN) first"
        )
    if isinstance(exc, RevisionNotFoundError):
        return InputError(f"{item.repo} has no revision {item.revision!r}; fix the recipe")
    if isinstance(exc, RepositoryNotFoundError):
        return InputError(
            f"{item.kind} repository {item.repo} not found on the hub; fix the recipe"
        )
    return OfflineFetchError(
        f"cannot fetch {item.kind} {item.repo} from the hub ({type(exc).__name__}: "
        f"{first_line(exc, 200)}); run `medcap fetch` on a machine with internet access "
        "(a rerun resumes)"
    )


def _hub_files(api: Any, item: RecipeRepo, commit: str) -> dict[str, Any]:
    """path -> RepoFile for the files of `item` at `commit` that its patterns select."""
    from huggingface_hub.hf_api import RepoFile

    listing = api.list_repo_tree(item.repo, repo_type=item.kind, revision=commit, recursive=True)
    return {
        f.path: f
        for f in listing
        if isinstance(f, RepoFile)
        and (not item.include or any(fnmatch.fnmatch(f.path, p) for p in item.include))
    }


def _bundle_files(root: Path, folder: str, hub_files: dict[str, Any]) -> tuple[BundleFile, ...]:
    """Hash the downloaded files, checking each against the hub's size and LFS sha256."""
    out = []
    for rel, info in sorted(hub_files.items()):
        path = root / folder / rel
        if not path.is_file():
            raise CorruptArtifactError(f"{path}: not downloaded; run the fetch again")
        size, sha256 = path.stat().st_size, sha256_of(path)
        lfs = getattr(info, "lfs", None)
        if size != info.size or (lfs is not None and lfs.sha256 != sha256):
            raise CorruptArtifactError(
                f"{path}: differs from the hub ({size} bytes, expected {info.size}); "
                "delete it and run the fetch again"
            )
        out.append(BundleFile(f"{folder}/{rel}", size, sha256))
    return tuple(out)


def fetch_repo(api: Any, item: RecipeRepo, root: Path) -> BundleRepo:
    """Download one repository of a recipe into `root` and describe it for the manifest."""
    from huggingface_hub import snapshot_download

    folder = repo_folder(item.kind, item.repo)
    try:
        commit = str(api.repo_info(item.repo, repo_type=item.kind, revision=item.revision).sha)
        hub_files = _hub_files(api, item, commit)
        if not hub_files:
            raise InputError(
                f"no file of {item.repo} at {item.revision} matches the recipe's include "
                f"patterns {list(item.include)}; fix the recipe"
            )
        snapshot_download(
            item.repo,
            repo_type=item.kind,
            revision=commit,
            local_dir=root / folder,
            allow_patterns=sorted(hub_files),
        )
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - every hub or network failure becomes one line
        raise _fetch_error(item, exc) from None
    return BundleRepo(
        kind=item.kind,
        repo=item.repo,
        revision=commit,
        requested=item.revision,
        role=item.role,
        folder=folder,
        files=_bundle_files(root, folder, hub_files),
    )


def fetch_bundle(
    recipe: Recipe,
    out: Path,
    *,
    with_optional: bool = False,
    on_repo: Callable[[RecipeRepo], None] | None = None,
) -> BundleManifest:
    """Download every repository of `recipe` into the bundle folder `out`; returns its manifest.

    Needs the hub (huggingface_hub honours HF_ENDPOINT and HF_TOKEN). `with_optional` adds
    the optional repositories (the dataset). Safe to rerun after an interruption.
    """
    if is_offline("models"):
        names = " or ".join(offline_variables("models"))
        raise OfflineFetchError(
            f"`medcap fetch` downloads from the hub and offline mode is on ({names}); "
            "run it on a machine with internet access, then copy the bundle"
        )
    from huggingface_hub import HfApi

    out.mkdir(parents=True, exist_ok=True)
    # files may change below: until the new manifest is written, the folder is no bundle
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    api = HfApi()
    repos = []
    for item in recipe.selected(with_optional=with_optional):
        if on_repo is not None:
            on_repo(item)
        log.debug("fetching %s %s (%s)", item.kind, item.repo, item.revision)
        repos.append(fetch_repo(api, item, out))
    manifest = BundleManifest(recipe=recipe.name, created_at=now_iso(), repos=tuple(repos))
    write_manifest(out, manifest)
    return manifest
