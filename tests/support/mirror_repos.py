"""Folders that mirror the real hub repositories medcap loads, built here with random weights.

Each writer produces the published repository's file names and config fields (checked
against the public repositories: see the comments), shrunk only in width and depth unless
`size="real"`; the tokenizers are trained here (tests.support.mirror_tokenizers). A bundle
is written as `medcap fetch` writes one (tests.support.mirror_bundle). Nothing is downloaded.

- microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224: open_clip_config.json,
  open_clip_pytorch_model.bin (a state dict saved by torch), tokenizer.json,
  tokenizer_config.json, special_tokens_map.json, vocab.txt;
- microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract (the text model it names):
  config.json, vocab.txt, tokenizer_config.json, special_tokens_map.json;
- Qwen/Qwen2-VL-2B-Instruct: config.json, generation_config.json, preprocessor_config.json,
  chat_template.json, tokenizer.json, tokenizer_config.json, vocab.json, merges.txt,
  model-0000N-of-00002.safetensors + model.safetensors.index.json;
- Salesforce/blip2-opt-2.7b: the same shape with processor_config.json, added_tokens.json and
  special_tokens_map.json;
- microsoft/deberta-xlarge-mnli (BERTScore): config.json, pytorch_model.bin, vocab.json,
  merges.txt, tokenizer_config.json.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from tests.support.mirror_tokenizers import (
    BLIP2_IMAGE_TOKEN,
    OPT_SPECIAL,
    QWEN2VL_SPECIAL,
    write_deberta_tokenizer,
    write_opt_tokenizer,
    write_qwen2_tokenizer,
    write_wordpiece,
)

Size = Literal["tiny", "real"]
BIOMEDCLIP_ID = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
BIOMEDBERT_ID = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
QWEN2VL_ID = "Qwen/Qwen2-VL-2B-Instruct"
BLIP2_ID = "Salesforce/blip2-opt-2.7b"
BERTSCORE_ID = "microsoft/deberta-xlarge-mnli"
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]


def _json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def id_folder(root: Path, repo: str) -> Path:
    """`root/<org>--<name>`: where a snapshot ships the text model it names."""
    return root / repo.replace("/", "--")


# ---- BiomedCLIP and its text model --------------------------------------------------------
def biomedbert_config(size: Size) -> dict[str, Any]:
    """BiomedBERT's config.json (BERT-base: 768 wide, 12 layers; tiny: 32 wide, 2 layers)."""
    width, layers, heads = (768, 12, 12) if size == "real" else (32, 2, 2)
    return {
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": width,
        "initializer_range": 0.02,
        "intermediate_size": 4 * width,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "vocab_size": 30522,
    }


def biomedclip_config(size: Size) -> dict[str, Any]:
    """BiomedCLIP's open_clip_config.json: timm vit_base_patch16_224 (tiny: the same ViT-B/16
    family at width 192, vit_tiny_patch16_224), the BiomedBERT text tower by hub id with an
    mlp projection and the CLS last-hidden-state pooler, context 256, OpenAI mean/std."""
    timm_name = "vit_base_patch16_224" if size == "real" else "vit_tiny_patch16_224"
    return {
        "model_cfg": {
            "embed_dim": 512 if size == "real" else 64,
            "vision_cfg": {
                "timm_model_name": timm_name,
                "timm_model_pretrained": False,
                "timm_pool": "",
                "timm_proj": "linear",
                "image_size": 224,
            },
            "text_cfg": {
                "hf_model_name": BIOMEDBERT_ID,
                "hf_tokenizer_name": BIOMEDBERT_ID,
                "hf_proj_type": "mlp",
                "hf_pooler_type": "cls_last_hidden_state_pooler",
                "context_length": 256,
            },
        },
        "preprocess_cfg": {"mean": OPENAI_MEAN, "std": OPENAI_STD},
    }


def write_biomedbert(folder: Path, texts: list[str], size: Size = "tiny") -> Path:
    """The BiomedBERT folder open_clip's text tower reads (config and tokenizer only: the
    tower's weights are in BiomedCLIP's checkpoint)."""
    write_wordpiece(folder, texts, fast=False)
    _json(folder / "config.json", biomedbert_config(size))
    return folder


