"""What the benchmarks page shows: an evaluation report.json as text blocks and its PNG plots.

The report's own `report.md` (rendered by medcap.evaluation.report next to report.json)
is reused when it is up to date; otherwise the report is rendered into a scratch folder.
Which files may be read is decided by medcap.app.report_access.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medcap.app.report_access import REPORT_JSON, ReportAccess

_IMAGE_LINE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+\.png)\)\s*$")
_MAX_FOUND = 50  # report.json files listed by find_reports
_SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", "emb"}


@dataclass(frozen=True)
class Block:
    """One piece of a rendered report: markdown text, or a PNG plot."""

    kind: Literal["markdown", "image"]
    text: str = ""  # markdown, or the image's alt text
    image: Path | None = None


@dataclass(frozen=True)
class ReportView:
    """A report ready to show: its kind, headline numbers and its blocks in order."""

    path: Path  # the report.json
    kind: str
    headline: dict[str, str]
    blocks: list[Block]
    headline_note: str = ""  # what the headline numbers refer to


def markdown_blocks(markdown: str, base_dir: Path) -> list[Block]:
    """Split markdown into text blocks and PNG image blocks (image paths made absolute).

    Headings move down one level so the page title stays the only top-level heading.
    """
    blocks: list[Block] = []
    text: list[str] = []

    def flush() -> None:
        if "".join(text).strip():
            blocks.append(Block("markdown", "\n".join(text).strip("\n")))
        text.clear()

    for line in markdown.splitlines():
        match = _IMAGE_LINE.match(line.strip())
        if match:
            flush()
            blocks.append(Block("image", match["alt"], (base_dir / match["src"]).resolve()))
        else:
            text.append("#" + line if line.startswith("#") else line)
    flush()
    return blocks


def _headline(report: dict[str, Any]) -> dict[str, str]:
    """A few numbers to show large above the report."""
    kind = report.get("kind")
    if kind == "captions":
        return {name: f"{value:.4f}" for name, value in list(report.get("metrics", {}).items())[:6]}
    if kind == "concepts":
        return {"F1": f"{report['f1']:.4f}", "queries": str(report.get("n", ""))}
    if kind == "retrieval" and report.get("encoders"):
        from medcap.evaluation.report_tables import pct

        first = report["encoders"][0]
        ks = report["config"]["retrieval"]["recall_ks"]
        out = {"gallery": f"{report.get('gallery_size', '?')} pairs"}
        for direction, short in (("image_to_text", "i→t"), ("text_to_image", "t→i")):
            scores = first.get(direction, {})
            for k in (ks[0], ks[-1]):
                value = pct(scores.get(f"R@{k}"))
                out[f"{short} R@{k}"] = value if value == "–" else f"{value}%"
        return out
    return {}


def open_report_view(
    path: str | Path, access: ReportAccess, scratch: Path | None = None
) -> ReportView:
    """Load a report.json (or its directory) and its rendered markdown and plots.

    Only files `access` allows are read (see medcap.app.report_access); a plot outside the
    report folders (or the scratch folder a stale report is rendered into) is left out.
    Raises ReportRefused/CorruptArtifactError with a one-line message for a bad path.
    """
    from medcap.evaluation.report import REPORT_MD, parse_report, render_report

    json_path = access.locate(str(path))
    report = parse_report(access.read_bytes(json_path), json_path)
    md_path = Path(os.path.realpath(json_path.with_name(REPORT_MD)))
    image_dirs = access
    if access.allows(md_path) and md_path.stat().st_mtime >= json_path.stat().st_mtime:
        markdown = access.read_bytes(md_path).decode("utf-8", errors="replace")
    else:
        out = scratch or Path(tempfile.mkdtemp(prefix="medcap-report-"))
        md_path = render_report(report, out)
        markdown = md_path.read_text(encoding="utf-8")
        image_dirs = dataclasses.replace(access, roots=(*access.roots, Path(os.path.realpath(out))))
    blocks = [
        b
        if b.image is None or image_dirs.allows(b.image)
        else Block("image", b.text, None)  # named in the markdown, but not a file we may show
        for b in markdown_blocks(markdown, md_path.parent)
    ]
    note = ""
    if report["kind"] == "retrieval" and report.get("encoders"):
        note = f"headline numbers: encoder `{report['encoders'][0].get('label', '?')}`"
    return ReportView(json_path, str(report["kind"]), _headline(report), blocks, note)


def find_reports(access: ReportAccess, *, max_depth: int = 4) -> list[Path]:
    """report.json files under the report folders (newest first), for the page's list.

    Symlinked folders are not followed, and only files `access` would open are listed.
    """
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if len(found) >= _MAX_FOUND:
                return
            if entry.is_symlink():
                continue
            if entry.is_dir() and depth < max_depth and entry.name not in _SKIP_DIRS:
                walk(entry, depth + 1)
            elif entry.name == REPORT_JSON and access.allows(entry):
                found.append(entry)

    for root in access.roots:
        walk(root, 0)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
