"""`medcap train generator`: LoRA fine-tuning of a caption generator on retrieval-augmented prompts.

The lead mounts `generator` on the `medcap train` group.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from medcap.cli.options import (
    AllowOutsidePathsOption,
    BackendOption,
    DtypeOption,
    EncodingOption,
    GenerationDeviceOption,
    NeighboursOption,
    TemplateOption,
    VerifyOption,
    data_config,
    verify_setting,
)
from medcap.config import DEFAULTS, current, replace_set

G = DEFAULTS.generation


def generator(
    data: Annotated[str, typer.Option(help="Dataset with the training split (folder, CSV, hub).")],
    index: Annotated[
        Path, typer.Option("--index", help="Index of the training split (neighbours).")
    ],
    out: Annotated[Path, typer.Option(help="Adapter output directory.")],
    backend: BackendOption = None,
    model: Annotated[
        str | None,
        typer.Option(help="Base model id or local dir. (default: the backend's own)"),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help=f"Training split. (default: {G.train_split})")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help=f"Epochs. (default: {G.lora_epochs})")] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many optimizer steps. (default: none)")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=f"Examples per step. (default: {G.lora_batch_size})")
    ] = None,
    lr: Annotated[float | None, typer.Option(help=f"Learning rate. (default: {G.lora_lr})")] = None,
    k: NeighboursOption = None,
    template: TemplateOption = None,
    limit: Annotated[int | None, typer.Option(help="Train on the first N cases only.")] = None,
    device: GenerationDeviceOption = None,
    dtype: DtypeOption = None,
    lora_r: Annotated[int | None, typer.Option(help=f"LoRA rank. (default: {G.lora_r})")] = None,
    lora_targets: Annotated[
        str | None,
        typer.Option(help="Comma-separated module names LoRA wraps. (default: the backend's own)"),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from the newest checkpoint in --out.")
    ] = False,
    tensorboard: Annotated[
        bool | None,
        typer.Option(
            "--tensorboard/--no-tensorboard",
            help="TensorBoard event files in OUT/tensorboard (needs medcap[tb]). "
            f"(default: {'on' if G.lora_tensorboard else 'off'})",
        ),
    ] = None,
    verify: VerifyOption = None,
    allow_outside_paths: AllowOutsidePathsOption = False,
    encoding: EncodingOption = None,
) -> None:
    """Fine-tune LoRA adapters of a generator; each prompt holds the case's retrieved neighbours."""
    from medcap.generation.captioning import resolve_settings
    from medcap.train.generator import train_generator

    active = current().generation
    cfg = replace_set(
        active,
        backend=backend or active.train_backend,
        train_split=split,
        lora_epochs=epochs,
        lora_max_steps=max_steps,
        lora_batch_size=batch_size,
        lora_lr=lr,
        k=k,
        template=template,
        device=device,
        dtype=dtype,
        lora_r=lora_r,
        lora_tensorboard=tensorboard,
    )
    if lora_targets:
        names = tuple(t.strip() for t in lora_targets.split(",") if t.strip())
        cfg = dataclasses.replace(cfg, lora_targets=names)
    cfg = resolve_settings(cfg, None, template=template)
    result = train_generator(
        data,
        str(index),
        out,
        cfg,
        model_id=model,
        resume=resume,
        limit=limit,
        verify=verify_setting(verify),
        data_cfg=data_config(allow_outside_paths=allow_outside_paths, encoding=encoding),
    )
    first = f"{result.losses[0]:.4f}" if result.losses else "-"
    last = f"{result.losses[-1]:.4f}" if result.losses else "-"
    typer.echo(
        f"{out}: adapter after {result.steps} steps (loss {first} -> {last}); "
        f"{result.trainable_params:,} of {result.total_params:,} parameters trained"
    )
