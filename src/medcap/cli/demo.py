"""`medcap demo`: the whole pipeline on built-in phantoms, ending in a report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from medcap.config import DEFAULTS, current, replace_set

_DEMO = DEFAULTS.demo


def command(
    out: Annotated[Path, typer.Option(help="Directory for every demo artifact.")] = Path(
        "demo-out"
    ),
    n: Annotated[
        int | None, typer.Option("--n", help=f"Phantom cases to generate. (default: {_DEMO.n})")
    ] = None,
    seed: Annotated[int | None, typer.Option(help=f"Seed. (default: {_DEMO.seed})")] = None,
    epochs: Annotated[
        int | None, typer.Option(help=f"Training epochs. (default: {_DEMO.epochs})")
    ] = None,
) -> None:
    """Generate phantoms, train a tiny CLIP, index, search, evaluate, caption, report."""
    from medcap.runs.demo import run_demo

    cfg = replace_set(current().demo, n=n, seed=seed, epochs=epochs)
    result = run_demo(out, cfg, root=current(), say=typer.echo, progress=sys.stderr.isatty())
    typer.echo("")
    typer.echo("Retrieval on the test split (image -> text):")
    for label, m in result.metrics["retrieval"].items():
        typer.echo(
            f"  {label:<28} R@1 {m['R@1']:.3f}  R@10 {m['R@10']:.3f}  "
            f"median rank {m['median_rank']:g}  (gallery {m['gallery']})"
        )
        if m["top1_match"]:
            match = ", ".join(f"{k} {v:.2f}" for k, v in m["top1_match"].items())
            typer.echo(f"  {'':<28} top-1 neighbour matches: {match}")
    typer.echo("Captions on the test split:")
    for name, scores in result.metrics["captions"].items():
        text = "  ".join(f"{k} {v:.3f}" for k, v in scores.items() if v is not None)
        typer.echo(f"  {name:<28} {text}")
    typer.echo("")
    typer.echo("Three example searches (test image -> nearest training captions):")
    for example in result.examples:
        typer.echo(f"  {example['image_id']}: {example['caption']}")
        for score, caption in example["neighbours"]:
            typer.echo(f"      {score:.3f}  {caption}")
    typer.echo("")
    typer.echo(f"Report: {result.report}")
    typer.echo(f"Timings (s): {result.timings_s}")
    typer.echo("Next:")
    typer.echo(f"  medcap app --index {result.index_dir} --reports {result.index_dir.parent}")
    typer.echo(f"  medcap search {result.query_dir} --index {result.index_dir}")
    typer.echo(
        "  on ROCOv2 (needs internet): medcap train --data eltorio/ROCOv2-radiology "
        "--model hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 "
        "--out runs/biomedclip (then index build / eval retrieval / caption as in the README)"
    )
