"""Backends are found by name: one file adds one, and nothing else needs to know its name."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import medcap
from medcap.config import DEFAULTS
from medcap.errors import InputError
from medcap.generation import backends
from medcap.generation.backends import base

NEW_BACKEND = '''
from medcap.generation.backends.base import BaseBackend


class FirstNeighbourBackend(BaseBackend):
    """Copies the best neighbour's caption."""

    name = "first-neighbour"
    default_template = "concise"

    def __init__(self, *, cfg=None, model_id=None, adapter=None):
        self.model = ""

    def generate(self, images, prompts):
        return [p.neighbour_captions[0] if p.neighbour_captions else "" for p in prompts]
'''


@pytest.fixture()
def new_backend_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A backend module dropped beside the built-in ones (a copy of the package's path)."""
    folder = tmp_path / "more_backends"
    folder.mkdir()
    (folder / "first_neighbour.py").write_text(NEW_BACKEND)
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(folder)])
    monkeypatch.setattr(base, "_REGISTRY", {})
    monkeypatch.setattr(base, "_discovered", False)
    yield "first-neighbour"
    sys.modules.pop("medcap.generation.backends.first_neighbour", None)


def test_one_file_adds_a_backend_every_stage_can_use(
    new_backend_file: str, phantom_index_dir: Path, phantom_dataset: Any
) -> None:
    from medcap.generation.captioning import build_backend, resolve_settings
    from medcap.train.generator import train_generator

    assert {"consensus", "qwen2-vl", "blip2-lora", new_backend_file} <= set(base.backend_names())
    assert new_backend_file not in base.fine_tunable_backends()
    cfg = resolve_settings(replace(DEFAULTS.generation, backend=new_backend_file))
    assert cfg.template == "concise"  # the backend's own default template
    assert build_backend(cfg).name == new_backend_file
    index = medcap.open_index(phantom_index_dir, device="cpu")
    record = next(iter(phantom_dataset.records("test")))
    [result] = medcap.caption(index, record.image, backend=new_backend_file, k=3)
    assert result.text == result.neighbours[0].caption and result.prompt.template == "concise"
    with pytest.raises(InputError, match=f"cannot fine-tune backend '{new_backend_file}'"):
        train_generator("unused", "unused", "unused", cfg)


def test_unknown_backend_names_list_the_registered_ones() -> None:
    with pytest.raises(
        InputError, match="unknown caption backend 'gpt'; choose one of .*consensus"
    ):
        base.backend_class("gpt")
    assert base.backend_class("blip2-lora").default_template == "smallcap"
    assert base.backend_class("qwen2-vl").default_model.startswith("Qwen/")
    assert base.backend_class("consensus").lora_targets == ()
