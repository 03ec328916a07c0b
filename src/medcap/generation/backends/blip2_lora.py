"""BLIP-2 (OPT) backend: the neighbour captions as the text prefix, plus an optional LoRA adapter.

The Q-Former's query tokens stand for the image at the start of the sequence; the rendered
prompt follows and the language model continues it. Pass a built `model` and `processor`
(tests use tiny ones) or a model id/path (default `Salesforce/blip2-opt-2.7b`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medcap.config import DEFAULTS, GenerationConfig
from medcap.generation.adapter import read_adapter_info
from medcap.generation.backends import hf
from medcap.generation.prompt import clean_caption

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from medcap.generation.prompt import Prompt


def load_blip2(
    model_id: str, cfg: GenerationConfig, device: torch.device, dtype: torch.dtype
) -> tuple[Any, Any]:
    """Load a BLIP-2 model and its processor from a hub id (cache only when offline) or a path."""
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    model = hf.load_pretrained(
        Blip2ForConditionalGeneration.from_pretrained,
        model_id,
        "BLIP-2 model",
        dtype=dtype,
        **hf.attention_option(cfg.attn_implementation, device),
    )
    processor = hf.load_pretrained(Blip2Processor.from_pretrained, model_id, "BLIP-2 processor")
    return model.to(device), processor


class Blip2LoraBackend:
    """Captions with BLIP-2 continuing a prompt made of the neighbours' captions."""

    name = "blip2-lora"

    def __init__(
        self,
        *,
        model: Any | None = None,
        processor: Any | None = None,
        model_id: str | None = None,
        adapter: str | Path | None = None,
        cfg: GenerationConfig = DEFAULTS.generation,
    ) -> None:
        hf.require_transformers()
        import torch

        if (model is None) != (processor is None):
            raise ValueError("pass both model and processor, or neither")
        self.cfg = cfg
        info = read_adapter_info(adapter) if adapter else None
        if model is None:
            model_id = model_id or (info.base_model if info else None) or cfg.blip2_model
            device = hf.resolve_device(cfg.device)
            model, processor = load_blip2(
                model_id, cfg, device, hf.resolve_dtype(cfg.dtype, device)
            )
        self.model = model_id or hf.model_name(model)
        if adapter:
            model = hf.attach_adapter(model, adapter)
            self.model += f"+{Path(adapter).name}"
        self.net = model.eval()
        assert processor is not None  # both given, or both loaded above
        self.processor: Any = processor
        self.processor.tokenizer.padding_side = "left"
        self.device = next(model.parameters()).device
        self.dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        self._batcher = hf.OomBatcher(cfg.batch_size)
        tokenizer = self.processor.tokenizer
        self._pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self._torch = torch

    def encode(self, images: Sequence[Image], texts: Sequence[str]) -> dict[str, Any]:
        """Processor inputs (query tokens + left-padded text) on the model's device."""
        inputs = self.processor(
            images=[image.convert("RGB") for image in images],
            text=list(texts),
            padding=True,
            return_tensors="pt",
        )
        moved = {k: v.to(self.device) for k, v in inputs.items()}
        moved["pixel_values"] = moved["pixel_values"].to(self.dtype)
        return moved

    def generate(self, images: Sequence[Image], prompts: Sequence[Prompt]) -> list[str]:
        """One caption per (image, prompt); batches of `cfg.batch_size`, halved on out-of-memory."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        pairs = list(zip(images, prompts, strict=True))
        return self._batcher.run(pairs, self._generate_batch)

    def _generate_batch(self, pairs: Sequence[tuple[Image, Prompt]]) -> list[str]:
        inputs = self.encode([image for image, _ in pairs], [p.text for _, p in pairs])
        with self._torch.inference_mode():
            sequences = self.net.generate(
                **inputs,
                max_new_tokens=self.cfg.max_new_tokens,
                do_sample=False,
                num_beams=self.cfg.num_beams,
                pad_token_id=self._pad_id,
            )
        prompt_ids = inputs["input_ids"]
        generated = hf.new_tokens(sequences, prompt_ids.shape[1], prompt_ids)
        texts = self.processor.batch_decode(generated, skip_special_tokens=True)
        return [clean_caption(t) for t in texts]
