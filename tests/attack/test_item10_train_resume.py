"""Item 10: `train --resume` checks the data and model first, and never ignores --epochs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from medcap.config import DEFAULTS
from medcap.errors import InputError
from medcap.train.loop import train_encoder
from tests.attack.helpers import one_error_line, run_cli

CFG = dataclasses.replace(
    DEFAULTS.train,
    epochs=1,
    batch_size=32,
    lr=1e-3,
    warmup_steps=2,
    checkpoint_every_steps=100,
    log_every_steps=1,
    eval_max_items=20,
    device="cpu",
    num_threads=1,
)


@pytest.fixture(scope="module")
def other_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medcap.data import build_phantoms

    return build_phantoms(tmp_path_factory.mktemp("other_phantoms"), n=80, seed=3, image_size=64)


@pytest.fixture()
def one_epoch(phantom_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    result = train_encoder(phantom_dir, out, cfg=CFG)
    assert (result.epochs, result.steps) == (1, 5)  # 160 train phantoms / 32
    return out


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_resume_on_other_data_is_refused_before_anything_is_rewritten(
    capsys: pytest.CaptureFixture[str], one_epoch: Path, other_data: Path
) -> None:
    config = (one_epoch / "config.json").read_bytes()
    with pytest.raises(InputError, match="data fingerprint"):
        train_encoder(other_data, one_epoch, cfg=dataclasses.replace(CFG, epochs=2), resume=True)
    code, _, err = run_cli(
        capsys, "train", "--resume", "--out", one_epoch, "--data", other_data, "--epochs", "2"
    )
    assert code == 1 and "was trained on" in one_error_line(err)
    assert (one_epoch / "config.json").read_bytes() == config


def test_resume_with_another_model_is_refused(
    one_epoch: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    import medcap.encoder

    tiny = Path(medcap.encoder.__file__).parent / "model_configs" / "medcap-tiny.json"
    arch = json.loads(tiny.read_text())
    arch["embed_dim"] = 32
    other = tmp_path / "narrower.json"
    other.write_text(json.dumps(arch))
    with pytest.raises(InputError, match="model"):
        train_encoder(
            phantom_dir, one_epoch, model=str(other), cfg=dataclasses.replace(CFG, epochs=2),
            resume=True,
        )  # fmt: skip


def test_more_epochs_on_resume_extend_the_run_on_a_longer_schedule(
    capsys: pytest.CaptureFixture[str], one_epoch: Path
) -> None:
    from medcap.train.state import warmup_cosine

    code, stdout, _ = run_cli(capsys, "train", "--resume", "--out", one_epoch, "--epochs", "3")
    assert code == 0 and "trained 15 steps, 3 epochs" in stdout
    config = json.loads((one_epoch / "config.json").read_text())
    assert config["train"]["epochs"] == 3 and config["total_steps"] == 15
    lrs = {r["step"]: r["lr"] for r in _rows(one_epoch) if r["kind"] == "train"}
    assert sorted(lrs) == list(range(1, 16))  # steps 1-5 kept, 6-15 added, none twice
    # lr logged after step s is base * factor(s) of the schedule in force: the 5-step
    # one for the first run, the 15-step one after the resume.
    short, long = warmup_cosine(5, 2, 0.0), warmup_cosine(15, 2, 0.0)
    assert lrs[5] == pytest.approx(1e-3 * short(5))
    for step in range(6, 16):
        assert lrs[step] == pytest.approx(1e-3 * long(step)), step


def test_fewer_epochs_than_done_are_refused(
    capsys: pytest.CaptureFixture[str], phantom_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    train_encoder(phantom_dir, out, cfg=dataclasses.replace(CFG, epochs=2))
    code, _, err = run_cli(capsys, "train", "--resume", "--out", out, "--epochs", "1")
    assert code == 1 and "trained 2 epochs" in one_error_line(err)
