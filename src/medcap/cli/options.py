"""Option types shared by the commands: one declaration, one help text, one default each.

Options default to None, meaning "the active config" (`medcap.config.current()`, which
`--config`/`--set` change); help texts show the project default from `DEFAULTS`. Closed
choices are typed with the config's own `Literal`s and checked while the command line is
parsed, so a bad value stops the command before anything loads, as one `error:` line.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from medcap.config import (
    DEFAULTS,
    DataConfig,
    Engine,
    IndexType,
    Precision,
    SearchMode,
    current,
    replace_set,
)
from medcap.errors import InputError

G = DEFAULTS.generation


UNKNOWN = "unknown {flag} {value!r}; valid: {valid}"
NOT_ONE_OF = "{flag} {value!r} is not one of: {valid}"  # the eval commands' older wording


def choice_parser(kind: Any, flag: str, message: str = UNKNOWN) -> Callable[[str], str]:
    """A Typer `parser` accepting only the values of the Literal `kind` (InputError otherwise)."""
    valid = typing.get_args(kind)

    def parse(value: str) -> str:
        if value not in valid:
            raise InputError(message.format(flag=flag, value=value, valid=", ".join(valid)))
        return value

    return parse


def choice_option(kind: Any, flag: str, help: str, message: str = UNKNOWN) -> Any:
    """A `typer.Option` for flag `flag` restricted to the Literal `kind`, choices shown."""
    return typer.Option(
        flag,
        parser=choice_parser(kind, flag, message),
        metavar="|".join(typing.get_args(kind)),
        help=help,
    )


def verify_setting(verify: bool | None) -> bool:
    """`--verify/--no-verify` when given, else the active config's `index.verify`."""
    return current().index.verify if verify is None else verify


def _parse_backend(value: str) -> str:
    from medcap.generation.backends.base import backend_class

    backend_class(value)  # an unknown name is one line listing the registered ones
    return value


# ---- data and encoders -----------------------------------------------------------------
DataOption = Annotated[str, typer.Option("--data", help="Dataset: folder, CSV/JSONL, or hub name.")]
ModelOption = Annotated[
    str | None,
    typer.Option(
        help="Encoder: NAME[:tag or weights file], hf-hub:ORG/REPO, an open_clip snapshot "
        f"folder, or a checkpoint. (default: {DEFAULTS.encoder.model})"
    ),
]
EncoderDeviceOption = Annotated[
    str | None,
    typer.Option(
        help=f"Encoder device: auto | cpu | cuda[:N]. (default: {DEFAULTS.encoder.device})"
    ),
]
PrecisionOption = Annotated[
    Precision | None,
    choice_option(
        Precision,
        "--precision",
        f"auto (bf16 on GPU) | fp32 | bf16 | fp16. (default: {DEFAULTS.train.precision})",
    ),
]

# ---- index directories -----------------------------------------------------------------
IndexTypeOption = Annotated[
    IndexType | None,
    choice_option(
        IndexType,
        "--index-type",
        f"auto | flat | hnsw | ivfpq. (default: {DEFAULTS.index.index_type})",
    ),
]
MemoryBudgetOption = Annotated[
    float | None,
    typer.Option(
        "--memory-budget-gb",
        "--memory-budget",
        help="RAM for both indexes in GB (guides auto). "
        f"(default: {DEFAULTS.index.memory_budget_gb})",
    ),
]
OverwriteOption = Annotated[bool, typer.Option(help="Replace an existing index directory.")]
VerifyOption = Annotated[
    bool | None,
    typer.Option(
        "--verify/--no-verify",
        help="Check every index file's checksum on open; --no-verify skips it for huge "
        "indexes (searches still refuse impossible scores). "
        f"(default: {'verify' if DEFAULTS.index.verify else 'no-verify'})",
    ),
]
SearchModeOption = Annotated[
    SearchMode | None,
    choice_option(
        SearchMode,
        "--mode",
        "captions (nearest captions) or images (most similar cases). "
        f"(default: {DEFAULTS.retrieval.mode} for images, {DEFAULTS.retrieval.text_mode} "
        "for text)",
    ),
]

# ---- caption generation ----------------------------------------------------------------
BackendOption = Annotated[
    str | None,
    typer.Option(
        parser=_parse_backend,
        metavar="NAME",
        help=f"Caption backend, by its registered name. (default: {G.backend})",
    ),
]
NeighboursOption = Annotated[
    int | None, typer.Option("--k", help=f"Neighbours in each prompt. (default: {G.k})")
]
TemplateOption = Annotated[
    str | None,
    typer.Option(help="Prompt template name or .txt path. (default: the backend's own)"),
]
GenerationDeviceOption = Annotated[
    str | None, typer.Option("--device", help=f"auto | cpu | cuda[:N]. (default: {G.device})")
]
DtypeOption = Annotated[
    Precision | None,
    choice_option(Precision, "--dtype", f"auto | fp32 | bf16 | fp16. (default: {G.dtype})"),
]
AdapterOption = Annotated[Path | None, typer.Option(help="LoRA adapter directory to apply.")]

# ---- how datasets given with --data are read (DataConfig) ---------------------------------
_D = DEFAULTS.data

AllowOutsidePathsOption = Annotated[
    bool,
    typer.Option(
        "--allow-outside-paths",
        help="Read image paths of a CSV/JSONL/parquet table that lead outside its dataset "
        "folder (absolute paths, ../, symlinks out). "
        f"(default: {'allowed' if _D.allow_outside_paths else 'refused and skipped'})",
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

# ---- Ray engine (medcap[dist]) ----------------------------------------------------------
D = DEFAULTS.dist
EngineOption = Annotated[
    Engine | None,
    choice_option(
        Engine,
        "--engine",
        f"local: this process; ray: a Ray cluster (medcap[dist]). (default: {D.engine})",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster host:port (`ray start --head`); without it --engine ray starts a "
        "local Ray for the run and stops it after.",
    ),
]
ActorsOption = Annotated[
    int | None,
    typer.Option(
        "--actors",
        help="Ray actors (models loaded once each). (default: one per GPU, else half the CPUs)",
    ),
]


def data_config(
    *,
    allow_outside_paths: bool = False,
    encoding: str | None = None,
    keep_columns: str | None = None,
) -> DataConfig:
    """The active config's DataConfig with the shared dataset options applied (unset ones
    keep their values)."""
    keep = (
        None
        if keep_columns is None
        else tuple(c.strip() for c in keep_columns.split(",") if c.strip())
    )
    return replace_set(
        current().data,
        allow_outside_paths=allow_outside_paths or None,
        encoding=encoding,
        keep_columns=keep,
    )


def dist_setting(engine: str | None, address: str | None, actors: int | None) -> Any:
    """The active config's `dist` section with the Ray flags that were given."""
    return replace_set(current().dist, engine=engine, address=address, actors=actors)
