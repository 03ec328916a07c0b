"""Qwen2-VL and BLIP-2 backends end to end on tiny models built from configs (no downloads)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from medcap.config import DEFAULTS
from medcap.errors import InputError, OfflineFetchError
from medcap.generation.backends import get_backend
from medcap.generation.backends.hf import OomBatcher
from medcap.generation.prompt import Prompt

CFG = replace(DEFAULTS.generation, max_new_tokens=6, batch_size=3)
KINDS = ["qwen2-vl", "blip2-lora"]


def _builder(kind: str, request: pytest.FixtureRequest) -> Callable[..., tuple[Any, Any]]:
    return request.getfixturevalue("tiny_qwen" if kind == "qwen2-vl" else "tiny_blip2")


@pytest.mark.parametrize("kind", KINDS)
def test_backend_writes_text_from_image_and_neighbours(
    kind: str,
    request: pytest.FixtureRequest,
    prompts_and_images: tuple[list[Image.Image], list[Prompt]],
) -> None:
    images, prompts = prompts_and_images
    model, processor = _builder(kind, request)()
    backend = get_backend(kind, model=model, processor=processor, cfg=CFG)
    assert backend.name == kind
    captions = backend.generate(images, prompts)
    assert len(captions) == len(images)
    assert all(isinstance(c, str) and c.strip() for c in captions)
    # The prompt is cut off: no caption repeats the template's words.
    assert not any("similar" in c.lower() or "radiologist" in c.lower() for c in captions)
    # Left padding is right: a batch of 3 gives what one image per call gives.
    single = get_backend(kind, model=model, processor=processor, cfg=replace(CFG, batch_size=1))
    assert single.generate(images, prompts) == captions


@pytest.mark.parametrize("kind", KINDS)
def test_the_image_changes_the_caption(kind: str, request: pytest.FixtureRequest) -> None:
    """The model really reads the picture: different images under one prompt give different
    token scores (compared on logits, since tiny random models often emit the same words)."""
    import torch

    from medcap.generation.prompt import build_prompt
    from tests.generation.gen_helpers import make_hits, make_image

    model, processor = _builder(kind, request)()
    backend = get_backend(kind, model=model, processor=processor, cfg=CFG)
    prompt = build_prompt(make_hits(["CT of the chest."]), k=1)
    texts = [backend.chat_text(prompt)] * 2 if kind == "qwen2-vl" else [prompt.text] * 2
    inputs = backend.encode([make_image(1), make_image(7)], texts)
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1]
    assert not torch.allclose(logits[0], logits[1])


@pytest.mark.parametrize("kind", KINDS)
def test_saved_model_directory_loads_by_path(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    prompts_and_images: tuple[list[Image.Image], list[Prompt]],
) -> None:
    images, prompts = prompts_and_images
    model, processor = _builder(kind, request)()
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    in_memory = get_backend(kind, model=model, processor=processor, cfg=CFG)
    loaded = get_backend(kind, model_id=str(tmp_path / "m"), cfg=replace(CFG, device="cpu"))
    assert loaded.model == str(tmp_path / "m")
    assert loaded.generate(images, prompts) == in_memory.generate(images, prompts)


@pytest.mark.parametrize("kind", KINDS)
def test_uncached_model_id_says_which_and_how_to_pass_a_path(kind: str) -> None:
    with pytest.raises(OfflineFetchError) as info:
        get_backend(kind, model_id="medcap-tests/no-such-model", cfg=replace(CFG, device="cpu"))
    message = str(info.value)
    assert "'medcap-tests/no-such-model'" in message and "--model" in message
    assert "\n" not in message


def test_missing_local_path_and_adapter_are_input_errors(tmp_path: Path, tiny_blip2: Any) -> None:
    with pytest.raises(InputError, match="does not exist"):
        get_backend("qwen2-vl", model_id=str(tmp_path / "absent"), cfg=CFG)
    model, processor = tiny_blip2()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a LoRA adapter directory"):
        get_backend("blip2-lora", model=model, processor=processor, adapter=tmp_path / "empty")


@pytest.mark.parametrize(
    ("setting", "pattern"),
    [
        ({"device": "cuda"}, "needs a CUDA GPU"),
        ({"device": "cpu", "dtype": "bf16"}, "GPU setting"),
        ({"device": "cpu", "attn_implementation": "flash_attention_2"}, "needs a CUDA GPU"),
    ],
)
def test_gpu_only_settings_on_cpu_are_refused(setting: dict[str, str], pattern: str) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InputError, match=pattern) as info:
        get_backend("qwen2-vl", model_id="medcap-tests/no-such-model", cfg=replace(CFG, **setting))
    assert "\n" not in str(info.value)


def test_out_of_memory_halves_the_batch_and_goes_on() -> None:
    import torch

    calls: list[int] = []

    def generate(chunk: list[int]) -> list[int]:
        calls.append(len(chunk))
        if len(chunk) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in chunk]

    batcher = OomBatcher(8)
    assert batcher.run(list(range(11)), generate) == [x * 10 for x in range(11)]
    assert calls[:3] == [8, 4, 2] and batcher.batch_size == 2
    assert set(calls[3:]) <= {1, 2}
    with pytest.raises(ValueError, match="other"):  # other errors are not swallowed
        OomBatcher(4).run([1], lambda _: (_ for _ in ()).throw(ValueError("other")))


def test_halved_batch_grows_back_after_successes() -> None:
    import torch

    free = [3]  # items that fit now; pressure eases after the first failure

    def generate(chunk: list[int]) -> list[int]:
        calls.append(len(chunk))
        if len(chunk) > free[0]:
            free[0] = 8
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return chunk

    calls: list[int] = []
    batcher = OomBatcher(8, regrow_after=2)
    assert batcher.run(list(range(24)), generate) == list(range(24))
    assert calls[:5] == [8, 4, 4, 8, 8] and batcher.batch_size == 8


def test_a_size_that_fails_again_waits_longer_before_regrowing() -> None:
    import torch

    def generate(chunk: list[int]) -> list[int]:
        calls.append(len(chunk))
        if len(chunk) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return chunk

    calls: list[int] = []
    batcher = OomBatcher(8, regrow_after=2)
    assert batcher.run(list(range(40)), generate) == list(range(40))
    # 8 fails, two 4s, 8 fails again, then four 4s before the next try at 8.
    assert calls[:10] == [8, 4, 4, 8, 4, 4, 4, 4, 8, 4]
    assert batcher.regrow_after == 8


def test_static_cache_batches_use_a_fixed_set_of_sizes() -> None:
    def generate(chunk: list[int]) -> list[int]:
        calls.append(len(chunk))
        if len(chunk) > 5:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`")
        return [x * 10 for x in chunk]

    calls: list[int] = []
    batcher = OomBatcher(12, buckets=True)
    assert batcher.buckets == [1, 2, 4, 8, 12]
    assert batcher.run(list(range(11)), generate) == [x * 10 for x in range(11)]
    assert calls == [12, 4, 4, 4]  # 11 padded to 12 fails; 6 rounds down to 4; 3 pads to 4
    assert set(calls) <= set(batcher.buckets) and batcher.batch_size == 4


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("torch", True),
        (RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"), True),
        (RuntimeError("CUDA error: out of memory"), True),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"), True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_NOT_INITIALIZED"), True),
        (RuntimeError("shape '[2, 3]' is invalid for input of size 5"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_out_of_memory_is_recognised(error: Any, expected: bool) -> None:
    import torch

    from medcap.generation.backends.hf import is_out_of_memory

    exc = torch.OutOfMemoryError("CUDA out of memory") if error == "torch" else error
    assert is_out_of_memory(exc) is expected


def test_memory_is_freed_after_the_failed_frames_are_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failed call's tensors are referenced by the traceback until `except` is left."""
    import gc
    import weakref

    import torch

    from medcap.generation.backends import hf

    class Block:  # stands for the activations of a batch that did not fit
        pass

    blocks: list[weakref.ref[Block]] = []

    def generate(chunk: list[int]) -> list[int]:
        block = Block()
        blocks.append(weakref.ref(block))
        if len(chunk) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return chunk

    alive_at_free: list[bool] = []

    def observed_free() -> None:
        gc.collect()
        alive_at_free.append(blocks[-1]() is not None)

    monkeypatch.setattr(hf, "_free_cuda_memory", observed_free)
    assert OomBatcher(4).run([1, 2, 3, 4], generate) == [1, 2, 3, 4]
    assert alive_at_free == [False]  # freed when nothing holds the failed batch any more


