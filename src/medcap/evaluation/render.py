"""Markdown (and PNG) rendering of one report of each kind; see `report.py` for the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcap.evaluation import plots
from medcap.evaluation.caption_metrics import duplicates_note
from medcap.evaluation.report_tables import fmt, md_table, pct, retrieval_table, skipped_section

SOURCE_DIR_KEY = "_source_dir"  # set by load_report, never stored: thumbnails stay findable


def _protocol(report: dict[str, Any]) -> str:
    cfg = report["config"]["retrieval"]
    ds = report["dataset"]
    gallery = (
        f"{ds['pairs_selected']} pairs sampled from the {ds['split_size']} "
        f"of split `{ds['split']}` "
        f"(seed {cfg['sample_seed']})"
        if ds["sampled"]
        else f"all {ds['split_size']} pairs of split `{ds['split']}`"
    )
    relevant = (
        "every case with an identical caption counts as relevant"
        if cfg["same_caption_relevant"]
        else "only the paired item (same `image_id`) is relevant"
    )
    return (
        f"**Gallery: {report['gallery_size']} pairs** ({gallery}); {relevant}. "
        + (
            "Ties: pessimistic (the pair is placed after every other item with an equal score). "
            if cfg["rank_ties"] == "pessimistic"
            else "Ties: optimistic (the pair is placed before every item with an equal score). "
        )
        + "R@K = % of queries whose pair is in the top K; median rank "
        "= floor(median of 0-based ranks) + 1; mean rank = mean + 1."
    )


def render_retrieval(report: dict[str, Any], out: Path) -> list[str]:
    ds, entries = report["dataset"], report["encoders"]
    ks = report["config"]["retrieval"]["recall_ks"]
    lines = [f"# Retrieval evaluation: {ds['name']} / {ds['split']}", "", _protocol(report), ""]
    lines += [retrieval_table(entries, ks), ""]
    plots.plot_recall_curves(entries, out / "recall_at_k.png", title=f"{ds['name']} {ds['split']}")
    plots.plot_rank_histograms(entries, out / "rank_histogram.png")
    lines += [
        "![Recall@K curves](recall_at_k.png)",
        "",
        "![Rank histograms](rank_histogram.png)",
        "",
    ]
    if entries[0].get("groups"):
        by = entries[0]["groups"]["by"]
        metric = f"R@{max(ks)}"
        lines += [f"## By {by}", ""]
        rows = []
        for e in entries:
            for value, g in sorted(e["groups"]["values"].items()):
                rows.append(
                    [
                        e["label"],
                        value,
                        g["n"],
                        *[pct(g[d][metric]) for d in plots.DIRECTION_TITLES],
                        *[fmt(g[d]["median_rank"], 0) for d in plots.DIRECTION_TITLES],
                    ]
                )
        header = [
            "encoder",
            by,
            "queries",
            f"i→t {metric}",
            f"t→i {metric}",
            "i→t median rank",
            "t→i median rank",
        ]
        plots.plot_groups(entries, metric, out / "groups.png")
        lines += [md_table(header, rows), "", f"![{metric} by {by}](groups.png)", ""]
    attrs = entries[0]["attributes"]["image_to_text"]
    if attrs:
        lines += ["## Does the top-1 neighbour share the case's attributes?", ""]
        rows = [
            [e["label"], plots.DIRECTION_TITLES[d], *[pct(e["attributes"][d][a]) for a in attrs]]
            for e in entries
            for d in plots.DIRECTION_TITLES
        ]
        rows.append(
            [
                "chance (random item)",
                "",
                *[pct(entries[0]["attributes"]["chance"][a]) for a in attrs],
            ]
        )
        plots.plot_attributes(entries, out / "attributes.png")
        lines += [
            md_table(["encoder", "direction", *attrs], rows),
            "",
            "![Attribute matches](attributes.png)",
            "",
        ]
    if report.get("examples"):
        lines += ["## Example queries", ""]
        base = Path(report.get(SOURCE_DIR_KEY) or out)  # thumbnails sit next to report.json
        for i, e in enumerate(entries, start=1):
            name = f"examples_{i}.png"
            plots.plot_examples(
                report["examples"], e["label"], report.get("thumbnails", {}), base, out / name
            )
            lines += [f"![Examples: {e['label']}]({name})", ""]
    lines += ["## Encoders", ""]
    rows = [
        [
            e["label"],
            f"`{e['spec']}`",
            f"`{e['fingerprint'][:16]}`",
            e["embed_dim"],
            fmt(e["timings"]["encode_s"], 1),
            fmt(e["timings"]["score_s"], 2),
            len(e["skipped"]),
        ]
        for e in entries
    ]
    lines += [
        md_table(
            ["label", "spec", "fingerprint", "dim", "encode s", "score s", "skipped images"], rows
        ),
        "",
    ]
    lines += [
        "## Dataset",
        "",
        f"- source: `{ds['source']}`",
        f"- fingerprint: `{ds['fingerprint']}`",
        f"- split `{ds['split']}`: {ds['split_size']} usable pairs, "
        f"{ds['pairs_selected']} evaluated",
        "",
    ]
    skipped = report.get("skipped", []) + [s for e in entries for s in e["skipped"]]
    lines += skipped_section(skipped)
    lines += [f"Total time {fmt(report['timings']['total_s'], 1)} s."]
    return lines


def render_captions(report: dict[str, Any], out: Path) -> list[str]:
    name = Path(report["results_file"]).name
    mode = (
        "ImageCLEFmedical preprocessing"
        if report["config"]["imageclef_preprocess"]
        else "COCO tokenisation"
    )
    lines = [f"# Caption evaluation: {name}", "", f"{report['n']} captions scored ({mode}).", ""]
    if note := duplicates_note(report):
        lines += [note[0].upper() + note[1:] + ".", ""]
    rows = [[metric, fmt(value, 4)] for metric, value in report["metrics"].items()]
    rows += [[metric, f"unavailable: {reason}"] for metric, reason in report["unavailable"].items()]
    lines += [md_table(["metric", "value"], rows), ""]
    if report["metrics"]:
        plots.plot_metric_bars(
            {name: report["metrics"]}, out / "caption_metrics.png", title="caption metrics"
        )
        lines += ["![Caption metrics](caption_metrics.png)", ""]
    if report.get("clipscore"):
        c = report["clipscore"]
        lines += [
            f"CLIPScore/RefCLIPScore (w = {report['config']['eval']['clipscore_weight']}) "
            f"with encoder `{c['encoder']}` (fingerprint `{str(c.get('fingerprint', ''))[:16]}`) "
            f"over {c['items']} images.",
            "",
        ]
    lines += [f"Results file: `{report['results_file']}`", ""]
    lines += skipped_section(report.get("skipped", []))
    return lines


def render_concepts(report: dict[str, Any], out: Path) -> list[str]:
    cfg, idx = report["config"]["eval"], report["index"]
    lines = [
        f"# Concept detection by retrieval: {report['dataset']['name']} / "
        f"{report['dataset']['split']}",
        "",
        f"**Sample-averaged F1 {report['f1']:.4f}** over {report['n']} queries "
        f"({report['queries_with_gold']} with gold concepts). Each query's concepts are voted "
        f"by its {report['config']['k_used']} nearest cases (`{cfg['concept_mode']}` search, "
        "itself excluded), "
        f"weighted by cosine similarity; a concept needs {cfg['concept_threshold']:g} of the vote. "
        "A query with no gold and no predicted concept scores 1.",
        "",
        md_table(
            ["queries", "mean gold concepts", "mean predicted", "F1"],
            [
                [
                    report["n"],
                    fmt(report["mean_gold"], 2),
                    fmt(report["mean_predicted"], 2),
                    fmt(report["f1"], 4),
                ]
            ],
        ),
        "",
    ]
    sweep = report["threshold_sweep"]
    plots.plot_threshold_sweep(
        sweep["thresholds"], sweep["f1"], cfg["concept_threshold"], out / "f1_vs_threshold.png"
    )
    lines += ["![F1 against the vote threshold](f1_vs_threshold.png)", ""]
    lines += [
        "## Index",
        "",
        f"- path: `{idx['path']}` ({idx['count']} cases)",
        f"- encoder: `{idx['encoder']}` (fingerprint `{idx['encoder_fingerprint'][:16]}`)",
        *[
            f"- indexed: split `{src['split']}` of `{src['dataset']}` "
            f"(fingerprint `{src['fingerprint'][:16]}`)"
            for src in idx.get("sources", [])
        ],
        f"- dataset: `{report['dataset']['source']}` "
        f"(fingerprint `{report['dataset']['fingerprint']}`)",
        "",
    ]
    lines += skipped_section(report.get("skipped", []))
    lines += [f"Total time {fmt(report['timings']['total_s'], 1)} s."]
    return lines
