"""LoRA training (`medcap train generator`): TensorBoard event files that match metrics.jsonl."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from medcap.config import DEFAULTS
from medcap.generation.collate import TrainExample
from medcap.generation.prompt import build_prompt
from medcap.train.lora import latest_checkpoint, train_lora
from tests.generation.gen_helpers import make_captions, make_hits, make_image
from tests.train.tensorboard_events import assert_same_series, metrics_series, read_scalars

CFG = replace(
    DEFAULTS.generation,
    k=3,
    template="smallcap",
    lora_r=4,
    lora_alpha=8,
    lora_dropout=0.0,
    lora_lr=5e-3,
    lora_batch_size=4,
    lora_epochs=2,
    lora_checkpoint_every=2,
)


def _examples(n: int, seed: int) -> list[TrainExample]:
    captions = make_captions(n + 3, seed=seed)
    return [
        TrainExample(
            make_image(seed + i),
            build_prompt(make_hits(captions[i + 1 : i + 4], f"n{i}"), template=CFG.template, k=3),
            captions[i],
            f"c{seed}-{i}",
        )
        for i in range(n)
    ]


def test_lora_event_files_match_metrics_with_validation_loss_and_resume(
    tiny_blip2: Any, tmp_path: Path
) -> None:
    train, held_out = _examples(8, seed=1), _examples(4, seed=50)
    out = tmp_path / "adapter"
    model, processor = tiny_blip2()
    options: dict[str, Any] = {"kind": "blip2-lora", "eval_examples": held_out}
    first = train_lora(model, processor, train, out, cfg=replace(CFG, lora_max_steps=3), **options)
    assert first.steps == 3
    # As if killed after step 3 but before its checkpoint: the run resumes from step 2.
    shutil.rmtree(latest_checkpoint(out))
    model, processor = tiny_blip2()
    result = train_lora(model, processor, train, out, cfg=CFG, resume=True, **options)
    assert result.resumed_from == 2 and result.steps == 4

    events = read_scalars(out)
    assert set(events) >= {"train/loss", "train/lr", "train/samples_per_s", "eval/loss"}
    assert [step for step, _ in events["train/loss"]] == [1, 2, 3, 4]
    assert [step for step, _ in events["eval/loss"]] == [2, 4]  # each epoch's end; 3 is purged
    assert [value for _, value in events["train/lr"]] == pytest.approx([CFG.lora_lr] * 4)
    assert all(value > 0 for _, value in events["train/samples_per_s"])
    assert [value for _, value in events["train/loss"]] == pytest.approx(result.losses, rel=1e-5)
    assert_same_series(events, metrics_series(out))


def test_cli_generator_validates_on_the_valid_split_and_can_skip_tensorboard(
    phantom_dir: Path, phantom_index_dir: Path, tiny_blip2: Any, tmp_path: Path
) -> None:
    from medcap.cli.train_generator import generator

    model, processor = tiny_blip2()
    base = tmp_path / "tiny-blip2"
    model.save_pretrained(base)
    processor.save_pretrained(base)
    app = typer.Typer()
    app.command()(generator)
    out = tmp_path / "adapter"
    args = ["--data", str(phantom_dir), "--index", str(phantom_index_dir), "--out", str(out)]
    args += ["--model", str(base), "--max-steps", "2", "--limit", "8", "--batch-size", "4"]
    args += ["--device", "cpu", "--template", "smallcap", "--k", "3", "--no-tensorboard"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(row["kind"], row["step"]) for row in rows] == [("train", 1), ("train", 2), ("eval", 2)]
    assert rows[-1]["loss"] > 0
    assert not (out / "tensorboard").exists()
