"""Qwen2-VL backend: the query image and the neighbour captions in one chat turn.

Batched generation with left padding (bf16 on GPU), image size bounded by min/max pixels
(28x28 pixels per visual token), an optional LoRA adapter, and the prompt tokens cut off
the output. Pass a built `model` and `processor` (tests use tiny ones) or a model id/path
(default `Qwen/Qwen2-VL-2B-Instruct`). LoRA fine-tuning wraps the language model's
attention projections; training examples go through the same chat template.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medcap.config import GenerationConfig
from medcap.generation.backends import hf
from medcap.generation.collate import TrainExample, collate_text, pad_items, target_ids, with_target
from medcap.generation.prompt import clean_caption

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from medcap.generation.prompt import Prompt

log = logging.getLogger(__name__)


def image_size(cfg: GenerationConfig) -> dict[str, int]:
    """The processor's resize bounds, in pixels (28x28 pixels per visual token)."""
    return {"shortest_edge": cfg.min_pixels, "longest_edge": cfg.max_pixels}


class Qwen2VLBackend(hf.PretrainedBackend):
    """Captions with a Qwen2-VL chat model reading the image and the neighbours' captions."""

    name = "qwen2-vl"
    default_model = "Qwen/Qwen2-VL-2B-Instruct"
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj")  # language-model attention
    model_class = "Qwen2VLForConditionalGeneration"
    processor_class = "AutoProcessor"
    label = "Qwen2-VL"
    needs_chat_template = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._size = image_size(self.cfg)

    @classmethod
    def encode_example(
        cls,
        processor: Any,
        model_config: Any,
        image: Image,
        example: TrainExample,
        cfg: GenerationConfig,
    ) -> dict[str, torch.Tensor]:
        """The chat template with its visual tokens, then the caption (see BaseBackend)."""
        import torch

        chat = processor.apply_chat_template(
            example.prompt.messages, tokenize=False, add_generation_prompt=True
        )
        enc = processor(
            text=[chat],
            images=[image.convert("RGB")],
            return_tensors="pt",
            images_kwargs={"size": image_size(cfg)},
        )
        target = torch.tensor(target_ids(processor.tokenizer, example.target, leading_space=False))
        extra = {"pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}
        if "mm_token_type_ids" in enc:  # newer 5.x processors return them; M-RoPE reads them
            zeros = torch.zeros(len(target), dtype=torch.long)
            extra["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"][0], zeros])
        return with_target(enc["input_ids"][0], target, extra)

    @classmethod
    def collate(
        cls, items: Sequence[dict[str, torch.Tensor]], pad_id: int
    ) -> dict[str, torch.Tensor]:
        """Padded text and pixels, plus each image's patch grid and the token types (when the
        processor gave them)."""
        import torch

        batch = collate_text(items, pad_id)
        batch["image_grid_thw"] = torch.cat([item["image_grid_thw"] for item in items])
        if "mm_token_type_ids" in items[0]:
            batch["mm_token_type_ids"] = pad_items(items, "mm_token_type_ids", 0)
        return batch

    def chat_text(self, prompt: Prompt) -> str:
        """The prompt rendered through the processor's chat template, ready for generation."""
        text: str = self.processor.apply_chat_template(
            prompt.messages, tokenize=False, add_generation_prompt=True
        )
        return text

    def encode(self, images: Sequence[Image], texts: Sequence[str]) -> dict[str, Any]:
        """Processor inputs (left-padded) for images and chat texts, on the model's device."""
        image_options: dict[str, Any] = {"size": self._size}
        if self.device.type == "cuda":  # resize and normalise on the GPU
            image_options["device"] = str(self.device)
        # A static cache is compiled for its shape: padding prompts to a multiple of N tokens
        # lets batches of similar prompts reuse one compiled graph.
        multiple = self.cfg.pad_to_multiple_of if self.cfg.static_cache else None
        inputs = self.processor(
            text=list(texts),
            images=[image.convert("RGB") for image in images],
            padding=True,
            pad_to_multiple_of=multiple,
            return_tensors="pt",
            images_kwargs=image_options,
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
        inputs = self.encode([image for image, _ in pairs], [self.chat_text(p) for _, p in pairs])
        options: dict[str, Any] = {
            "max_new_tokens": self.cfg.max_new_tokens,
            "do_sample": False,
            "num_beams": self.cfg.num_beams,
            "pad_token_id": self._pad_id,
        }
        if self.cfg.static_cache:
            options["cache_implementation"] = "static"
        with self._torch.inference_mode():
            sequences = self.net.generate(**inputs, **options)
        prompt_ids = inputs["input_ids"]
        generated = hf.new_tokens(sequences, prompt_ids.shape[1], prompt_ids)
        texts = self.processor.batch_decode(generated, skip_special_tokens=True)
        return [clean_caption(t) for t in texts]
