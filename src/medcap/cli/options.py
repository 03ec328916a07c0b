"""Option types shared by several commands (one help text, one default each)."""

from __future__ import annotations

from typing import Annotated

import typer

from medcap.config import DEFAULTS

G = DEFAULTS.generation

NeighboursOption = Annotated[
    int | None, typer.Option("--k", help=f"Neighbours in each prompt. (default: {G.k})")
]
TemplateOption = Annotated[
    str | None, typer.Option(help="Prompt template name or .txt path. (default: the backend's own)")
]
GenerationDeviceOption = Annotated[
    str | None, typer.Option("--device", help=f"auto | cpu | cuda[:N]. (default: {G.device})")
]
DtypeOption = Annotated[
    str | None, typer.Option(help=f"auto | fp32 | bf16 | fp16. (default: {G.dtype})")
]
