"""Qwen2-VL and BLIP-2 from local folders that mirror the real repositories (config fields,
tokenizer, chat template, processor and sharded weights as published; shrunk widths and
depths): they load by path or from a bundle with every socket refused, and an incomplete or
damaged copy fails in one line naming the file."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from medcap.config import DEFAULTS
from medcap.errors import CorruptArtifactError, InputError, MedcapError
from medcap.generation.backends import get_backend
from medcap.generation.prompt import Prompt
from medcap.snapshots.bundle import BUNDLE_ENV
from tests.support.mirror_bundle import write_bundle
from tests.support.mirror_repos import BLIP2_ID, QWEN2VL_ID
from tests.support.mirror_tokenizers import BLIP2_IMAGE_TOKEN, QWEN2VL_SPECIAL

CFG = replace(DEFAULTS.generation, max_new_tokens=4, batch_size=3, device="cpu")
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def test_qwen2vl_mirror_loads_by_path_with_its_chat_template_and_token_ids(
    qwen2vl_repo: Path,
    prompts_and_images: tuple[list[Image.Image], list[Prompt]],
    no_network: list[str],
) -> None:
    from safetensors import safe_open

    assert all((qwen2vl_repo / shard).is_file() for shard in SHARDS)
    backend = get_backend("qwen2-vl", model_id=str(qwen2vl_repo), cfg=CFG)
    assert backend.model == str(qwen2vl_repo)
    tokenizer = backend.processor.tokenizer
    for token in ("<|image_pad|>", "<|vision_start|>", "<|im_end|>"):
        assert tokenizer.convert_tokens_to_ids(token) == QWEN2VL_SPECIAL[token]
    assert backend.net.config.image_token_id == QWEN2VL_SPECIAL["<|image_pad|>"]
    images, prompts = prompts_and_images
    chat = backend.chat_text(prompts[0])  # from chat_template.json
    assert chat.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert "<|vision_start|><|image_pad|><|vision_end|>" in chat
    assert chat.endswith("<|im_start|>assistant\n")
    with safe_open(str(qwen2vl_repo / SHARDS[0]), "pt") as shard:
        name = next(iter(shard.keys()))
        saved = shard.get_tensor(name).float()
    loaded = dict(backend.net.named_parameters())
    mapped = [p for n, p in loaded.items() if n.endswith(name.split(".", 1)[1])]
    assert any(p.shape == saved.shape and bool((p.detach() == saved).all()) for p in mapped)
    captions = backend.generate(images, prompts)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)


def test_blip2_mirror_loads_by_path(
    blip2_repo: Path,
    prompts_and_images: tuple[list[Image.Image], list[Prompt]],
    no_network: list[str],
) -> None:
    backend = get_backend("blip2-lora", model_id=str(blip2_repo), cfg=CFG)
    image_token, image_id = BLIP2_IMAGE_TOKEN
    assert backend.processor.tokenizer.convert_tokens_to_ids(image_token) == image_id
    assert backend.processor.num_query_tokens == 32 == backend.net.config.num_query_tokens
    images, prompts = prompts_and_images
    inputs = backend.encode(images[:1], [prompts[0].text])
    assert int((inputs["input_ids"] == image_id).sum()) == 32  # the query tokens
    assert len(backend.generate(images, prompts)) == 3


@pytest.mark.parametrize(("backend", "repo"), [("qwen2-vl", QWEN2VL_ID), ("blip2-lora", BLIP2_ID)])
def test_the_default_model_id_loads_from_a_bundle(
    backend: str,
    repo: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_network: list[str],
) -> None:
    folder = request.getfixturevalue("qwen2vl_repo" if backend == "qwen2-vl" else "blip2_repo")
    bundle = write_bundle(tmp_path / "bundle", [("model", repo, "generator", folder)])
    monkeypatch.setenv(BUNDLE_ENV, str(bundle))
    loaded = get_backend(backend, cfg=CFG)  # no model_id: the backend's default hub id
    assert loaded.model == repo  # recorded by id, as on a machine with the hub


def _edit(path: Path, **fields: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def _damage(folder: Path, kind: str) -> tuple[type[MedcapError], str]:
    if kind == "no-preprocessor":
        (folder / "preprocessor_config.json").unlink()
        return InputError, f"{folder / 'preprocessor_config.json'} is missing"
    if kind == "no-chat-template":
        (folder / "chat_template.json").unlink()
        _edit(folder / "tokenizer_config.json", chat_template=None)
        return InputError, f"{folder}: no chat template for Qwen2-VL model"
    if kind == "no-vocab":
        (folder / "tokenizer.json").unlink()
        (folder / "merges.txt").unlink()
        return InputError, f"{folder / 'merges.txt'} is missing"
    if kind == "missing-shard":
        (folder / SHARDS[1]).unlink()
        return InputError, f"{folder / SHARDS[1]} is missing (listed in model.safetensors.index"
    if kind == "truncated-shard":
        data = (folder / SHARDS[0]).read_bytes()
        (folder / SHARDS[0]).write_bytes(data[: len(data) - 1000])
        return CorruptArtifactError, f"{folder / SHARDS[0]}: truncated"
    if kind == "unknown-architecture":
        _edit(folder / "config.json", model_type="qwen9_vl", architectures=["Qwen9VLModel"])
        return InputError, f"{folder / 'config.json'} names an architecture this transformers"
    assert kind == "other-family"
    _edit(
        folder / "config.json", model_type="blip-2", architectures=["Blip2ForConditionalGeneration"]
    )
    return InputError, "is a Blip2ForConditionalGeneration model, not a Qwen2-VL model"


@pytest.mark.parametrize(
    "kind",
    [
        "no-preprocessor",
        "no-chat-template",
        "no-vocab",
        "missing-shard",
        "truncated-shard",
        "unknown-architecture",
        "other-family",
    ],
)
def test_a_damaged_generator_folder_fails_in_one_line(
    qwen2vl_repo: Path, tmp_path: Path, kind: str
) -> None:
    folder = Path(shutil.copytree(qwen2vl_repo, tmp_path / "Qwen2-VL-2B-Instruct"))
    error, named = _damage(folder, kind)
    with pytest.raises(error) as err:
        get_backend("qwen2-vl", model_id=str(folder), cfg=CFG)
    message = str(err.value)
    assert named in message and "\n" not in message


def test_the_caption_command_reports_a_damaged_folder_as_one_error_line(
    qwen2vl_repo: Path,
    phantom_index_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from medcap.cli import main

    folder = Path(shutil.copytree(qwen2vl_repo, tmp_path / "qwen"))
    (folder / SHARDS[1]).unlink()
    image = tmp_path / "scan.png"
    Image.new("RGB", (64, 64), (90, 90, 90)).save(image)
    argv = ["caption", str(image), "--index", str(phantom_index_dir), "--backend", "qwen2-vl"]
    code = main([*argv, "--model", str(folder), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"error: {folder / SHARDS[1]} is missing")
