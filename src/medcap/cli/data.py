"""`medcap data ...`: generate phantoms, summarise a dataset."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from medcap.cli.dicom_options import (
    AllowBurnedInOption,
    CaptionsOption,
    DicomUnitOption,
    DicomwebTokenOption,
    PseudonymKeyOption,
    dicom_options,
)
from medcap.cli.options import AllowOutsidePathsOption, EncodingOption, data_config
from medcap.config import DEFAULTS, current, replace_set

app = typer.Typer(help="Datasets: generate phantoms, summarise a dataset.", no_args_is_help=True)

_D = DEFAULTS.data


@app.command("phantoms")
def phantoms(
    out: Annotated[Path, typer.Argument(help="Output folder (layout a: data/{split}-*.parquet).")],
    n: Annotated[
        int | None, typer.Option("--n", help=f"Number of cases. [default: {_D.phantom_count}]")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help=f"Random seed. [default: {_D.phantom_seed}]")
    ] = None,
    image_size: Annotated[
        int | None, typer.Option(help=f"Pixels per side. [default: {_D.phantom_image_size}]")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace the data/ folder of a non-empty output folder.")
    ] = False,
) -> None:
    """Generate synthetic radiology cases (deterministic by seed) as Hub-style parquet."""
    from medcap.data.phantoms import build_phantoms, split_counts

    cfg = replace_set(
        current().data, phantom_count=n, phantom_seed=seed, phantom_image_size=image_size
    )
    start = time.perf_counter()
    build_phantoms(
        out,
        cfg.phantom_count,
        cfg.phantom_seed,
        cfg.phantom_image_size,
        cfg=cfg,
        overwrite=overwrite,
    )
    elapsed = time.perf_counter() - start
    counts = split_counts(cfg.phantom_count, cfg.phantom_split_fractions)
    parts = ", ".join(f"{split} {count}" for split, count in counts.items())
    typer.echo(
        f"wrote {cfg.phantom_count} phantoms ({parts}; seed {cfg.phantom_seed}, "
        f"{cfg.phantom_image_size} px) to {out} in {elapsed:.1f} s"
    )


@app.command("info")
def info(
    source: Annotated[
        str, typer.Argument(help="Dataset folder, CSV/JSONL/parquet file, or Hub name.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    max_images: Annotated[
        int | None,
        typer.Option(help=f"Images decoded per split (None: all). [default: {_D.info_max_images}]"),
    ] = None,
    id_column: Annotated[str | None, typer.Option(help=f"[default: {_D.id_column}]")] = None,
    caption_column: Annotated[
        str | None, typer.Option(help=f"[default: {_D.caption_column}]")
    ] = None,
    image_column: Annotated[str | None, typer.Option(help=f"[default: {_D.image_column}]")] = None,
    cui_column: Annotated[str | None, typer.Option(help=f"[default: {_D.cui_column}]")] = None,
    split_column: Annotated[str | None, typer.Option(help=f"[default: {_D.split_column}]")] = None,
    allow_outside_paths: AllowOutsidePathsOption = False,
    encoding: EncodingOption = None,
    pseudonym_key: PseudonymKeyOption = None,
    captions: CaptionsOption = None,
    dicom_unit: DicomUnitOption = None,
    allow_burned_in: AllowBurnedInOption = False,
    dicomweb_token: DicomwebTokenOption = None,
) -> None:
    """Summarise a dataset: cases, caption length, image sizes/modes, CUIs, skipped items."""
    from medcap.data.info import summarise_dataset
    from medcap.data.readers import open_dataset

    cfg = replace_set(
        data_config(allow_outside_paths=allow_outside_paths, encoding=encoding),
        info_max_images=max_images,
    )
    dataset = open_dataset(
        source,
        id_column=id_column,
        caption_column=caption_column,
        image_column=image_column,
        cui_column=cui_column,
        split_column=split_column,
        cfg=cfg,
        dicom=dicom_options(
            pseudonym_key=pseudonym_key, captions=captions, unit=dicom_unit,
            allow_burned_in=allow_burned_in, token=dicomweb_token,
        ),
    )  # fmt: skip
    summary = summarise_dataset(dataset, max_images=cfg.info_max_images)
    uncaptioned = getattr(dataset, "uncaptioned", 0)
    if uncaptioned:
        summary["uncaptioned"] = uncaptioned
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_summary(summary)
    if uncaptioned:
        typer.echo(
            f"{uncaptioned} cases have no caption: indexed for image-to-image search only "
            "(pass --captions FILE)"
        )


def _print_summary(summary: dict[str, Any]) -> None:
    typer.echo(f"dataset {summary['name']}  (fingerprint {summary['fingerprint'][:12]})")
    header = f"{'split':<8}{'cases':>8}{'words mean/med/p90':>22}{'CUI cover':>11}  "
    header += f"{'image size':<12}modes"
    typer.echo(header)
    for split, s in summary["splits"].items():
        w = s["caption_words"]
        words = f"{w['mean']:.1f}/{w['median']:.0f}/{w['p90']:.0f}"
        modes = ", ".join(f"{m} {c}" for m, c in s["modes"].items())
        size = s["image_size"]["most_common"] or "-"
        bad = f"  ({s['unreadable_images']} unreadable)" if s["unreadable_images"] else ""
        typer.echo(
            f"{split:<8}{s['count']:>8}{words:>22}{s['cui_coverage']:>11.1%}  "
            f"{size:<12}{modes}{bad}"
        )
    typer.echo(f"total   {summary['total']:>8}")
    skipped = summary["skipped"]
    if skipped:
        counts = ", ".join(f"{reason}: {n}" for reason, n in summary["skipped_counts"].items())
        typer.echo(f"skipped {len(skipped)} items ({counts})")
        for item in skipped[:10]:
            where = f"{item['source']}" + (f" row {item['row']}" if item["row"] is not None else "")
            typer.echo(f"  {item['split']}: {where}: {item['image_id']}: {item['reason']}")
        if len(skipped) > 10:
            typer.echo(f"  ... {len(skipped) - 10} more (use --json for the full list)")
