"""Item 1 and the crafted encoder checkpoint: nothing medcap loads can run code."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

import medcap
from medcap.cli import main
from medcap.config import DEFAULTS
from medcap.errors import CorruptArtifactError, InputError, MedcapError
from tests.attack.helpers import assert_one_line_error, pickled_payload

SRC = Path(medcap.__file__).parent
LORA_CFG = replace(
    DEFAULTS.generation,
    k=2,
    template="smallcap",
    lora_r=2,
    lora_alpha=4,
    lora_dropout=0.0,
    lora_batch_size=2,
    lora_epochs=1,
    lora_max_steps=2,
    lora_checkpoint_every=2,
)


def _examples() -> list:  # type: ignore[type-arg]
    from medcap.generation.collate import TrainExample
    from medcap.generation.prompt import build_prompt
    from tests.generation.gen_helpers import make_captions, make_hits, make_image

    captions = make_captions(8, seed=3)
    return [
        TrainExample(
            make_image(i),
            build_prompt(make_hits(captions[i + 1 : i + 3], f"n{i}"), template="smallcap", k=2),
            captions[i],
            f"c{i}",
        )
        for i in range(4)
    ]


def _tiny_blip2() -> tuple[object, object]:
    from tests.generation.gen_helpers import make_captions
    from tests.support.tiny_generators import build_tiny_blip2

    return build_tiny_blip2(make_captions(40), seed=0)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step LoRA run with its resumable checkpoint (step-0000002)."""
    from medcap.train.lora import train_lora

    model, processor = _tiny_blip2()
    out = tmp_path_factory.mktemp("lora") / "run"
    train_lora(model, processor, _examples(), out, kind="blip2-lora", cfg=LORA_CFG)
    return out


def _plant(run: Path, tmp_path: Path, planting: str, marker: Path) -> Path:
    """A copy of `run` whose newest checkpoint carries a pickle payload in one of its files."""
    from medcap.train.lora_checkpoint import latest_checkpoint

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    checkpoint = latest_checkpoint(copy)
    assert checkpoint is not None and (checkpoint / "trainer.json").is_file()
    payload = pickled_payload(marker)
    if planting == "old trainer.pt":  # the pre-safetensors layout, as a crafted download
        (checkpoint / "trainer.json").unlink()
        (checkpoint / "optimizer.safetensors").unlink()
        (checkpoint / "trainer.pt").write_bytes(payload)
    else:
        (checkpoint / planting).write_bytes(payload)
    return copy


@pytest.mark.parametrize(
    ("planting", "error", "words"),
    [
        ("old trainer.pt", InputError, "start over"),
        ("trainer.json", CorruptArtifactError, "damaged"),
        ("optimizer.safetensors", CorruptArtifactError, "damaged"),
        ("adapter.safetensors", CorruptArtifactError, "damaged"),
    ],
)
def test_item01_resume_refuses_a_crafted_trainer_state_without_running_it(
    lora_run: Path, tmp_path: Path, planting: str, error: type[MedcapError], words: str
) -> None:
    from medcap.train.lora import train_lora

    marker = tmp_path / "pwned"
    run = _plant(lora_run, tmp_path, planting, marker)
    model, processor = _tiny_blip2()
    with pytest.raises(error) as caught:
        train_lora(model, processor, _examples(), run, kind="blip2-lora", cfg=LORA_CFG, resume=True)
    message = str(caught.value)
    assert "\n" not in message and words in message
    assert not marker.exists(), "the payload ran"


def test_item01_checkpoint_holds_only_safetensors_and_json(lora_run: Path) -> None:
    from medcap.train.lora_checkpoint import latest_checkpoint

    checkpoint = latest_checkpoint(lora_run)
    assert checkpoint is not None
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "adapter.safetensors",
        "optimizer.safetensors",
        "trainer.json",
    ]
    state = json.loads((checkpoint / "trainer.json").read_text())
    assert state["step"] == 2 and len(state["losses"]) == 2
    assert all(isinstance(b, int) and 0 <= b <= 255 for b in state["rng"]["torch"])
    assert "cuda" not in state["rng"]  # CUDA was never initialised in this CPU-only run


