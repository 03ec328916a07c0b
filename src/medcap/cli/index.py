"""`medcap index build|info|add|merge`: the index directory (thin wrappers over medcap.index)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from medcap.cli.dicom_options import (
    AllowBurnedInOption,
    CaptionsOption,
    DicomUnitOption,
    DicomwebTokenOption,
    KeepTagOption,
    PseudonymKeyOption,
    QidoWhereOption,
    StudyOption,
    dicom_options,
)
from medcap.cli.options import (
    ActorsOption,
    AllowOutsidePathsOption,
    DataOption,
    EncoderDeviceOption,
    EncodingOption,
    EngineOption,
    IndexTypeOption,
    KeepColumnsOption,
    MemoryBudgetOption,
    ModelOption,
    OverwriteOption,
    RayAddressOption,
    VerifyOption,
    data_config,
    dist_setting,
    verify_setting,
)
from medcap.config import DEFAULTS, DataConfig, current, replace_set

app = typer.Typer(
    help="Index directories: build one from a dataset split, show it, add cases, merge parts.",
    no_args_is_help=True,
)
_IDX = DEFAULTS.index


def _thumbnailer(size: int) -> Any:
    from medcap.retrieval.thumbnails import thumbnailer

    return thumbnailer(size)


def _open_split(data: str, split: str, cfg: DataConfig, dicom: Any = None) -> Any:
    from medcap.data.readers import open_dataset
    from medcap.errors import InputError

    dataset = open_dataset(data, cfg=cfg, dicom=dicom)
    splits = dataset.splits()
    if split not in splits:
        raise InputError(f"{data} has no split {split!r}; available: {', '.join(splits) or 'none'}")
    return dataset


@app.command("build")
def build(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Index directory to write.")],
    model: ModelOption = None,
    split: Annotated[
        str | None, typer.Option(help=f"Split to index. (default: {_IDX.split})")
    ] = None,
    index_type: IndexTypeOption = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Encoder batch size. (default: {_IDX.batch_size})")
    ] = None,
    shard_size: Annotated[
        int | None,
        typer.Option(
            help=f"Cases per embedding shard (unit of resume). (default: {_IDX.shard_size})"
        ),
    ] = None,
    memory_budget_gb: MemoryBudgetOption = None,
    thumbnail_size: Annotated[
        int | None,
        typer.Option(
            help=f"Stored thumbnail size in px, 0 for none. (default: {_IDX.thumbnail_size})"
        ),
    ] = None,
    device: EncoderDeviceOption = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted build.")] = False,
    overwrite: OverwriteOption = False,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="i/n: index only part i of n (one per machine), then `medcap index merge`.",
        ),
    ] = None,
    allow_outside_paths: AllowOutsidePathsOption = False,
    encoding: EncodingOption = None,
    keep_columns: KeepColumnsOption = None,
    engine: EngineOption = None,
    ray_address: RayAddressOption = None,
    actors: ActorsOption = None,
    pseudonym_key: PseudonymKeyOption = None,
    captions: CaptionsOption = None,
    dicom_unit: DicomUnitOption = None,
    keep_tag: KeepTagOption = None,
    allow_burned_in: AllowBurnedInOption = False,
    dicomweb_token: DicomwebTokenOption = None,
    study: StudyOption = None,
    where: QidoWhereOption = None,
) -> None:
    """Embed a dataset split's images and captions and write an index directory."""
    from medcap.api import build_index
    from medcap.encoder import load_encoder
    from medcap.encoder.image_tower import save_image_tower
    from medcap.index.manifest import parse_part

    cfg = replace_set(
        current().index,
        split=split,
        index_type=index_type,
        batch_size=batch_size,
        shard_size=shard_size,
        memory_budget_gb=memory_budget_gb,
        thumbnail_size=thumbnail_size,
    )
    dist = dist_setting(engine, ray_address, actors)
    if shard:
        parse_part(shard)  # a bad --shard fails before the encoder loads
    start = time.perf_counter()
    reading = data_config(
        allow_outside_paths=allow_outside_paths, encoding=encoding, keep_columns=keep_columns
    )
    dicom = dicom_options(
        pseudonym_key=pseudonym_key,
        captions=captions,
        unit=dicom_unit,
        keep_tags=keep_tag,
        allow_burned_in=allow_burned_in,
        token=dicomweb_token,
        studies=study,
        where=where,
    )
    dataset = _open_split(data, cfg.split, reading, dicom)
    if dist.engine == "ray":
        device = "cpu"  # the driver's copy only fingerprints and describes; actors embed
    encoder = load_encoder(model or current().encoder.model, device=device, cfg=current().encoder)
    index = build_index(
        dataset, out, model=encoder, resume=resume, overwrite=overwrite,
        progress=sys.stderr.isatty(), part=shard or "", cfg=cfg, dist=dist,
    ).index  # fmt: skip
    save_image_tower(encoder)  # so the first `medcap search` needs no open_clip import
    m = index.manifest
    part = f" (part {m.part}; join the parts with `medcap index merge`)" if m.part else ""
    on = " on Ray" if m.engine == "ray" else ""
    typer.echo(
        f"indexed {m.count} cases of {dataset.name} [{cfg.split}] into {out}{part}{on} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    typer.echo(f"index: {m.index.type} ({m.index.factory}): {m.index.reason}")
    if m.skipped_count:
        typer.echo(f"skipped {m.skipped_count} cases (listed in {out / 'skipped.jsonl'})")
    _note_dropped(dataset)


def _note_dropped(dataset: Any) -> None:
    """Say which metadata columns were left out of the index (names only, never values)."""
    if getattr(dataset, "uncaptioned", 0):
        typer.echo(
            f"{dataset.uncaptioned} cases have no caption (image-to-image search only; "
            "pass --captions FILE)"
        )
    if dataset.dropped_columns:
        typer.echo(
            f"not stored: columns {', '.join(sorted(dataset.dropped_columns))} "
            "(not in --keep-columns)"
        )


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@app.command("info")
def info(
    index_dir: Annotated[Path, typer.Argument(help="Index directory.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
    verify: VerifyOption = None,
) -> None:
    """Show what an index directory holds (from its manifest)."""
    from medcap.index import faiss_ops, open_index
    from medcap.index.search_plan import describe_search

    index = open_index(index_dir, verify=verify_setting(verify))
    m = index.manifest
    if json_out:
        typer.echo(json.dumps(m.to_dict(), indent=2))
        return
    rows = [
        ("index", str(index_dir)),
        ("cases", f"{m.count} (dim {m.dim}, {m.metric} over unit vectors = cosine)"),
        ("type", f"{m.index.type} ({m.index.factory}) {json.dumps(m.index.params)}"),
        ("why", m.index.reason),
        ("search", describe_search(m.index.type, m.index.factory, faiss_gpus=faiss_ops.num_gpus())),
        ("encoder", f"{m.encoder.spec} (fingerprint {m.encoder.fingerprint[:16]})"),
    ]
    if m.part:
        rows.append(("part", f"{m.part} of a sharded build (join with `medcap index merge`)"))
    for s in m.sources:
        fp = f", fingerprint {s.fingerprint[:16]}" if s.fingerprint else ""
        rows.append(("source", f"{s.dataset or '?'} [{s.split}] {s.count} cases{fp}, {s.added_at}"))
    rows += [
        ("skipped", str(m.skipped_count)),
        ("shards", f"{len(m.shards)} float16 embedding shards"),
        ("thumbnails", "yes" if m.has_thumbnails else "no"),
        ("size", f"{_dir_size(Path(index_dir)) / 1e6:.1f} MB"),
        ("created", f"{m.created_at} (medcap {m.medcap_version}, format {m.format_version})"),
    ]
    for key, value in rows:
        typer.echo(f"{key:<11} {value}")


@app.command("add")
def add(
    index_dir: Annotated[Path, typer.Argument(help="Index directory to extend.")],
    data: DataOption,
    split: Annotated[
        str | None, typer.Option(help=f"Split to add. (default: {_IDX.split})")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Encoder spec or checkpoint. (default: the index's own encoder)"),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Encoder batch size. (default: {_IDX.batch_size})")
    ] = None,
    device: EncoderDeviceOption = None,
    verify: VerifyOption = None,
    allow_outside_paths: AllowOutsidePathsOption = False,
    encoding: EncodingOption = None,
    keep_columns: KeepColumnsOption = None,
    pseudonym_key: PseudonymKeyOption = None,
    captions: CaptionsOption = None,
    dicom_unit: DicomUnitOption = None,
    keep_tag: KeepTagOption = None,
    allow_burned_in: AllowBurnedInOption = False,
    dicomweb_token: DicomwebTokenOption = None,
    study: StudyOption = None,
    where: QidoWhereOption = None,
) -> None:
    """Append a dataset split's cases to an index built with the same encoder."""
    from medcap.api import split_size
    from medcap.index import add_to_index, open_index
    from medcap.retrieval.retriever import load_index_encoder

    cfg = replace_set(current().index, split=split, batch_size=batch_size)
    reading = data_config(
        allow_outside_paths=allow_outside_paths, encoding=encoding, keep_columns=keep_columns
    )
    verified = verify_setting(verify)
    existing = open_index(index_dir, verify=verified)
    dicom = dicom_options(
        pseudonym_key=pseudonym_key,
        captions=captions,
        unit=dicom_unit,
        keep_tags=keep_tag,
        allow_burned_in=allow_burned_in,
        token=dicomweb_token,
        studies=study,
        where=where,
    )
    dataset = _open_split(data, cfg.split, reading, dicom)
    _check_key(existing, dataset)
    encoder = load_index_encoder(existing, model, device=device, cfg=current().encoder)
    index, added = add_to_index(
        index_dir,
        dataset.records(cfg.split),
        encoder,
        cfg,
        dataset_fingerprint=dataset.fingerprint(),
        dataset_name=dataset.name,
        split=cfg.split,
        progress=sys.stderr.isatty(),
        total=split_size(dataset, cfg.split),
        make_thumbnail=_thumbnailer(cfg.thumbnail_size),
        source_skipped=dataset.skipped,
        verify=verified,
        kept_columns=dataset.config.keep_columns,
        pseudonym_check=getattr(dataset, "pseudonym_check", ""),
    )
    typer.echo(
        f"added {added} cases of {dataset.name} [{cfg.split}]; {index_dir} now holds {len(index)}"
    )
    _note_dropped(dataset)


def _check_key(index: Any, dataset: Any) -> None:
    """Refuse a pseudonym key other than the one the index's DICOM cases were built with."""
    key = getattr(dataset, "key", None)
    if key is None:
        return
    for source in index.manifest.sources:
        key.check(source.pseudonym_check, str(index.path))


@app.command("merge")
def merge(
    parts: Annotated[list[Path], typer.Argument(help="Every part of a --shard i/n build.")],
    out: Annotated[Path, typer.Option("--out", help="Merged index directory to write.")],
    index_type: IndexTypeOption = None,
    memory_budget_gb: MemoryBudgetOption = None,
    overwrite: OverwriteOption = False,
    verify: VerifyOption = None,
) -> None:
    """Join the parts of a `--shard i/n` build into one index (as one build would write)."""
    from medcap.index import merge_parts

    cfg = replace_set(current().index, index_type=index_type, memory_budget_gb=memory_budget_gb)
    start = time.perf_counter()
    index = merge_parts(parts, out, cfg, overwrite=overwrite, verify=verify_setting(verify))
    m = index.manifest
    typer.echo(
        f"merged {len(parts)} parts into {out}: {m.count} cases in "
        f"{time.perf_counter() - start:.1f} s"
    )
    typer.echo(f"index: {m.index.type} ({m.index.factory}): {m.index.reason}")


def _read_ids(ids: list[str] | None, ids_file: Path | None) -> list[str]:
    from medcap.errors import InputError

    out = list(ids or [])
    if ids_file is not None:
        if not ids_file.is_file():
            raise InputError(f"--ids-file {ids_file} does not exist; pass a file, one id a line")
        out += [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
    if not out:
        raise InputError("no case ids to remove; pass --ids ID ... or --ids-file FILE")
    return out


@app.command("remove")
def remove(
    index_dir: Annotated[Path, typer.Argument(help="Index directory to withdraw cases from.")],
    case_ids: Annotated[
        list[str] | None, typer.Argument(help="Case ids (image_id) to remove, after --ids.")
    ] = None,
    ids: Annotated[
        bool, typer.Option("--ids", help="The case ids follow: --ids ID [ID ...].")
    ] = False,
    ids_file: Annotated[
        Path | None, typer.Option("--ids-file", help="File with one case id a line.")
    ] = None,
    verify: VerifyOption = None,
) -> None:
    """Withdraw cases: gone from both FAISS indexes, items, thumbnails and shards (atomic)."""
    from medcap.errors import InputError
    from medcap.index import remove_from_index

    if case_ids and not ids:
        raise InputError("name the cases with --ids ID [ID ...] (or --ids-file FILE)")
    start = time.perf_counter()
    wanted = _read_ids(case_ids, ids_file)
    index, removed = remove_from_index(index_dir, wanted, verify=verify_setting(verify))
    missing = len(set(wanted)) - removed
    note = f" ({missing} ids were not in the index)" if missing else ""
    typer.echo(
        f"removed {removed} cases from {index_dir}{note}; it now holds {len(index)} "
        f"({time.perf_counter() - start:.1f} s)"
    )


@app.command("sync")
def sync(
    index_dir: Annotated[Path, typer.Argument(help="Index directory built from a DICOM source.")],
    data: Annotated[
        str | None,
        typer.Option("--data", help="The source (default: the one the index was built from)."),
    ] = None,
    remove_missing: Annotated[
        bool, typer.Option("--remove-missing", help="Also withdraw cases gone from the source.")
    ] = False,
    device: EncoderDeviceOption = None,
    verify: VerifyOption = None,
    pseudonym_key: PseudonymKeyOption = None,
    captions: CaptionsOption = None,
    dicom_unit: DicomUnitOption = None,
    keep_tag: KeepTagOption = None,
    allow_burned_in: AllowBurnedInOption = False,
    dicomweb_token: DicomwebTokenOption = None,
    study: StudyOption = None,
    where: QidoWhereOption = None,
) -> None:
    """Add the source's new cases (folder or DICOMweb); --remove-missing withdraws gone ones."""
    from medcap.index import open_index
    from medcap.index.sync import sync_index
    from medcap.retrieval.retriever import load_index_encoder

    verified = verify_setting(verify)
    existing = open_index(index_dir, verify=verified)
    source = data or existing.manifest.sources[0].dataset
    dicom = dicom_options(
        pseudonym_key=pseudonym_key, captions=captions, unit=dicom_unit, keep_tags=keep_tag,
        allow_burned_in=allow_burned_in, token=dicomweb_token, studies=study, where=where,
    )  # fmt: skip
    dataset = _open_split(source, existing.manifest.sources[0].split, data_config(), dicom)
    _check_key(existing, dataset)
    encoder = load_index_encoder(existing, None, device=device, cfg=current().encoder)
    result = sync_index(
        index_dir, dataset, encoder, current().index, remove_missing=remove_missing,
        make_thumbnail=_thumbnailer(current().index.thumbnail_size), verify=verified,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    gone = f", removed {result.removed}" if remove_missing else f"; {result.missing} gone"
    typer.echo(
        f"synced {index_dir} with {dataset.name}: added {result.added}{gone}; "
        f"it now holds {result.count}"
    )
