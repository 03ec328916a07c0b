"""Item 10 (generator): `train generator --resume` continues only the run it was started as."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from medcap.config import DEFAULTS
from medcap.errors import InputError
from medcap.train.generator import IDENTITY_FILE, train_generator

CFG = replace(
    DEFAULTS.generation,
    backend="blip2-lora",
    template="smallcap",
    k=3,
    lora_r=4,
    lora_batch_size=4,
    lora_max_steps=2,
    lora_checkpoint_every=1,
    device="cpu",
)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.generation.gen_helpers import make_captions
    from tests.support.tiny_generators import build_tiny_blip2

    model, processor = build_tiny_blip2(make_captions(40))
    base = tmp_path_factory.mktemp("tiny_blip2") / "model"
    model.save_pretrained(base)
    processor.save_pretrained(base)
    return base


def test_resume_with_other_settings_or_data_is_refused(
    phantom_dir: Path, attack_index: Path, base_model: Path, tmp_path: Path
) -> None:
    from medcap.data import build_phantoms

    out = tmp_path / "adapter"

    def train(cfg: Any = CFG, data: Path = phantom_dir, **options: Any) -> Any:
        return train_generator(
            str(data), str(attack_index), out, cfg, model_id=str(base_model), limit=8,
            progress=False, **options,
        )  # fmt: skip

    assert train().steps == 2 and (out / IDENTITY_FILE).exists()
    with pytest.raises(InputError, match="k=3"):
        train(replace(CFG, k=4, lora_max_steps=4), resume=True)
    other = build_phantoms(tmp_path / "other", n=40, seed=9, image_size=64)
    with pytest.raises(InputError, match="data_fingerprint"):
        train(replace(CFG, lora_max_steps=4), data=other, resume=True)
    resumed = train(replace(CFG, lora_max_steps=4), resume=True)  # same run, more steps
    assert (resumed.resumed_from, resumed.steps) == (2, 4)
