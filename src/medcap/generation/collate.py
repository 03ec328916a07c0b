"""Training inputs for the generators: prompt + target caption, loss masked over the prompt.

Each example is tokenised exactly as the backend does at inference time (the BLIP-2 query
tokens, or the Qwen2-VL chat template with its visual tokens), then the target caption and
an end-of-sequence token are appended. Labels are -100 everywhere except on the target, so
only the caption is learnt (SmallCap's masked prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from medcap.generation.prompt import Prompt, clean_caption

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

GeneratorKind = Literal["qwen2-vl", "blip2-lora"]
IGNORE_INDEX = -100  # label value that cross-entropy skips


@dataclass(frozen=True)
class TrainExample:
    """One training case: its image (PIL image or an `ImageRef`), the prompt built from its
    neighbours (itself excluded) and the caption to learn."""

    image: Any
    prompt: Prompt
    target: str
    image_id: str = ""


def _target_ids(tokenizer: Any, target: str, leading_space: bool) -> list[int]:
    text = (" " if leading_space else "") + clean_caption(target)
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [*ids, tokenizer.eos_token_id]


def encode_example(
    kind: GeneratorKind,
    processor: Any,
    model_config: Any,
    image: Image,
    example: TrainExample,
    size: dict[str, int],
) -> dict[str, torch.Tensor]:
    """Tensors for one example: input_ids, labels and the image inputs (no batch dimension)."""
    import torch

    tokenizer = processor.tokenizer
    if kind == "blip2-lora":
        prompt_ids = tokenizer(example.prompt.text)[
            "input_ids"
        ]  # with the BOS token, as at inference
        image_ids = [model_config.image_token_index] * model_config.num_query_tokens
        prefix = torch.tensor([*image_ids, *prompt_ids])
        pixels = processor.image_processor(image.convert("RGB"), return_tensors="pt")[
            "pixel_values"
        ]
        extra: dict[str, torch.Tensor] = {"pixel_values": pixels}
        target = torch.tensor(_target_ids(tokenizer, example.target, leading_space=True))
    else:
        chat = processor.apply_chat_template(
            example.prompt.messages, tokenize=False, add_generation_prompt=True
        )
        enc = processor(
            text=[chat],
            images=[image.convert("RGB")],
            return_tensors="pt",
            images_kwargs={"size": size},
        )
        prefix = enc["input_ids"][0]
        target = torch.tensor(_target_ids(tokenizer, example.target, leading_space=False))
        extra = {"pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}
        if "mm_token_type_ids" in enc:  # newer 5.x processors return them; M-RoPE reads them
            zeros = torch.zeros(len(target), dtype=torch.long)
            extra["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"][0], zeros])
    input_ids = torch.cat([prefix, target])
    labels = torch.cat([torch.full_like(prefix, IGNORE_INDEX), target])
    return {"input_ids": input_ids, "labels": labels, **extra}


def collate(
    kind: GeneratorKind, items: Sequence[dict[str, torch.Tensor]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-pad a list of encoded examples into one batch (pads are masked and unlabelled)."""
    import torch

    length = max(len(item["input_ids"]) for item in items)

    def pad(key: str, value: int) -> torch.Tensor:
        rows = [
            torch.nn.functional.pad(item[key], (0, length - len(item[key])), value=value)
            for item in items
        ]
        return torch.stack(rows)

    batch = {
        "input_ids": pad("input_ids", pad_id),
        "labels": pad("labels", IGNORE_INDEX),
        "attention_mask": torch.stack(
            [
                torch.cat(
                    [torch.ones(len(i["input_ids"])), torch.zeros(length - len(i["input_ids"]))]
                ).long()
                for i in items
            ]
        ),
    }
    batch["pixel_values"] = torch.cat([item["pixel_values"] for item in items])
    if kind == "qwen2-vl":
        batch["image_grid_thw"] = torch.cat([item["image_grid_thw"] for item in items])
        if "mm_token_type_ids" in items[0]:
            batch["mm_token_type_ids"] = pad("mm_token_type_ids", 0)
    return batch
