"""`medcap train generator`: LoRA-tune a generator backend on a split, prompts from an index.

Opens the dataset and the index, builds one training example per case (its neighbours in
the prompt, its caption as the target) and runs `medcap.train.lora.train_lora`.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

from medcap.config import DEFAULTS, DataConfig, GenerationConfig
from medcap.errors import InputError
from medcap.generation.captioning import RecordSearch, build_training_examples
from medcap.generation.collate import GeneratorKind
from medcap.train.lora import LoraResult, train_lora


def load_generator(
    kind: str, cfg: GenerationConfig, model_id: str | None = None
) -> tuple[Any, Any, str]:
    """(model, processor, model id) of the base model a generator backend fine-tunes."""
    from medcap.devices import resolve_device
    from medcap.generation.backends import hf

    hf.require_transformers()
    device = resolve_device(cfg.device)
    dtype = hf.resolve_dtype(cfg.dtype, device)
    if kind == "qwen2-vl":
        from medcap.generation.backends.qwen2vl import load_qwen2vl

        model_id = model_id or cfg.qwen2vl_model
        model, processor = load_qwen2vl(model_id, cfg, device, dtype)
    elif kind == "blip2-lora":
        from medcap.generation.backends.blip2_lora import load_blip2

        model_id = model_id or cfg.blip2_model
        model, processor = load_blip2(model_id, cfg, device, dtype)
    else:
        raise InputError(f"cannot fine-tune backend {kind!r}; use --backend blip2-lora or qwen2-vl")
    return model, processor, model_id


def train_generator(
    data: str,
    index_dir: str,
    out_dir: str | Path,
    cfg: GenerationConfig = DEFAULTS.generation,
    *,
    model_id: str | None = None,
    resume: bool = False,
    limit: int | None = None,
    progress: bool = True,
    retriever: RecordSearch | None = None,
    data_config: DataConfig | None = None,
) -> LoraResult:
    """LoRA-tune generator `cfg.backend` on `cfg.train_split` of `data`; neighbours: `index_dir`."""
    from medcap.data.readers import open_dataset

    if cfg.backend not in ("qwen2-vl", "blip2-lora"):
        raise InputError(
            f"cannot fine-tune backend {cfg.backend!r}; use --backend blip2-lora or qwen2-vl"
        )
    dataset = open_dataset(data, config=data_config)
    if cfg.train_split not in dataset.splits():
        raise InputError(
            f"{data} has no split {cfg.train_split!r}; it has {', '.join(dataset.splits())}"
        )
    records = list(islice(dataset.records(cfg.train_split), limit))
    if retriever is None:
        from medcap.retrieval.retriever import open_retriever

        searcher: RecordSearch = open_retriever(index_dir, device=cfg.device)
    else:
        searcher = retriever
    examples = build_training_examples(records, searcher, cfg)
    model, processor, model_id = load_generator(cfg.backend, cfg, model_id)
    kind: GeneratorKind = "qwen2-vl" if cfg.backend == "qwen2-vl" else "blip2-lora"
    return train_lora(
        model,
        processor,
        examples,
        out_dir,
        kind=kind,
        cfg=cfg,
        base_model=model_id,
        resume=resume,
        progress=progress,
    )
