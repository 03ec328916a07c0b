"""`medcap rank`: order candidate captions for one image by cosine similarity.

Imports stay inside `command` (torch and open_clip load only when ranking) so that
`medcap --help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medcap.cli.options import EncoderDeviceOption, ModelOption

if TYPE_CHECKING:
    from medcap.retrieval.rank import RankedCaption


def _as_dict(ranked: RankedCaption) -> dict[str, Any]:
    return {
        "rank": ranked.rank,
        "score": round(ranked.score, 6),
        "probability": None if ranked.probability is None else round(ranked.probability, 6),
        "position": ranked.position,
        "caption": ranked.caption,
    }


def _table(image: Path, model: str, ranked: Sequence[RankedCaption]) -> str:
    with_probability = ranked[0].probability is not None
    header = ["rank", "score", *(["probability"] if with_probability else []), "caption"]
    rows = [
        [
            str(r.rank),
            f"{r.score:.4f}",
            *([f"{r.probability:.4f}"] if r.probability is not None else []),
            " ".join(r.caption.split()),
        ]
        for r in ranked
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = [f"image: {image}  (model {model}, {len(ranked)} candidate captions)"]
    for row in [header, *rows]:
        cells = [cell.rjust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  " + "  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def command(
    image: Annotated[
        Path, typer.Argument(help="Image file (PNG, JPEG, DICOM, ...).", show_default=False)
    ],
    caption: Annotated[
        list[str] | None, typer.Option("--caption", help="A candidate caption (repeatable).")
    ] = None,
    captions_file: Annotated[
        Path | None,
        typer.Option(help="UTF-8 text file with one candidate caption per line (after --caption)."),
    ] = None,
    model: ModelOption = None,
    device: EncoderDeviceOption = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON: the captions with scores, best first.")
    ] = False,
) -> None:
    """Rank candidate captions for one image, best first (cosine similarity, as CLIP does)."""
    from medcap.config import current
    from medcap.errors import InputError
    from medcap.retrieval.rank import load_captions, rank_captions

    if not caption and captions_file is None:
        raise InputError('nothing to rank: give --caption "..." (repeatable) or --captions-file')
    candidates = list(caption or [])
    if captions_file is not None:
        candidates += load_captions(captions_file)
    active = current().encoder
    spec = model or active.model
    ranked = rank_captions(image, candidates, model=spec, device=device, cfg=active)
    if json_out:
        out = {"image": str(image), "model": spec, "captions": [_as_dict(r) for r in ranked]}
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        typer.echo(_table(image, spec, ranked))
