"""Tiny, randomly initialised Qwen2-VL and BLIP-2 models with a locally trained word tokenizer.

Nothing is downloaded: the configs are written here (hidden size 32, 1-2 layers, in the style
of transformers' ModelTester) and the tokenizer is a word-level vocabulary learnt from the
given texts (e.g. phantom captions) plus the prompt templates, with the chat template and
the image special tokens added. The real processors (`Qwen2VLProcessor`, `Blip2Processor`)
are built around it, so the backends and LoRA training run exactly as with real checkpoints.
Tests and the GPU speed benchmark (the Qwen2-VL-2B architecture with random weights) use
these builders; they are test support, not part of the installed package.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from medcap.generation.prompt import list_templates, load_template

QWEN_SPECIAL = (
    "<pad>",
    "<unk>",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
BLIP2_SPECIAL = ("<pad>", "<unk>", "</s>", "<image>")

# A Qwen-style chat template (ChatML with a vision block per image item).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_word_tokenizer(texts: Iterable[str], kind: Literal["qwen2-vl", "blip2"]) -> Any:
    """A lowercase word-level `PreTrainedTokenizerFast` learnt from `texts` and the templates."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = QWEN_SPECIAL if kind == "qwen2-vl" else BLIP2_SPECIAL
    corpus = [*texts, *(load_template(name) for name in list_templates()), "user assistant system"]
    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=list(special)))
    if kind == "qwen2-vl":
        return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
            tokenizer_object=core,
            unk_token="<unk>",
            pad_token="<pad>",
            eos_token="<|im_end|>",
            chat_template=CHAT_TEMPLATE,
        )
    # OPT starts every sequence with </s> as its BOS token.
    core.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A $B", special_tokens=[("</s>", core.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="</s>",
        bos_token="</s>",
    )


def _padded(n: int, multiple: int = 8) -> int:
    return -(-n // multiple) * multiple


def build_qwen2vl_processor(
    texts: Iterable[str], *, min_pixels: int = 56 * 56, max_pixels: int = 112 * 112
) -> Any:
    """A real `Qwen2VLProcessor` around a local word tokenizer (patch 14, merge 2)."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    tokenizer = build_word_tokenizer(texts, "qwen2-vl")
    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    return Qwen2VLProcessor(  # type: ignore[no-untyped-call]
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def qwen2vl_config(tokenizer: Any, *, size: Literal["tiny", "2b"] = "tiny") -> Any:
    """A Qwen2-VL config whose special-token ids are the tokenizer's.

    `tiny`: hidden 32, 2 layers (mrope_section sums to head_dim / 2 = 4). `2b`: the published
    Qwen2-VL-2B sizes (28 layers, hidden 1536, 675M-parameter vision tower, vocab 151,936),
    for speed measurements with random weights.
    """
    from transformers import Qwen2VLConfig

    ids = tokenizer.convert_tokens_to_ids
    special = {
        "bos_token_id": ids("<|endoftext|>"),
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<pad>"),
    }
    if size == "tiny":
        text = {
            "vocab_size": _padded(len(tokenizer)),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [1, 1, 2],
            },
        }
        vision = {"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 4, "mlp_ratio": 2}
        tie = False
    else:
        text = {
            "vocab_size": max(151_936, _padded(len(tokenizer))),
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": [16, 24, 24],
            },
        }
        vision = {
            "depth": 32,
            "embed_dim": 1280,
            "hidden_size": 1536,
            "num_heads": 16,
            "mlp_ratio": 4,
        }
        tie = True
    vision |= {
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "in_channels": 3,
    }
    return Qwen2VLConfig(
        text_config={**text, **special},
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=tie,
    )


def build_tiny_qwen2vl(texts: Iterable[str], *, seed: int = 0) -> tuple[Any, Any]:
    """(model, processor): a random tiny Qwen2-VL (~90k parameters) and its processor."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    processor = build_qwen2vl_processor(texts)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(qwen2vl_config(processor.tokenizer))
    return model.eval(), processor  # type: ignore[no-untyped-call]


def build_tiny_blip2(
    texts: Iterable[str], *, seed: int = 0, image_size: int = 32
) -> tuple[Any, Any]:
    """(model, processor): a random tiny BLIP-2 with an OPT decoder (~60k parameters)."""
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        OPTConfig,
    )

    tokenizer = build_word_tokenizer(texts, "blip2")
    ids = tokenizer.convert_tokens_to_ids
    vocab = _padded(len(tokenizer))
    num_query_tokens = 4
    text = OPTConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        ffn_dim=64,
        num_attention_heads=4,
        max_position_embeddings=512,
        word_embed_proj_dim=32,
        pad_token_id=ids("<pad>"),
        bos_token_id=ids("</s>"),
        eos_token_id=ids("</s>"),
    )
    config = Blip2Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "image_size": image_size,
            "patch_size": 8,
        },
        qformer_config={
            "vocab_size": vocab,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
        },
        text_config=text,
        num_query_tokens=num_query_tokens,
        image_token_index=ids("<image>"),
    )
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    processor = Blip2Processor(  # type: ignore[no-untyped-call]
        image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=num_query_tokens
    )
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config)
    return model.eval(), processor  # type: ignore[no-untyped-call]
