"""Check a bundle against its manifest: every file's size and sha256, nothing missing or extra.

`medcap fetch --verify BUNDLE` prints one line per problem. Files the hub client keeps for
resuming downloads (`.cache/` inside a repository folder) are not part of the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medcap.checksums import file_checksum
from medcap.snapshots.bundle import MANIFEST_NAME, read_manifest

DOWNLOAD_STATE_DIR = ".cache"  # huggingface_hub's resume metadata inside a local_dir


@dataclass
class VerifyReport:
    """What `verify_bundle` found; `problems()` gives one line each."""

    root: Path
    checked: int = 0  # files whose size and sha256 match
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (path, what is wrong)

    @property
    def ok(self) -> bool:
        """True when every listed file is present and intact and nothing else is there."""
        return not (self.missing or self.extra or self.damaged)

    def problems(self) -> list[str]:
        """One line per problem, paths relative to the bundle."""
        return [
            *(f"missing: {p}" for p in self.missing),
            *(f"damaged: {p} ({why})" for p, why in self.damaged),
            *(f"extra: {p}" for p in self.extra),
        ]


def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a file (read in blocks)."""
    return file_checksum(path, "sha256").split(":", 1)[1]


def bundle_files_on_disk(root: Path) -> list[str]:
    """Every regular file under `root` (POSIX, relative), without the manifest and the hub
    client's download state."""
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if DOWNLOAD_STATE_DIR in rel.parts or rel.as_posix() == MANIFEST_NAME:
            continue
        if path.is_file():
            found.append(rel.as_posix())
    return sorted(found)


def verify_bundle(root: Path) -> VerifyReport:
    """Compare every file under `root` with `root/bundle.json` (sizes first, then sha256)."""
    manifest = read_manifest(root)
    report = VerifyReport(root)
    listed = {f.path: f for f in manifest.files()}
    on_disk = set(bundle_files_on_disk(root))
    for rel, entry in sorted(listed.items()):
        path = root / rel
        if rel not in on_disk:
            report.missing.append(rel)
            continue
        size = path.stat().st_size
        if size != entry.size:
            report.damaged.append((rel, f"{size} bytes, expected {entry.size}"))
        elif sha256_of(path) != entry.sha256:
            report.damaged.append((rel, "sha256 differs"))
        else:
            report.checked += 1
    report.extra = sorted(on_disk - listed.keys())
    return report
