"""Training inputs for the generators: prompt + target caption, loss masked over the prompt.

Each example is tokenised exactly as its backend does at inference time (the backend's
`encode_example`: BLIP-2's query tokens, Qwen2-VL's chat template with its visual tokens),
then the target caption and an end-of-sequence token are appended. Labels are -100
everywhere except on the target, so only the caption is learnt (SmallCap's masked prompt).
This module holds what every backend shares; `encode_example` and `collate` dispatch to
the backend registered under the given name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medcap.config import DEFAULTS, GenerationConfig
from medcap.generation.prompt import Prompt, clean_caption

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

IGNORE_INDEX = -100  # label value that cross-entropy skips


@dataclass(frozen=True)
class TrainExample:
    """One training case: its image (PIL image or an `ImageRef`), the prompt built from its
    neighbours (itself excluded) and the caption to learn."""

    image: Any
    prompt: Prompt
    target: str
    image_id: str = ""


def target_ids(tokenizer: Any, target: str, leading_space: bool) -> list[int]:
    """Token ids of the caption to learn, ending with the end-of-sequence token."""
    text = (" " if leading_space else "") + clean_caption(target)
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [*ids, tokenizer.eos_token_id]


def with_target(
    prefix: torch.Tensor, target: torch.Tensor, extra: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """input_ids = prefix + target; labels mask the prefix (IGNORE_INDEX)."""
    import torch

    input_ids = torch.cat([prefix, target])
    labels = torch.cat([torch.full_like(prefix, IGNORE_INDEX), target])
    return {"input_ids": input_ids, "labels": labels, **extra}


def pad_items(items: Sequence[dict[str, torch.Tensor]], key: str, value: int) -> torch.Tensor:
    """Right-pad the 1-d tensors `items[i][key]` to the longest and stack them."""
    import torch

    length = max(len(item["input_ids"]) for item in items)
    rows = [
        torch.nn.functional.pad(item[key], (0, length - len(item[key])), value=value)
        for item in items
    ]
    return torch.stack(rows)


def collate_text(items: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """The batch parts every backend shares: input_ids, labels, attention_mask, pixel_values."""
    import torch

    length = max(len(item["input_ids"]) for item in items)
    return {
        "input_ids": pad_items(items, "input_ids", pad_id),
        "labels": pad_items(items, "labels", IGNORE_INDEX),
        "attention_mask": torch.stack(
            [
                torch.cat(
                    [torch.ones(len(i["input_ids"])), torch.zeros(length - len(i["input_ids"]))]
                ).long()
                for i in items
            ]
        ),
        "pixel_values": torch.cat([item["pixel_values"] for item in items]),
    }


def encode_example(
    backend: str,
    processor: Any,
    model_config: Any,
    image: Image,
    example: TrainExample,
    cfg: GenerationConfig = DEFAULTS.generation,
) -> dict[str, torch.Tensor]:
    """Tensors for one example of `backend`: input_ids, labels and image inputs (no batch dim)."""
    from medcap.generation.backends.base import backend_class

    return backend_class(backend).encode_example(processor, model_config, image, example, cfg)


def collate(
    backend: str, items: Sequence[dict[str, torch.Tensor]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-pad a list of encoded examples of `backend` into one batch."""
    from medcap.generation.backends.base import backend_class

    return backend_class(backend).collate(items, pad_id)
