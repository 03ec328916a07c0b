"""Tokenizers trained here, offline, on phantom captions, saved in the real repositories' file
layouts: BERT WordPiece (BiomedBERT, BiomedCLIP), Qwen2 byte-level BPE with the special tokens
at Qwen2's real ids, and GPT-2/OPT byte-level BPE (BLIP-2's OPT, DeBERTa for BERTScore).

Only the vocabularies are small; file names, `tokenizer_class`, special tokens and their ids
are those of the published repositories, so medcap reads these folders exactly as it would
read copies of the real ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BERT_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4, as in BERT vocabularies
# Qwen2-VL's special tokens and their ids in Qwen/Qwen2-VL-2B-Instruct
QWEN2VL_SPECIAL = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647,
    "<|box_start|>": 151648,
    "<|box_end|>": 151649,
    "<|quad_start|>": 151650,
    "<|quad_end|>": 151651,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}
# OPT's (GPT-2 vocabulary) special tokens; BLIP-2 adds <image> at 50265
OPT_SPECIAL = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
BLIP2_IMAGE_TOKEN = ("<image>", 50265)


def phantom_captions(n: int = 300, seed: int = 0) -> list[str]:
    """ROCOv2-style captions of `n` phantom cases (attributes only, no images rendered)."""
    from medcap.data.phantoms.spec import sample_case
    from medcap.data.phantoms.text import write_caption

    captions = []
    for index in range(n):
        rng = np.random.default_rng([seed, index])
        captions.append(write_caption(sample_case(rng), rng))
    return captions


def _corpus(texts: Iterable[str]) -> list[str]:
    from medcap.generation.prompt import list_templates, load_template

    return [*texts, *(load_template(name) for name in list_templates()), "user assistant system"]


def _json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_wordpiece(folder: Path, texts: Iterable[str], *, fast: bool) -> int:
    """A lowercase BERT WordPiece tokenizer: vocab.txt, tokenizer_config.json,
    special_tokens_map.json (+ tokenizer.json when `fast`, as BiomedCLIP's repo has it).
    Returns the vocabulary size."""
    from tokenizers import BertWordPieceTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(
        _corpus(texts), vocab_size=2000, min_frequency=1, special_tokens=list(BERT_SPECIAL),
        show_progress=False,
    )  # fmt: skip
    tokenizer.save_model(str(folder))  # vocab.txt
    if fast:
        tokenizer.save(str(folder / "tokenizer.json"))
    special = dict(
        zip(
            ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"),
            BERT_SPECIAL,
            strict=True,
        )
    )
    _json(folder / "special_tokens_map.json", special)
    _json(
        folder / "tokenizer_config.json",
        {
            "do_lower_case": True,
            "do_basic_tokenize": True,
            "never_split": None,
            "strip_accents": None,
            "tokenize_chinese_chars": True,
            "model_max_length": 1000000000000000019884624838656,
            "tokenizer_class": "BertTokenizer",
            **special,
        },
    )
    return int(tokenizer.get_vocab_size())


def _byte_level_bpe(
    texts: Sequence[str], special: dict[str, int]
) -> tuple[Any, dict[str, int], list[str]]:
    """Train a byte-level BPE; returns (tokenizer with the specials at their ids, vocab, merges)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=800, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    base = Tokenizer(models.BPE())
    base.pre_tokenizer = byte_level
    base.train_from_iterator(_corpus(texts), trainer)
    # learnt tokens take the ids after the low specials (OPT's sit at 0..3), below the high ones
    start = max((i + 1 for i in special.values() if i < 1000), default=0)
    learnt_ids = base.get_vocab()
    ordered = sorted((t for t in learnt_ids if t not in special), key=learnt_ids.__getitem__)
    learnt = {t: i for i, t in enumerate(ordered, start=start)}
    model_json = json.loads(base.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model_json["merges"]]
    full = {**learnt, **special}
    tokenizer = Tokenizer(models.BPE(vocab=full, merges=[tuple(m.split(" ")) for m in merges]))
    tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    return tokenizer, learnt, merges


def _write_bpe_files(
    folder: Path, tokenizer: Any, vocab: dict[str, int], merges: list[str], *, fast: bool = True
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if fast:
        tokenizer.save(str(folder / "tokenizer.json"))
    _json(folder / "vocab.json", vocab)
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def _added_tokens(special: dict[str, int]) -> dict[str, Any]:
    flags = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    return {str(i): {"content": t, **flags, "special": True} for t, i in special.items()}


def write_qwen2_tokenizer(folder: Path, texts: Sequence[str], chat_template: str) -> None:
    """Qwen2-VL's tokenizer files: tokenizer.json, vocab.json, merges.txt,
    tokenizer_config.json (Qwen2Tokenizer, specials at the real ids) and chat_template.json."""
    tokenizer, vocab, merges = _byte_level_bpe(texts, QWEN2VL_SPECIAL)
    _write_bpe_files(folder, tokenizer, vocab, merges)
    _json(
        folder / "tokenizer_config.json",
        {
            "add_prefix_space": False,
            "added_tokens_decoder": _added_tokens(QWEN2VL_SPECIAL),
            "additional_special_tokens": [
                t for t in QWEN2VL_SPECIAL if t not in ("<|endoftext|>", "<|im_end|>")
            ],
            "bos_token": None,
            "chat_template": chat_template,
            "clean_up_tokenization_spaces": False,
            "eos_token": "<|im_end|>",
            "errors": "replace",
            "model_max_length": 32768,
            "pad_token": "<|endoftext|>",
            "padding_side": "left",
            "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer",
            "unk_token": None,
        },
    )
    _json(folder / "chat_template.json", {"chat_template": chat_template})


def write_gpt2_tokenizer(
    folder: Path,
    texts: Sequence[str],
    *,
    special: dict[str, int],
    roles: dict[str, str],
    template: tuple[str, str],
    config: dict[str, Any],
    fast: bool,
) -> None:
    """GPT-2 vocabulary style byte-level BPE files: vocab.json, merges.txt,
    tokenizer_config.json (`config` + the `roles` tokens), special_tokens_map.json, and
    tokenizer.json when `fast`. `template` is (first token, last token or "") put around
    every sequence, as OPT (`</s>` first) and DeBERTa (`[CLS]` ... `[SEP]`) do."""
    from tokenizers import processors

    tokenizer, vocab, merges = _byte_level_bpe(texts, special)
    first, last = template
    ends = [t for t in (first, last) if t]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=" ".join(t for t in (first, "$A", last) if t),
        pair=" ".join(t for t in (first, "$A", last, "$B", last) if t),
        special_tokens=[(t, special[t]) for t in dict.fromkeys(ends)],
    )
    low = {t: i for t, i in special.items() if i < 1000}
    _write_bpe_files(folder, tokenizer, {**vocab, **low}, merges, fast=fast)
    _json(folder / "special_tokens_map.json", roles)
    _json(
        folder / "tokenizer_config.json",
        {"added_tokens_decoder": _added_tokens(special), **config, **roles},
    )


def write_opt_tokenizer(folder: Path, texts: Sequence[str]) -> None:
    """BLIP-2 OPT's tokenizer files, with BLIP-2's <image> token (added_tokens.json too)."""
    image, image_id = BLIP2_IMAGE_TOKEN
    write_gpt2_tokenizer(
        folder,
        texts,
        special={**OPT_SPECIAL, image: image_id},
        roles={"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "</s>"},
        template=("</s>", ""),
        config={
            "add_bos_token": True,
            "add_prefix_space": False,
            "errors": "replace",
            "model_max_length": 1000000000000000019884624838656,
            "tokenizer_class": "GPT2Tokenizer",
        },
        fast=True,
    )
    _json(folder / "added_tokens.json", {image: image_id})


DEBERTA_SPECIAL = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3, "[MASK]": 50264}


def write_deberta_tokenizer(folder: Path, texts: Sequence[str]) -> None:
    """DeBERTa (v1, GPT-2 vocabulary) tokenizer files without tokenizer.json, as
    microsoft/deberta-xlarge-mnli has them: vocab.json, merges.txt, tokenizer_config.json."""
    roles = {
        "bos_token": "[CLS]", "eos_token": "[SEP]", "sep_token": "[SEP]", "cls_token": "[CLS]",
        "unk_token": "[UNK]", "pad_token": "[PAD]", "mask_token": "[MASK]",
    }  # fmt: skip
    write_gpt2_tokenizer(
        folder,
        texts,
        special=DEBERTA_SPECIAL,
        roles=roles,
        template=("[CLS]", "[SEP]"),
        config={
            "do_lower_case": False,
            "vocab_type": "gpt2",
            "tokenizer_class": "DebertaTokenizer",
        },
        fast=False,
    )
    (folder / "special_tokens_map.json").unlink()  # the real repository has none
