"""Caption generation on CUDA: batched equals one-at-a-time (Qwen2-VL and BLIP-2), the static
KV cache, out-of-memory back-off under a capped memory fraction, and exact LoRA resume."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from medcap.config import DEFAULTS
from medcap.generation.backends import get_backend, hf
from medcap.generation.backends.hf import OomBatcher
from medcap.train.lora import latest_checkpoint, train_lora
from tests.generation.test_generation_lora import CFG as LORA_CFG
from tests.generation.test_generation_lora import _examples

pytestmark = pytest.mark.gpu

CFG = replace(DEFAULTS.generation, max_new_tokens=6, batch_size=3, device="cuda", dtype="fp32")
KINDS = ["qwen2-vl", "blip2-lora"]
MB = 2**20


@pytest.fixture(autouse=True)
def _plain_fp32() -> Iterator[None]:
    # cuDNN convolutions (Qwen2-VL's patch embedding) take TF32 by default: off, so batched and
    # one-at-a-time generation do the same float32 arithmetic.
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = previous


def _on_cuda(build: Callable[..., tuple[Any, Any]]) -> tuple[Any, Any]:
    model, processor = build()
    model.set_attn_implementation("eager")  # the same kernels with and without padding
    return model.to("cuda"), processor


def _builder(kind: str, request: pytest.FixtureRequest) -> Callable[..., tuple[Any, Any]]:
    return request.getfixturevalue("tiny_qwen" if kind == "qwen2-vl" else "tiny_blip2")  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", KINDS)
def test_batched_generation_equals_one_at_a_time(
    kind: str, request: pytest.FixtureRequest, prompts_and_images: Any
) -> None:
    images, prompts = prompts_and_images
    model, processor = _on_cuda(_builder(kind, request))
    batched = get_backend(kind, model=model, processor=processor, cfg=CFG)
    single = get_backend(kind, model=model, processor=processor, cfg=replace(CFG, batch_size=1))
    assert batched.device.type == "cuda"
    texts = batched.generate(images, prompts)
    assert texts == single.generate(images, prompts)
    assert all(isinstance(t, str) for t in texts)


def test_static_cache_on_cuda_gives_the_dynamic_captions(
    tiny_qwen: Any, prompts_and_images: Any
) -> None:
    images, prompts = prompts_and_images
    model, processor = _on_cuda(tiny_qwen)
    dynamic = get_backend("qwen2-vl", model=model, processor=processor, cfg=CFG)
    static_cfg = replace(CFG, static_cache=True, pad_to_multiple_of=32, batch_size=4)
    static = get_backend("qwen2-vl", model=model, processor=processor, cfg=static_cfg)
    assert static._batcher.buckets == [1, 2, 4]  # three prompts run as one padded batch of 4
    assert static.generate(images, prompts) == dynamic.generate(images, prompts)


def _cap_memory(headroom: int) -> None:
    """Let this process allocate only `headroom` bytes beyond what it holds now."""
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    allowed = torch.cuda.memory_reserved() + headroom
    torch.cuda.set_per_process_memory_fraction(allowed / total)


def _uncap() -> None:
    torch.cuda.set_per_process_memory_fraction(1.0)
    torch.cuda.empty_cache()


def test_out_of_memory_halves_frees_and_regrows_on_a_capped_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    block = 256 * MB  # memory one item needs
    base = torch.cuda.memory_allocated()
    allocated_when_freed: list[int] = []
    real_free = hf._free_cuda_memory

    def observed_free() -> None:
        real_free()
        allocated_when_freed.append(torch.cuda.memory_allocated())

    monkeypatch.setattr(hf, "_free_cuda_memory", observed_free)
    calls: list[int] = []

    def generate(chunk: list[int]) -> list[int]:
        calls.append(len(chunk))
        held = torch.ones(block, dtype=torch.uint8, device="cuda")  # held by this frame
        rest = torch.ones((len(chunk) - 1) * block, dtype=torch.uint8, device="cuda")
        return [int(held[0]) + int(rest.numel() >= 0) * x for x in chunk]

    _cap_memory(3 * block + 64 * MB)
    try:
        out = OomBatcher(8, regrow_after=2).run(list(range(12)), generate)
    finally:
        _uncap()
    assert out == [1 + x for x in range(12)]
    assert calls[:3] == [8, 4, 2]  # 8 and 4 items do not fit in 3 items' memory
    assert allocated_when_freed and all(a == base for a in allocated_when_freed)
    assert torch.cuda.memory_allocated() == base


def test_backend_finishes_a_batch_that_runs_out_of_gpu_memory(
    tiny_qwen: Any, prompts_and_images: Any
) -> None:
    images, prompts = prompts_and_images
    model, processor = _on_cuda(tiny_qwen)
    expected = get_backend("qwen2-vl", model=model, processor=processor, cfg=CFG).generate(
        images, prompts
    )
    backend = get_backend("qwen2-vl", model=model, processor=processor, cfg=CFG)
    real_generate = backend.net.generate
    block = 256 * MB

    def memory_hungry(**inputs: Any) -> Any:
        # Activations that grow with the batch: more than one row does not fit under the cap.
        scratch = torch.empty(
            inputs["input_ids"].shape[0] * block, dtype=torch.uint8, device="cuda"
        )
        del scratch
        return real_generate(**inputs)

    backend.net.generate = memory_hungry
    _cap_memory(block + 128 * MB)
    try:
        texts = backend.generate(images, prompts)
    finally:
        _uncap()
    assert texts == expected
    assert backend._batcher.batch_size == 1


def test_lora_resume_is_exact_on_cuda(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Dropout on CUDA draws from the CUDA generator: a resumed run must restore its state."""
    from safetensors.torch import load_file

    kind = "blip2-lora"
    examples = _examples(12)
    cfg = replace(LORA_CFG, lora_epochs=2, lora_dropout=0.1)

    def build() -> tuple[Any, Any]:
        model, processor = request.getfixturevalue("tiny_blip2")()
        return model.to("cuda"), processor

    model, processor = build()
    straight = train_lora(model, processor, examples, tmp_path / "straight", kind=kind, cfg=cfg)
    model, processor = build()
    stopped = replace(cfg, lora_max_steps=3)
    train_lora(model, processor, examples, tmp_path / "resumed", kind=kind, cfg=stopped)
    shutil.rmtree(latest_checkpoint(tmp_path / "resumed"))  # killed before step 3's checkpoint
    model, processor = build()
    second = train_lora(
        model, processor, examples, tmp_path / "resumed", kind=kind, cfg=cfg, resume=True
    )
    assert second.resumed_from == 2 and second.steps == straight.steps == 6
    assert second.losses == pytest.approx(straight.losses, abs=1e-5)
    a = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
