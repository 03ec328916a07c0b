"""`medcap search`: nearest cases or captions for image files, a folder, or --text.

A search can be refined (medcap.retrieval.refine): `--roi x,y,w,h` searches a region of
each image, `--text` given together with images steers them toward the words, and
`--more-like ID` / `--less-like ID` move the query toward / away from indexed cases.

Imports stay inside `command` (torch, open_clip, faiss load only when searching) so
that `medcap --help` is fast and a search from a fresh shell starts quickly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from medcap.cli.dicom_options import DicomwebTokenOption
from medcap.cli.options import EncoderDeviceOption, SearchModeOption, VerifyOption, verify_setting
from medcap.config import DEFAULTS, current

CAPTION_WIDTH = 72


def _expand(queries: Sequence[Path]) -> list[tuple[Path, bool]]:
    """(file, named explicitly) for each query; folders give their image files, sorted."""
    from medcap.data.images import IMAGE_SUFFIXES
    from medcap.errors import InputError

    files: list[tuple[Path, bool]] = []
    for q in queries:
        if q.is_dir():
            found = sorted(
                p for p in q.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise InputError(
                    f"folder {q} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            files += [(p, False) for p in found]
        elif q.is_file():
            files.append((q, True))
        else:
            raise InputError(f"query {q} does not exist; give image files, a folder, or --text")
    return files


def _batches(files: list[tuple[Path, bool]], size: int) -> Iterator[tuple[list[Path], list[Any]]]:
    """Decoded images in batches; a folder's undecodable file is skipped with a note."""
    from medcap.data.images import load_image
    from medcap.errors import ImageDecodeError

    paths: list[Path] = []
    images: list[Any] = []
    for path, explicit in files:
        try:
            images.append(load_image(path))
        except ImageDecodeError as exc:
            if explicit:
                raise
            typer.echo(f"skipped: {exc}", err=True)
            continue
        paths.append(path)
        if len(images) == size:
            yield paths, images
            paths, images = [], []
    if images:
        yield paths, images


def _hit_dict(hit: Any) -> dict[str, Any]:
    return {
        "rank": hit.rank,
        "score": round(float(hit.score), 6),
        "image_id": hit.image_id,
        "caption": hit.caption,
        "cuis": list(hit.cuis),
        "split": hit.split,
        "image_path": hit.image_path,
        "extra": dict(hit.metadata),
    }


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(query: str, hits: Sequence[Any], mode: str) -> str:
    lines = [f"query: {query}  ({mode}, {len(hits)} hits)"]
    if not hits:
        return lines[0] + "\n  (no results)"
    rows = [
        (
            str(h.rank),
            f"{h.score:.4f}",
            h.image_id,
            str(h.metadata.get("modality", "")),
            _short(",".join(h.cuis), 28),
            _short(h.caption, CAPTION_WIDTH),
        )
        for h in hits
    ]
    header = ("rank", "score", "image_id", "modality", "cuis", "caption")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        cells = [
            c.rjust(w) if i < 2 else c.ljust(w)
            for i, (c, w) in enumerate(zip(r[:-1], widths, strict=True))
        ]
        lines.append("  " + "  ".join([*cells, r[-1]]).rstrip())
    return "\n".join(lines)