def test_item01_resume_refuses_gpu_rng_states_for_another_gpu_count(
    lora_run: Path, tmp_path: Path
) -> None:
    from medcap.train.lora import train_lora
    from medcap.train.lora_checkpoint import latest_checkpoint

    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    checkpoint = latest_checkpoint(run)
    assert checkpoint is not None
    state = json.loads((checkpoint / "trainer.json").read_text())
    state["rng"]["cuda"] = [state["rng"]["torch"][:16]] * 2  # as if saved on 2 GPUs
    (checkpoint / "trainer.json").write_text(json.dumps(state))
    model, processor = _tiny_blip2()
    with pytest.raises(InputError, match=r"2 GPU\(s\) but 0 are visible") as caught:
        train_lora(model, processor, _examples(), run, kind="blip2-lora", cfg=LORA_CFG, resume=True)
    assert "\n" not in str(caught.value)


def _calls(text: str, name: str) -> list[str]:
    """The argument text of every call `name(...)` in `text` (nested parentheses matched)."""
    found = []
    for match in re.finditer(re.escape(name) + r"\(", text):
        depth, end = 1, match.end()
        while depth and end < len(text):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        found.append(text[match.end() : end - 1])
    return found


def test_item01_nothing_in_src_unpickles() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for pattern in (
            r"weights_only\s*=\s*False",
            r"allow_pickle\s*=\s*True",
            r"\bpickle\.loads?\(",
            r"\b(?:cloudpickle|dill|joblib)\.loads?\(",
        ):
            offenders += [f"{path}: {m.group(0)}" for m in re.finditer(pattern, text)]
        for args in _calls(text, "torch.load"):
            if not re.search(r"weights_only\s*=\s*True", args):
                offenders.append(f"{path}: torch.load({args}) without weights_only=True")
    assert offenders == []
    assert _calls("torch.load(f(x), weights_only=True)", "torch.load") == [
        "f(x), weights_only=True"
    ]  # the scan itself sees calls


# ---- crafted encoder checkpoints ------------------------------------------------------


@pytest.fixture
def crafted_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """`evil/best.pt` (a pickle payload) beside a valid medcap sidecar; and the marker."""
    from medcap.encoder.spec import MODEL_CONFIG_DIR, SIDECAR_FORMAT

    folder = tmp_path / "evil"
    folder.mkdir()
    marker = tmp_path / "pwned"
    (folder / "best.pt").write_bytes(pickled_payload(marker))
    config = json.loads((MODEL_CONFIG_DIR / "medcap-tiny.json").read_text())
    sidecar = {
        "format": SIDECAR_FORMAT,
        "version": 1,
        "architecture": {"name": "medcap-tiny", "config": config, "tokenizer": "medcap-tiny"},
    }
    (folder / "best.json").write_text(json.dumps(sidecar))
    return folder / "best.pt", marker


@pytest.mark.parametrize("form", ["checkpoint", "run folder", "builtin:weights"])
def test_oneline_crafted_encoder_checkpoint_is_refused(
    crafted_checkpoint: tuple[Path, Path], form: str
) -> None:
    from medcap.encoder import load_encoder

    path, marker = crafted_checkpoint
    spec = {"checkpoint": str(path), "run folder": str(path.parent)}.get(
        form, f"medcap-tiny:{path}"
    )
    with pytest.raises(CorruptArtifactError) as caught:
        load_encoder(spec, device="cpu")
    assert str(caught.value) == (
        f"{path}: not a medcap/open_clip checkpoint, refused; pass a checkpoint written by "
        "`medcap train` or an open_clip state dict"
    )
    assert not marker.exists()


def test_oneline_crafted_encoder_checkpoint_on_the_command_line(
    crafted_checkpoint: tuple[Path, Path],
    phantom_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, marker = crafted_checkpoint
    code = main(
        ["index", "build", "--data", str(phantom_dir), "--model", str(path), "--out",
         str(tmp_path / "index")]
    )  # fmt: skip
    assert_one_line_error(code, capsys.readouterr().err, "not a medcap/open_clip checkpoint")
    assert "weights_only" not in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "index").exists()


def test_oneline_crafted_resume_checkpoint_of_the_encoder_is_refused(tmp_path: Path) -> None:
    from medcap.encoder.checkpoint import load_train_state

    marker = tmp_path / "pwned"
    last = tmp_path / "last.pt"
    last.write_bytes(pickled_payload(marker))
    with pytest.raises(CorruptArtifactError, match="not a medcap/open_clip checkpoint, refused"):
        load_train_state(last)
    assert not marker.exists()
