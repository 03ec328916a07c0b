"""BLIP-2 (OPT) backend: the neighbour captions as the text prefix, plus an optional LoRA adapter.

The Q-Former's query tokens stand for the image at the start of the sequence; the rendered
prompt follows and the language model continues it, so its default template is `smallcap`
(a sentence to continue). Pass a built `model` and `processor` (tests use tiny ones) or a
model id/path (default `Salesforce/blip2-opt-2.7b`). LoRA wraps OPT's attention projections.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medcap.config import GenerationConfig
from medcap.generation.backends import hf
from medcap.generation.collate import TrainExample, collate_text, target_ids, with_target
from medcap.generation.prompt import clean_caption

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from medcap.generation.prompt import Prompt


class Blip2LoraBackend(hf.PretrainedBackend):
    """Captions with BLIP-2 continuing a prompt made of the neighbours' captions."""

    name = "blip2-lora"
    default_model = "Salesforce/blip2-opt-2.7b"
    default_template = "smallcap"  # OPT continues text rather than following a chat turn
    lora_targets = ("q_proj", "k_proj", "v_proj", "out_proj")  # OPT attention
    model_class = "Blip2ForConditionalGeneration"
    processor_class = "Blip2Processor"
    label = "BLIP-2"

    @classmethod
    def encode_example(
        cls,
        processor: Any,
        model_config: Any,
        image: Image,
        example: TrainExample,
        cfg: GenerationConfig,
    ) -> dict[str, torch.Tensor]:
        """Query tokens, the prompt (with BOS, as at inference), then the caption."""
        import torch

        tokenizer = processor.tokenizer
        prompt_ids = tokenizer(example.prompt.text)["input_ids"]
        image_ids = [model_config.image_token_index] * model_config.num_query_tokens
        prefix = torch.tensor([*image_ids, *prompt_ids])
        pixels = processor.image_processor(image.convert("RGB"), return_tensors="pt")
        target = torch.tensor(target_ids(tokenizer, example.target, leading_space=True))
        return with_target(prefix, target, {"pixel_values": pixels["pixel_values"]})

    @classmethod
    def collate(
        cls, items: Sequence[dict[str, torch.Tensor]], pad_id: int
    ) -> dict[str, torch.Tensor]:
        """Padded text and pixels (see BaseBackend)."""
        return collate_text(items, pad_id)

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
