"""Evaluation reports: report.json (the single source of truth) -> report.md + PNG plots.

A report dict has a `kind` (`retrieval`, `captions` or `concepts`) and everything needed
to render it: resolved config, dataset and encoder fingerprints, timings, skipped items.
`write_report` stores it and renders the markdown; `render_report` re-renders a stored one;
`compare_reports` puts several runs (and benchmark JSON files) side by side.

Common keys: kind, medcap_version, created_at, config (resolved dataclasses), skipped
(list of Skipped dicts), timings (seconds). Per kind:

- retrieval: dataset {source, name, fingerprint, split, split_size, pairs_selected, sampled},
  gallery_size, encoders [{label, spec, fingerprint, embed_dim, gallery_size,
  image_to_text / text_to_image {R@k, median_rank, mean_rank, n, recall_curve},
  ranks {direction: 0-based ranks}, image_ids, groups?, attributes, skipped, timings}],
  examples [{image_id, caption, extra, neighbours {label: [{image_id, caption, score, hit}]}}],
  thumbnails {image_id: path relative to the report directory};
- captions: results_file, n, metrics {name: value}, unavailable {name: reason}, clipscore,
  per_item {image_id: [...], metric: [...]};
- concepts: index, dataset, n, f1, threshold_sweep {thresholds, f1}, per_query.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medcap.atomic import write_text_atomic
from medcap.errors import CorruptArtifactError, InputError
from medcap.evaluation import plots, render
from medcap.evaluation.render import SOURCE_DIR_KEY
from medcap.evaluation.report_tables import bench_sections, fmt, md_table, retrieval_table

logger = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
KINDS = ("retrieval", "captions", "concepts")


def write_report(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Write `out_dir/report.json` (and config.json), render report.md and its PNGs.

    Returns the path of report.json.
    """
    if report.get("kind") not in KINDS:
        raise ValueError(f"report kind must be one of {KINDS}, got {report.get('kind')!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_JSON
    stored = {k: v for k, v in report.items() if k != SOURCE_DIR_KEY}
    write_text_atomic(path, json.dumps(stored, indent=1, default=str) + "\n")
    if "config" in report:  # every run keeps its resolved config next to its outputs
        write_text_atomic(
            out / "config.json", json.dumps(report["config"], indent=2, default=str) + "\n"
        )
    render_report(report, out)
    return path


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report.json (or the directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_JSON
    if not path.exists():
        raise InputError(f"{path} does not exist; pass a directory written by `medcap eval ...`")
    return parse_report(path.read_bytes(), path)


def parse_report(data: bytes, path: Path) -> dict[str, Any]:
    """A report dict from the bytes of `path` (a report.json), checked like `load_report`."""
    try:
        report = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CorruptArtifactError(
            f"{path}: not valid JSON ({str(exc)[:200]}); rerun the evaluation"
        ) from None
    if not isinstance(report, dict) or report.get("kind") not in KINDS:
        raise CorruptArtifactError(f"{path}: not a medcap report (no known `kind`)")
    report[SOURCE_DIR_KEY] = str(path.parent.resolve())  # where its thumbnails live
    return report


def render_report(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Render report.md (and its PNGs) from a report dict into `out_dir`."""
    out = Path(out_dir)
    renderer = {
        "retrieval": render.render_retrieval,
        "captions": render.render_captions,
        "concepts": render.render_concepts,
    }
    lines = renderer[report["kind"]](report, out)
    lines += [
        "",
        f"_medcap {report.get('medcap_version', '?')}, {report.get('created_at', '')}; "
        f"every number above comes from [{REPORT_JSON}]({REPORT_JSON})._",
        "",
    ]
    path = out / REPORT_MD
    write_text_atomic(path, "\n".join(lines))
    return path


def compare_reports(
    dirs: Sequence[str | Path], out_dir: str | Path, *, bench: Sequence[str | Path] = ()
) -> Path:
    """Several runs side by side (plus benchmark JSON tables); returns out_dir/report.md."""
    if not dirs and not bench:
        raise InputError("nothing to compare; pass report directories and/or --bench JSON files")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reports = [(Path(d), load_report(d)) for d in dirs]
    names = _run_names([p for p, _ in reports])
    lines = ["# medcap evaluation comparison", ""]
    lines += ["| run | kind | source |", "| --- | --- | --- |"]
    lines += [f"| {n} | {r['kind']} | `{p}` |" for n, (p, r) in zip(names, reports, strict=True)]
    lines.append("")
    retrieval = [
        (n, r) for n, (_, r) in zip(names, reports, strict=True) if r["kind"] == "retrieval"
    ]
    if retrieval:
        entries = []
        for name, r in retrieval:
            for e in r["encoders"]:
                entries.append({**e, "label": f"{name}: {e['label']}"})
        ks = sorted({k for _, r in retrieval for k in r["config"]["retrieval"]["recall_ks"]})
        lines += [
            "## Retrieval",
            "",
            retrieval_table(entries, ks, label="run: encoder"),
            "",
        ]
        plots.plot_recall_curves(entries, out / "recall_at_k.png")
        lines += ["![Recall@K curves](recall_at_k.png)", ""]
        sizes = {r["gallery_size"] for _, r in retrieval}
        if len(sizes) > 1:
            lines += [
                f"Note: gallery sizes differ ({', '.join(map(str, sorted(sizes)))}); "
                "recall falls as the gallery grows.",
                "",
            ]
    captions = {n: r for n, (_, r) in zip(names, reports, strict=True) if r["kind"] == "captions"}
    if captions:
        metrics = list(dict.fromkeys(m for r in captions.values() for m in r["metrics"]))
        rows = [
            [n, r["n"], *[fmt(r["metrics"].get(m), 4) for m in metrics]]
            for n, r in captions.items()
        ]
        plots.plot_metric_bars(
            {n: r["metrics"] for n, r in captions.items()},
            out / "caption_metrics.png",
            title="caption metrics",
        )
        lines += [
            "## Captions",
            "",
            md_table(["run", "captions", *metrics], rows),
            "",
            "![Caption metrics](caption_metrics.png)",
            "",
        ]
    concepts = [(n, r) for n, (_, r) in zip(names, reports, strict=True) if r["kind"] == "concepts"]
    if concepts:
        rows = [
            [
                n,
                r["n"],
                r["config"]["k_used"],
                r["config"]["eval"]["concept_threshold"],
                fmt(r["f1"], 4),
            ]
            for n, r in concepts
        ]
        lines += [
            "## Concept detection",
            "",
            md_table(["run", "queries", "k", "threshold", "F1"], rows),
            "",
        ]
    lines += bench_sections(bench)
    summary = {
        "runs": [
            {"name": n, "dir": str(p), "kind": r["kind"]}
            for n, (p, r) in zip(names, reports, strict=True)
        ],
        "bench": [str(b) for b in bench],
    }
    write_text_atomic(out / "comparison.json", json.dumps(summary, indent=1) + "\n")
    path = out / REPORT_MD
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _run_names(paths: Sequence[Path]) -> list[str]:
    names = [p.name or str(p) for p in paths]
    if len(set(names)) < len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    return names