def write_biomedclip(
    folder: Path,
    text_model: Path,
    texts: list[str],
    *,
    size: Size = "tiny",
    seed: int = 0,
    safetensors: bool = False,
) -> Path:
    """A BiomedCLIP snapshot with random weights (tower names as in the real checkpoint),
    built with `text_model` (a write_biomedbert folder) standing in for the hub id."""
    import open_clip
    import torch

    raw = biomedclip_config(size)
    cfg = json.loads(json.dumps(raw["model_cfg"]))
    cfg["text_cfg"].update(hf_model_name=str(text_model), hf_model_pretrained=False)
    torch.manual_seed(seed)
    model = open_clip.CustomTextCLIP(**cfg)
    state = model.state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    if safetensors:
        from safetensors.torch import save_file

        save_file(
            {k: v.contiguous() for k, v in state.items()}, folder / "open_clip_model.safetensors"
        )
    else:
        torch.save(state, folder / "open_clip_pytorch_model.bin")
    del model, state
    _json(folder / "open_clip_config.json", raw)
    write_wordpiece(folder, texts, fast=True)
    return folder


def write_clip_snapshot(
    folder: Path, model: Any, architecture: str, preprocess: dict[str, Any] | None = None
) -> Path:
    """An open_clip snapshot of an open_clip `model` whose config is the built-in
    `architecture` (as open_clip's push_to_hub writes one), weights as .bin."""
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": open_clip.get_model_config(architecture)}
    if preprocess:
        config["preprocess_cfg"] = preprocess
    _json(folder / "open_clip_config.json", config)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


# ---- generators ----------------------------------------------------------------------------
# A ChatML template with one vision block per image item and a default system turn, the shape
# of Qwen2-VL's own (written here, not copied).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in item %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen2vl_config() -> dict[str, Any]:
    """Qwen2-VL-2B-Instruct's config.json in its published (transformers 4.41) form, shrunk
    in width (hidden 1536 -> 32, vision 1280 -> 32) and depth (28 -> 2, vision 32 -> 1)."""
    ids = QWEN2VL_SPECIAL
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "hidden_act": "silu",
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 32768,
        "max_window_layers": 2,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.41.2",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "depth": 1,
            "embed_dim": 32,
            "mlp_ratio": 4,
            "num_heads": 4,
            "in_chans": 3,
            "hidden_size": 32,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},  # sums to head_dim/2
        "vocab_size": 151936,
    }


