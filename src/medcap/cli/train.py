"""`medcap train`: contrastive fine-tuning of the CLIP encoder (a thin wrapper).

The group's callback trains the encoder when no subcommand is given; subcommands (such as
`medcap train generator`) are mounted on `app` by the root CLI.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from medcap.cli.options import (
    AllowOutsidePathsOption,
    EncodingOption,
    PrecisionOption,
    data_config,
)
from medcap.cli.train_generator import generator
from medcap.config import DEFAULTS, current

app = typer.Typer(
    help="Fine-tune the CLIP encoder on image-caption pairs (or a generator: see subcommands).",
    invoke_without_command=True,
    no_args_is_help=False,
)
_T = DEFAULTS.train


def _default(value: object) -> str:
    return f"(default: {value})"


@app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    data: Annotated[
        str | None,
        typer.Option(help="Dataset with train/valid splits: folder, CSV/JSONL, hub name."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory for checkpoints and logs.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help=f"Encoder spec to start from. {_default(DEFAULTS.encoder.model)}"),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help=f"Epochs. {_default(_T.epochs)}")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help=f"Pairs per process per micro-batch. {_default(_T.batch_size)}"),
    ] = None,
    lr: Annotated[float | None, typer.Option(help=f"Peak learning rate. {_default(_T.lr)}")] = None,
    weight_decay: Annotated[
        float | None, typer.Option(help=f"AdamW weight decay. {_default(_T.weight_decay)}")
    ] = None,
    warmup_steps: Annotated[
        int | None, typer.Option(help=f"Linear warmup steps. {_default(_T.warmup_steps)}")
    ] = None,
    grad_accum_steps: Annotated[
        int | None,
        typer.Option(
            help=f"Micro-batches per step (exact big-batch loss). {_default(_T.grad_accum_steps)}"
        ),
    ] = None,
    precision: PrecisionOption = None,
    grad_checkpointing: Annotated[
        bool | None,
        typer.Option(
            "--grad-checkpointing/--no-grad-checkpointing", help="Trade compute for memory."
        ),
    ] = None,
    lock_image: Annotated[
        bool | None, typer.Option("--lock-image/--no-lock-image", help="Freeze the image tower.")
    ] = None,
    lock_text: Annotated[
        bool | None, typer.Option("--lock-text/--no-lock-text", help="Freeze the text tower.")
    ] = None,
    checkpoint_every_steps: Annotated[
        int | None,
        typer.Option(help=f"Write last.pt every N steps. {_default(_T.checkpoint_every_steps)}"),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    max_minutes: Annotated[
        float | None, typer.Option(help=f"Stop after this wall time. {_default(_T.max_minutes)}")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help=f"Cap on optimizer steps. {_default(_T.max_steps)}")
    ] = None,
    eval_max_items: Annotated[
        int | None,
        typer.Option(help=f"Validation pairs scored per epoch. {_default(_T.eval_max_items)}"),
    ] = None,
    num_threads: Annotated[
        int | None, typer.Option(help=f"Torch CPU threads. {_default(_T.num_threads)}")
    ] = None,
    num_workers: Annotated[
        int | None, typer.Option(help=f"Image decoding workers. {_default(_T.num_workers)}")
    ] = None,
    seed: Annotated[int | None, typer.Option(help=f"Random seed. {_default(_T.seed)}")] = None,
    device: Annotated[
        str | None, typer.Option(help=f"auto | cpu | cuda | cuda:N. {_default(_T.device)}")
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option(
            "--augment/--no-augment", help="Radiology augmentation (no flips). (default: on)"
        ),
    ] = None,
    tensorboard: Annotated[
        bool | None,
        typer.Option(
            "--tensorboard/--no-tensorboard",
            help="TensorBoard event files in OUT/tensorboard (needs medcap[tb]). "
            f"(default: {'on' if _T.tensorboard else 'off'})",
        ),
    ] = None,
    allow_outside_paths: AllowOutsidePathsOption = False,
    encoding: EncodingOption = None,
) -> None:
    """Fine-tune the CLIP encoder (symmetric InfoNCE); torchrun for several GPUs."""
    if ctx.invoked_subcommand is not None:
        return
    from medcap.config import replace_set
    from medcap.data.readers import open_dataset
    from medcap.errors import InputError
    from medcap.train.loop import train_encoder
    from medcap.train.setup import resume_config

    if out is None:
        raise InputError("missing --out: the directory for checkpoints and logs")
    options = dict(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        warmup_steps=warmup_steps, grad_accum_steps=grad_accum_steps, precision=precision,
        grad_checkpointing=grad_checkpointing, lock_image=lock_image, lock_text=lock_text,
        checkpoint_every_steps=checkpoint_every_steps, max_minutes=max_minutes,
        max_steps=max_steps, eval_max_items=eval_max_items, num_workers=num_workers, seed=seed,
        num_threads=num_threads,
        device=device, augment=augment, tensorboard=tensorboard,
    )  # fmt: skip
    if resume and (out / "config.json").is_file():
        spec, source, cfg = resume_config(out, model=model, data=data, **options)
    else:
        if data is None:
            raise InputError("missing --data: the dataset to train on (see `medcap data --help`)")
        spec, source = model or current().encoder.model, data
        cfg = replace_set(current().train, **options)
    dataset = open_dataset(
        source, cfg=data_config(allow_outside_paths=allow_outside_paths, encoding=encoding)
    )
    result = train_encoder(dataset, out, model=spec, cfg=cfg, resume=resume, progress=True)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, process 0 reports
    if result.skipped:
        typer.echo(
            f"skipped {len(result.skipped)} undecodable images (listed in {out}/config.json)"
        )
    m = result.best_metrics
    if m:
        recalls = " ".join(f"R@{k} {m[f'i2t_R@{k}']:.3f}" for k in (1, 5, 10))
        typer.echo(
            f"best: image->text {recalls}"
            f" | text->image R@10 {m['t2i_R@10']:.3f} | median rank {m['i2t_median_rank']:.0f}"
            f" ({m['n']:.0f} validation pairs)"
        )
    note = " (stopped by --max-minutes)" if result.stopped_early else ""
    typer.echo(
        f"trained {result.steps} steps, {result.epochs} epochs{note}: {result.best_checkpoint}"
    )


# `medcap train generator`: LoRA fine-tuning of a caption generator (medcap.cli.train_generator).
app.command("generator")(generator)