def command(
    index: Annotated[Path, typer.Option("--index", help="Index directory to search.")],
    queries: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Image files (PNG/JPEG/DICOM), folders of images, or dicomweb:URL/studies/UID.",
            show_default=False,
        ),
    ] = None,
    text: Annotated[
        list[str] | None,
        typer.Option(
            "--text",
            help="A text query (repeatable); with image queries, one text that steers them.",
        ),
    ] = None,
    k: Annotated[
        int | None, typer.Option(help=f"Hits per query. (default: {DEFAULTS.retrieval.k})")
    ] = None,
    mode: SearchModeOption = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="Only cases whose metadata column has this value: column=value "
            "(repeatable; value1,value2 for either; number ranges lo..hi, ..hi, lo..)."
        ),
    ] = None,
    roi: Annotated[
        str | None,
        typer.Option(help="Search a region of each image: x,y,w,h in its pixels."),
    ] = None,
    roi_weight: Annotated[
        float | None,
        typer.Option(
            help="The region's share when mixed with the whole image (1: region alone). "
            f"(default: {DEFAULTS.refine.roi_weight})"
        ),
    ] = None,
    text_weight: Annotated[
        float | None,
        typer.Option(help=f"The steering text's share. (default: {DEFAULTS.refine.text_weight})"),
    ] = None,
    more_like: Annotated[
        list[str] | None,
        typer.Option(help="An indexed image_id marked relevant: search toward it (repeatable)."),
    ] = None,
    less_like: Annotated[
        list[str] | None,
        typer.Option(help="An indexed image_id marked not relevant: away from it (repeatable)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON: one entry per query.")
    ] = False,
    exclude_self: Annotated[
        bool,
        typer.Option(help="Drop hits whose image_id is the query file's name without extension."),
    ] = False,
    model: Annotated[
        str | None, typer.Option(help="Encoder checkpoint, if it moved. (default: the index's)")
    ] = None,
    device: EncoderDeviceOption = None,
    verify: VerifyOption = None,
    dicomweb_token: DicomwebTokenOption = None,
) -> None:
    """Search an index with image files, a folder of images, a DICOMweb study, or --text."""
    from medcap.errors import InputError

    if not queries and not text:
        raise InputError('nothing to search: give image files, a folder, or --text "..."')
    web = [str(q) for q in queries or [] if str(q).startswith("dicomweb:")]
    files = _expand([q for q in queries or [] if not str(q).startswith("dicomweb:")])
    from medcap.retrieval.refine import Refinement, parse_roi
    from medcap.retrieval.retriever import check_text_queries, open_retriever

    check_text_queries(text or [])  # before any output: a blank --text fails the whole call
    steer = None
    if (files or web) and text:
        if len(text) > 1:
            raise InputError("give one --text to steer image queries (or search texts alone)")
        steer, text = text[0], None
    if roi is not None and not (files or web):
        raise InputError("--roi refines image queries: give an image file")
    refine = Refinement(
        roi=parse_roi(roi) if roi is not None else None, roi_weight=roi_weight,
        text=steer, text_weight=text_weight,
        more_like=tuple(more_like or ()), less_like=tuple(less_like or ()),
    )  # fmt: skip

    cfg = current()
    k = k if k is not None else cfg.retrieval.k
    if k < 1:
        raise InputError(f"--k must be at least 1 (got {k})")
    filters = parse_where(where or [])
    retriever = open_retriever(
        index,
        device=device or cfg.encoder.device,
        model=model,
        index_device=cfg.index.search_device,
        image_tower=True,
        verify=verify_setting(verify),
    )
    results: list[dict[str, Any]] = []

    def emit(query: str, hits: Sequence[Any], used_mode: str) -> None:
        if json_out:
            entry: dict[str, Any] = {
                "query": query, "mode": used_mode, "hits": [_hit_dict(h) for h in hits]
            }  # fmt: skip
            if not refine.empty:
                entry["refine"] = refine.describe(cfg.refine)
            results.append(entry)
        else:
            typer.echo(_table(query, hits, used_mode) + "\n")

    image_mode = mode or cfg.retrieval.mode
    if web:  # studies on a DICOMweb server: one query per series
        from medcap.data.dicom.web_dataset import study_query_images

        named = [pair for source in web for pair in study_query_images(source, dicomweb_token)]
        found = retriever.search_images(
            [i for _, i in named], k, mode=image_mode, where=filters, refine=refine
        )
        for (name, _image), hits in zip(named, found, strict=True):
            emit(name, hits, image_mode)
    for paths, images in _batches(files, cfg.encoder.batch_size):
        exclude = [p.stem for p in paths] if exclude_self else None
        found = retriever.search_images(
            images, k, mode=image_mode, exclude_ids=exclude, where=filters, refine=refine
        )
        for path, hits in zip(paths, found, strict=True):
            emit(str(path), hits, image_mode)
    if text:
        text_mode = mode or cfg.retrieval.text_mode
        found = retriever.search_texts(text, k, mode=text_mode, where=filters, refine=refine)
        for query, hits in zip(text, found, strict=True):
            emit(query, hits, text_mode)
    if json_out:
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))


def parse_where(items: Sequence[str]) -> dict[str, list[str]]:
    """`column=value[,value...]` options -> {column: accepted values}."""
    from medcap.errors import InputError

    filters: dict[str, list[str]] = {}
    for item in items:
        column, sep, values = item.partition("=")
        if not sep or not column.strip():
            raise InputError(f"--where {item!r}: write it as column=value, e.g. modality=CT")
        accepted = [v.strip() for v in values.split(",") if v.strip()]
        filters.setdefault(column.strip(), []).extend(accepted)
    return filters