def _save_sharded(model: Any, folder: Path, shard_mb: float) -> None:
    """model-0000N-of-0000M.safetensors + model.safetensors.index.json, as on the hub; the
    config files written beside them stay the mirrored ones."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        model.save_pretrained(tmp, max_shard_size=f"{shard_mb}MB")
        for path in Path(tmp).glob("model*.safetensors*"):
            shutil.move(str(path), folder / path.name)


def write_qwen2vl(folder: Path, texts: list[str], *, seed: int = 0) -> Path:
    """A Qwen2-VL-2B-Instruct mirror with random weights in two safetensors shards."""
    import torch
    from transformers import AutoConfig, Qwen2VLForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    write_qwen2_tokenizer(folder, texts, QWEN_CHAT_TEMPLATE)
    _json(folder / "config.json", qwen2vl_config())
    eos = [QWEN2VL_SPECIAL["<|im_end|>"], QWEN2VL_SPECIAL["<|endoftext|>"]]
    _json(
        folder / "generation_config.json",
        {"bos_token_id": QWEN2VL_SPECIAL["<|endoftext|>"], "pad_token_id": eos[1],
         "do_sample": True, "eos_token_id": eos, "temperature": 0.01, "top_k": 1, "top_p": 0.001,
         "transformers_version": "4.41.2"},
    )  # fmt: skip
    _json(
        folder / "preprocessor_config.json",
        {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14,
         "temporal_patch_size": 2, "merge_size": 2, "image_mean": OPENAI_MEAN,
         "image_std": OPENAI_STD, "image_processor_type": "Qwen2VLImageProcessor",
         "processor_class": "Qwen2VLProcessor"},
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(AutoConfig.from_pretrained(folder))
    _save_sharded(model, folder, 6)
    return folder


def blip2_config() -> dict[str, Any]:
    """blip2-opt-2.7b's config.json, shrunk in width (vision 1408, Q-Former 768, OPT 2560 ->
    32) and depth (39, 12, 32 -> 1-2); vocabularies, query tokens and image size as published."""
    image_token = BLIP2_IMAGE_TOKEN[1]
    return {
        "architectures": ["Blip2ForConditionalGeneration"],
        "model_type": "blip-2",
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "num_query_tokens": 32,
        "image_token_index": image_token,
        "use_decoder_only_language_model": True,
        "torch_dtype": "float32",
        "vision_config": {
            "model_type": "blip_2_vision_model", "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 4, "image_size": 224,
            "patch_size": 14, "layer_norm_eps": 1e-6, "qkv_bias": True,
        },
        "qformer_config": {
            "model_type": "blip_2_qformer", "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 4, "intermediate_size": 64, "vocab_size": 30522,
            "encoder_hidden_size": 32, "cross_attention_frequency": 2,
            "max_position_embeddings": 512,
        },
        "text_config": {
            "_name_or_path": "facebook/opt-2.7b", "architectures": ["OPTForCausalLM"],
            "model_type": "opt", "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "word_embed_proj_dim": 32, "max_position_embeddings": 2048,
            "vocab_size": 50304, "activation_function": "relu", "do_layer_norm_before": True,
            "enable_bias": True, "prefix": "</s>", "bos_token_id": OPT_SPECIAL["</s>"],
            "eos_token_id": OPT_SPECIAL["</s>"], "pad_token_id": OPT_SPECIAL["<pad>"],
        },
    }  # fmt: skip


def write_blip2(folder: Path, texts: list[str], *, seed: int = 0) -> Path:
    """A blip2-opt-2.7b mirror with random weights in two safetensors shards."""
    import torch
    from transformers import AutoConfig, Blip2ForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    write_opt_tokenizer(folder, texts)
    _json(folder / "config.json", blip2_config())
    _json(
        folder / "preprocessor_config.json",
        {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
         "image_mean": OPENAI_MEAN, "image_std": OPENAI_STD,
         "image_processor_type": "BlipImageProcessor", "processor_class": "Blip2Processor",
         "resample": 3, "rescale_factor": 0.00392156862745098,
         "size": {"height": 224, "width": 224}},
    )  # fmt: skip
    _json(
        folder / "processor_config.json",
        {"num_query_tokens": 32, "processor_class": "Blip2Processor"},
    )
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(AutoConfig.from_pretrained(folder))
    _save_sharded(model, folder, 2)
    return folder


# ---- BERTScore model -------------------------------------------------------------------------
def deberta_config() -> dict[str, Any]:
    """deberta-xlarge-mnli's config.json, shrunk in width (1024 -> 32) and depth (48 -> 2)."""
    return {
        "architectures": ["DebertaForSequenceClassification"],
        "model_type": "deberta",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "layer_norm_eps": 1e-7,
        "max_position_embeddings": 512,
        "max_relative_positions": -1,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "pos_att_type": "p2c|c2p",
        "position_biased_input": False,
        "relative_attention": True,
        "type_vocab_size": 0,
        "vocab_size": 50265,
        "id2label": {"0": "CONTRADICTION", "1": "NEUTRAL", "2": "ENTAILMENT"},
        "label2id": {"CONTRADICTION": 0, "ENTAILMENT": 2, "NEUTRAL": 1},
    }


def write_bertscore_model(folder: Path, texts: list[str], *, seed: int = 0) -> Path:
    """A deberta-xlarge-mnli mirror with random weights (pytorch_model.bin, saved by torch)."""
    import torch
    from transformers import AutoConfig, DebertaForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    write_deberta_tokenizer(folder, texts)
    _json(folder / "config.json", deberta_config())
    torch.manual_seed(seed)
    model = DebertaForSequenceClassification(AutoConfig.from_pretrained(folder))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder
