"""A bundle written exactly as `medcap fetch` writes one, from local folders (no hub)."""

from __future__ import annotations

import shutil
from pathlib import Path


def write_bundle(
    root: Path,
    repos: list[tuple[str, str, str, Path]],
    *,
    recipe: str = "rocov2-biomedclip-qwen2vl",
) -> Path:
    """A bundle laid out as `medcap fetch` writes it, from (kind, repo id, role, folder)
    entries: each folder copied to `<models|datasets>/<org>--<name>/`, then bundle.json."""
    from medcap.clock import now_iso
    from medcap.snapshots.bundle import (
        BundleFile,
        BundleManifest,
        BundleRepo,
        repo_folder,
        write_manifest,
    )
    from medcap.snapshots.verify import sha256_of

    entries = []
    for number, (kind, repo, role, source) in enumerate(repos):
        folder = repo_folder(kind, repo)  # type: ignore[arg-type]
        shutil.copytree(source, root / folder, dirs_exist_ok=True)
        files = tuple(
            BundleFile(p.relative_to(root).as_posix(), p.stat().st_size, sha256_of(p))
            for p in sorted((root / folder).rglob("*"))
            if p.is_file()
        )
        commit = f"{number + 1:x}" * 40  # a commit id of the hub's form
        entries.append(BundleRepo(kind, repo, commit[:40], "main", role, folder, files))  # type: ignore[arg-type]
    write_manifest(root, BundleManifest(recipe=recipe, created_at=now_iso(), repos=tuple(entries)))
    return root
