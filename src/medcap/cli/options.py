"""Option types shared by several commands (one help text, one default each)."""

from __future__ import annotations

from typing import Annotated

import typer

from medcap.config import DEFAULTS, DataConfig, replace_set

G = DEFAULTS.generation

NeighboursOption = Annotated[
    int | None, typer.Option("--k", help=f"Neighbours in each prompt. (default: {G.k})")
]
TemplateOption = Annotated[
    str | None, typer.Option(help=f"Prompt template name or .txt path. (default: {G.template})")
]
GenerationDeviceOption = Annotated[
    str | None, typer.Option("--device", help=f"auto | cpu | cuda[:N]. (default: {G.device})")
]
DtypeOption = Annotated[
    str | None, typer.Option(help=f"auto | fp32 | bf16 | fp16. (default: {G.dtype})")
]

# ---- how datasets given with --data are read (DataConfig) ---------------------------------
_D = DEFAULTS.data

AllowOutsidePathsOption = Annotated[
    bool,
    typer.Option(
        "--allow-outside-paths",
        help="Read image paths of a CSV/JSONL/parquet table that lead outside its dataset "
        "folder (absolute paths, ../, symlinks out). (default: refused and skipped)",
    ),
]
EncodingOption = Annotated[
    str | None,
    typer.Option(help=f"Text encoding of CSV/TSV/JSONL tables. (default: {_D.encoding})"),
]
KeepColumnsOption = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated metadata columns to keep from the dataset (others, such as "
        f"PatientName, are dropped). (default: {','.join(_D.keep_columns)})"
    ),
]


def data_config(
    *,
    allow_outside_paths: bool = False,
    encoding: str | None = None,
    keep_columns: str | None = None,
) -> DataConfig:
    """The DataConfig for the shared dataset options (unset ones keep their defaults)."""
    keep = (
        None
        if keep_columns is None
        else tuple(c.strip() for c in keep_columns.split(",") if c.strip())
    )
    return replace_set(
        _D, allow_outside_paths=allow_outside_paths or None, encoding=encoding, keep_columns=keep
    )
