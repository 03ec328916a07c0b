"""`medcap caption`: caption images from their nearest neighbours in an index.

Single images (`medcap caption scan.png other.dcm --index DIR`) print each caption with the
neighbours it came from; batch mode (`--data D --split test --out results.csv`) writes one
CSV row per image, checkpointed and resumable, for `medcap eval captions`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from medcap.cli.options import (
    ActorsOption,
    AdapterOption,
    AllowOutsidePathsOption,
    BackendOption,
    DtypeOption,
    EncodingOption,
    EngineOption,
    GenerationDeviceOption,
    RayAddressOption,
    TemplateOption,
    VerifyOption,
    data_config,
    dist_setting,
    verify_setting,
)
from medcap.config import DEFAULTS, current, replace_set
from medcap.errors import InputError

G = DEFAULTS.generation


def command(
    index: Annotated[
        Path, typer.Option("--index", help="Index directory to take neighbours from.")
    ],
    images: Annotated[
        list[Path] | None,
        typer.Argument(help="Image files to caption (PNG, JPEG, DICOM, ...).", show_default=False),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="Batch mode: dataset (folder, CSV/JSONL or hub name).")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help=f"Batch mode: split. (default: {G.split})")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Batch mode: results CSV (resumed if it exists).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Batch mode: caption only the first N images.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Batch mode: start --out afresh.")] = False,
    backend: BackendOption = None,
    k: Annotated[
        str | None,
        typer.Option(
            "--k",
            help=f"Neighbours in each prompt, or auto: keep them until the similarity drops "
            f"sharply (generation.auto_k_min..auto_k_max). (default: {G.k})",
        ),
    ] = None,
    template: TemplateOption = None,
    model: Annotated[
        str | None,
        typer.Option(help="Generator model id or local directory. (default: the backend's own)"),
    ] = None,
    adapter: AdapterOption = None,
    modality_hint: Annotated[
        str | None, typer.Option(help="Modality named in the prompt, e.g. CT.")
    ] = None,
    device: GenerationDeviceOption = None,
    dtype: DtypeOption = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Images per generation batch. (default: {G.batch_size})")
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help=f"Caption length cap, tokens. (default: {G.max_new_tokens})")
    ] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help=f"Rows per CSV flush. (default: {G.checkpoint_every})")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of text.")
    ] = False,
    verify: VerifyOption = None,
    allow_outside_paths: AllowOutsidePathsOption = False,
    encoding: EncodingOption = None,
    engine: EngineOption = None,
    ray_address: RayAddressOption = None,
    actors: ActorsOption = None,
) -> None:
    """Caption images from their nearest neighbours' captions (consensus, Qwen2-VL or BLIP-2)."""
    from medcap.generation import captioning
    from medcap.runs import caption as caption_run

    auto_k, k_number = _parse_k(k)
    cfg = replace_set(
        current().generation,
        split=split,
        backend=backend,
        k=k_number,
        auto_k=auto_k,
        template=template,
        modality_hint=modality_hint,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        checkpoint_every=checkpoint_every,
    )
    cfg = captioning.resolve_settings(cfg, adapter, backend=backend, k=k_number, template=template)
    if images and data:
        raise InputError("give image files or --data for batch mode, not both")
    if images and (engine == "ray" or ray_address or actors):
        raise InputError("--engine ray, --ray-address and --actors are for batch mode (--data)")
    if not images and not data:
        raise InputError("nothing to caption: give image files, or --data D --out results.csv")
    if data:
        if out is None:
            raise InputError("batch mode needs --out results.csv")
        run = caption_run.BatchRun(data=data, split=cfg.split, index_dir=str(index), out=str(out))
        dist = dist_setting(engine, ray_address, actors)
        remote = None
        if dist.engine == "ray":
            from medcap.dist import RayCaptionEngine

            remote = RayCaptionEngine(dist, index_device=current().index.search_device)
        summary = caption_run.caption_split(
            run,
            cfg,
            model_id=model,
            adapter=adapter,
            limit=limit,
            overwrite=overwrite,
            verify=verify_setting(verify),
            data_cfg=data_config(allow_outside_paths=allow_outside_paths, encoding=encoding),
            engine=remote,
        )
        typer.echo(
            f"{out}: {summary.written} captions written, {summary.resumed} already there, "
            f"{len(summary.skipped)} skipped ({summary.images_per_s:.2f} images/s)"
        )
        for item in summary.skipped[:10]:
            typer.echo(f"  skipped {item.image_id or item.source}: {item.reason}", err=True)
        return
    _caption_files(images or [], index, cfg, model, adapter, json_output, verify_setting(verify))


def _parse_k(text: str | None) -> tuple[bool | None, int | None]:
    """`--k`: (auto_k, k) -- "auto" turns adaptive k on, a number sets k; None: the config."""
    if text is None:
        return None, None
    if text.strip().lower() == "auto":
        return True, None
    try:
        return False, int(text)
    except ValueError:
        raise InputError(f"--k takes a number of neighbours or auto, got {text!r}") from None


def _caption_files(
    paths: list[Path],
    index: Path,
    cfg: Any,
    model: str | None,
    adapter: Path | None,
    as_json: bool,
    verify: bool,
) -> None:
    from medcap.data.images import load_image
    from medcap.errors import ImageDecodeError
    from medcap.generation import captioning
    from medcap.retrieval.retriever import open_retriever

    loaded, names = [], []
    for path in paths:
        try:
            loaded.append(load_image(path))
            names.append(str(path))
        except ImageDecodeError as exc:
            typer.echo(f"skipped {path}: {exc}", err=True)
    if not loaded:
        raise InputError("none of the given images could be read")
    retriever = open_retriever(
        index, device=cfg.device, index_device=current().index.search_device, verify=verify
    )
    backend = captioning.build_backend(cfg, model_id=model, adapter=adapter)
    results = captioning.caption_images_with_neighbours(
        retriever, backend, loaded, [None] * len(loaded), cfg
    )
    records: list[dict[str, Any]] = [
        {
            "image": name,
            "caption": caption.text,
            "backend": caption.backend,
            "model": caption.model,
            "latency_s": round(caption.latency_s, 4),
            "k": len(prompt.neighbour_ids),  # the neighbours used (adaptive with --k auto)
            "neighbours": [
                {"rank": rank, "image_id": image_id, "score": round(score, 4), "caption": text}
                for rank, (image_id, score, text) in enumerate(
                    zip(
                        prompt.neighbour_ids,
                        prompt.neighbour_scores,
                        prompt.neighbour_captions,
                        strict=True,
                    ),
                    start=1,
                )
            ],
        }
        for name, (caption, prompt) in zip(names, results, strict=True)
    ]
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    for record in records:
        typer.echo(f"{record['image']}\n  caption: {record['caption']}")
        typer.echo(
            f"  ({record['backend']}, {record['model'] or '-'}, {record['latency_s']:.3f} s)"
        )
        typer.echo("  neighbours:")
        for hit in record["neighbours"]:
            typer.echo(
                f"    {hit['rank']}. {hit['image_id']}  {hit['score']:.3f}  {hit['caption']}"
            )
