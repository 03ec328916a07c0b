"""LoRA fine-tuning of the tiny generators: masked loss, adapter-only updates, reload, resume."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from medcap.config import DEFAULTS
from medcap.generation.backends import backend_class, get_backend
from medcap.generation.collate import IGNORE_INDEX, TrainExample, encode_example
from medcap.generation.prompt import build_prompt
from medcap.train.lora import evaluate_loss, latest_checkpoint, train_lora
from tests.generation.gen_helpers import make_captions, make_hits, make_image

KINDS = ["blip2-lora", "qwen2-vl"]
CFG = replace(
    DEFAULTS.generation,
    k=3,
    template="smallcap",
    lora_r=4,
    lora_alpha=8,
    lora_dropout=0.0,
    lora_lr=5e-3,
    lora_batch_size=4,
    lora_epochs=4,
    lora_checkpoint_every=2,
    max_new_tokens=4,
)


def _examples(n: int = 16) -> list[TrainExample]:
    captions = make_captions(n + 3, seed=11)
    out = []
    for i in range(n):
        # Neighbours are other cases' captions: the case itself is never among them.
        hits = make_hits([captions[(i + j + 1) % n] for j in range(3)], f"n{i}")
        prompt = build_prompt(hits, template=CFG.template, k=CFG.k)
        out.append(
            TrainExample(make_image(i, "L" if i % 2 else "RGB"), prompt, captions[i], f"c{i}")
        )
    return out


def _build(kind: str, request: pytest.FixtureRequest) -> tuple[Any, Any]:
    return request.getfixturevalue("tiny_qwen" if kind == "qwen2-vl" else "tiny_blip2")()


@pytest.mark.parametrize("kind", KINDS)
def test_loss_is_masked_over_the_prompt(kind: str, request: pytest.FixtureRequest) -> None:
    model, processor = _build(kind, request)
    example = _examples(1)[0]
    item = encode_example(kind, processor, model.config, example.image, example, CFG)
    labelled = item["labels"] != IGNORE_INDEX
    n_target = int(labelled.sum())
    assert bool(labelled[-n_target:].all()) and not bool(labelled[:-n_target].any())
    target_ids = item["input_ids"][-n_target:].tolist()
    assert target_ids[-1] == processor.tokenizer.eos_token_id
    decoded = processor.tokenizer.decode(target_ids[:-1])
    assert (
        decoded.split()
        == processor.tokenizer.decode(
            processor.tokenizer(example.target, add_special_tokens=False)["input_ids"]
        ).split()
    )


@pytest.mark.parametrize("kind", KINDS)
def test_training_lowers_loss_and_changes_only_the_adapter(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import torch

    model, processor = _build(kind, request)
    examples = _examples()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss_before = evaluate_loss(model, processor, examples, kind=kind, cfg=CFG)
    result = train_lora(
        model, processor, examples, tmp_path / "ad", kind=kind, cfg=CFG, base_model="tiny"
    )
    loss_after = evaluate_loss(model, processor, examples, kind=kind, cfg=CFG)
    assert result.steps == 16 and len(result.losses) == 16
    assert loss_after < loss_before - 0.05

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert result.trainable_params < 0.1 * result.total_params
    for name, param in model.named_parameters():
        base_name = name.replace("base_model.model.", "").replace(".base_layer", "")
        if "lora_" in name:
            continue
        assert torch.equal(param, before[base_name]), f"{name} changed"
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert any(bool(p.abs().sum() > 0) for p in lora_b)  # LoRA B starts at zero: it moved

    out = tmp_path / "ad"
    assert {"adapter_model.safetensors", "adapter_config.json", "medcap_adapter.json"} <= {
        p.name for p in out.iterdir()
    }
    assert (out / "loss.png").stat().st_size > 1000
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 17))
    peft_config = json.loads((out / "adapter_config.json").read_text())
    expected_targets = backend_class(kind).lora_targets
    assert sorted(peft_config["target_modules"]) == sorted(expected_targets)
    info = json.loads((out / "medcap_adapter.json").read_text())
    assert info["backend"] == kind and info["template"] == "smallcap" and info["k"] == 3
    assert sorted(info["lora"]["target_modules"]) == sorted(expected_targets)
    from safetensors.torch import load_file

    saved = load_file(str(out / "adapter_model.safetensors"))
    assert saved and all("lora_" in key for key in saved)  # only adapter weights on disk


@pytest.mark.parametrize("kind", KINDS)
def test_saved_adapter_reloads_to_identical_logits(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel

    model, processor = _build(kind, request)
    examples = _examples(8)
    train_lora(
        model, processor, examples, tmp_path / "ad", kind=kind, cfg=replace(CFG, lora_epochs=1)
    )
    fresh, _ = _build(kind, request)  # same seed: the same base weights
    reloaded = PeftModel.from_pretrained(fresh, str(tmp_path / "ad")).eval()
    backend = get_backend(kind, model=model, processor=processor, cfg=CFG)
    prompt = examples[0].prompt
    text = backend.chat_text(prompt) if kind == "qwen2-vl" else prompt.text
    inputs = backend.encode([examples[0].image], [text])
    with torch.no_grad():
        trained_logits = model.eval()(**inputs).logits
        reloaded_logits = reloaded(**inputs).logits
        with reloaded.disable_adapter():
            base_logits = reloaded(**inputs).logits
    assert torch.equal(trained_logits, reloaded_logits)
    assert not torch.allclose(base_logits, reloaded_logits)  # the adapter does something
    # The adapter directory also works through the backend (`--adapter`).
    fresh2, processor2 = _build(kind, request)
    via_backend = get_backend(
        kind, model=fresh2, processor=processor2, adapter=tmp_path / "ad", cfg=CFG
    )
    assert via_backend.generate([examples[0].image], [prompt]) == backend.generate(
        [examples[0].image], [prompt]
    )


def test_resume_continues_exactly(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    kind = "blip2-lora"
    examples = _examples(12)
    cfg = replace(CFG, lora_epochs=2, lora_dropout=0.1)  # dropout: the RNG state must resume too
    model, processor = _build(kind, request)
    straight = train_lora(model, processor, examples, tmp_path / "straight", kind=kind, cfg=cfg)

    model, processor = _build(kind, request)
    stopped = replace(cfg, lora_max_steps=3)
    first = train_lora(model, processor, examples, tmp_path / "resumed", kind=kind, cfg=stopped)
    assert first.steps == 3
    # As if killed after step 3 but before its checkpoint: the newest one left is step 2.
    shutil.rmtree(latest_checkpoint(tmp_path / "resumed"))
    model, processor = _build(kind, request)  # a new process starts from the base model
    second = train_lora(
        model, processor, examples, tmp_path / "resumed", kind=kind, cfg=cfg, resume=True
    )
    assert second.resumed_from == 2
    assert second.steps == straight.steps == 6
    assert second.losses == pytest.approx(straight.losses, abs=1e-6)
    a = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 7))


def test_adapter_sidecar_fills_unset_caption_settings(tmp_path: Path) -> None:
    from medcap.errors import CorruptArtifactError
    from medcap.generation.adapter import AdapterInfo, write_adapter_info
    from medcap.generation.captioning import resolve_settings

    write_adapter_info(AdapterInfo("qwen2-vl", "/models/q", "concise", 7), tmp_path)
    cfg = resolve_settings(DEFAULTS.generation, tmp_path, backend=None, k=None, template=None)
    assert (cfg.backend, cfg.template, cfg.k) == ("qwen2-vl", "concise", 7)
    given = replace(DEFAULTS.generation, k=2)
    kept = resolve_settings(given, tmp_path, backend=None, k=2, template=None)
    assert kept.k == 2 and kept.template == "concise"
    blip = replace(DEFAULTS.generation, backend="blip2-lora")
    assert (
        resolve_settings(blip, None, template=None).template
        == backend_class("blip2-lora").default_template
        == "smallcap"
    )
    assert resolve_settings(blip, None, template="default").template == "default"
    (tmp_path / "medcap_adapter.json").write_text("{not json")
    with pytest.raises(CorruptArtifactError, match="medcap_adapter.json is damaged"):
        resolve_settings(DEFAULTS.generation, tmp_path)