def test_transformers_floor_is_enforced_and_matches_pyproject(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import re
    import tomllib

    import transformers

    from medcap.generation.backends.hf import MIN_TRANSFORMERS, require_transformers

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    gen = pyproject["project"]["optional-dependencies"]["gen"]
    floor = next(re.search(r"transformers>=([\d.]+)", d) for d in gen if "transformers" in d)
    assert floor is not None
    assert tuple(int(x) for x in floor.group(1).split(".")[:2]) == MIN_TRANSFORMERS
    require_transformers()  # this environment passes
    monkeypatch.setattr(transformers, "__version__", "4.45.2")
    with pytest.raises(InputError, match="transformers 4.45.2 is too old") as info:
        require_transformers()
    assert "\n" not in str(info.value)


def test_backend_survives_out_of_memory(
    tiny_qwen: Any, prompts_and_images: tuple[list[Image.Image], list[Prompt]]
) -> None:
    """Batched generation that runs out of memory at batch 3 finishes at a smaller batch."""
    images, prompts = prompts_and_images
    model, processor = tiny_qwen()
    expected = get_backend("qwen2-vl", model=model, processor=processor, cfg=CFG).generate(
        images, prompts
    )
    backend = get_backend("qwen2-vl", model=model, processor=processor, cfg=CFG)
    real_generate = backend.net.generate

    def limited(**inputs: Any) -> Any:
        if inputs["input_ids"].shape[0] > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return real_generate(**inputs)

    backend.net.generate = limited
    assert backend.generate(images, prompts) == expected
    assert backend._batcher.batch_size == 1


def test_static_cache_path_gives_the_same_captions(
    tiny_qwen: Any, prompts_and_images: tuple[list[Image.Image], list[Prompt]]
) -> None:
    """The GPU speed settings (static KV cache, prompts padded to a multiple) change no text."""
    images, prompts = prompts_and_images
    model, processor = tiny_qwen()
    dynamic = get_backend("qwen2-vl", model=model, processor=processor, cfg=CFG)
    static_cfg = replace(CFG, static_cache=True, pad_to_multiple_of=32)
    static = get_backend("qwen2-vl", model=model, processor=processor, cfg=static_cfg)
    texts = [static.chat_text(p) for p in prompts]
    assert static.encode(images, texts)["input_ids"].shape[1] % 32 == 0
    assert static.generate(images, prompts) == dynamic.generate(images, prompts)
