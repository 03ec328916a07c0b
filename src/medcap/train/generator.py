"""`medcap train generator`: LoRA-tune a generator backend on a split, prompts from an index.

Opens the dataset and the index, builds one training example per case (its neighbours in
the prompt, its caption as the target) and runs `medcap.train.lora.train_lora`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

from medcap.atomic import write_json_atomic
from medcap.config import DEFAULTS, GenerationConfig
from medcap.errors import InputError
from medcap.generation.captioning import (
    RecordSearch,
    build_training_examples,
    generator_model,
)
from medcap.generation.collate import GeneratorKind
from medcap.index.manifest import index_fingerprint
from medcap.locking import output_lock
from medcap.runs.identity import Identity, as_json, read_identity, refuse_difference
from medcap.train.lora import LoraResult, latest_checkpoint, lora_targets, train_lora

IDENTITY_FILE = "run_identity.json"  # beside the LoRA checkpoints: what they were trained on

log = logging.getLogger(__name__)


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
    verify: bool | None = None,
) -> LoraResult:
    """LoRA-tune generator `cfg.backend` on `cfg.train_split` of `data`; neighbours: `index_dir`.

    The validation loss is measured on up to `cfg.lora_eval_max_items` cases of
    `cfg.lora_eval_split` when `data` has that split. The run's identity (data, split, index,
    base model, prompt and LoRA settings) is kept in `out_dir/run_identity.json`; `resume`
    continues only a run with the same identity. `verify` checks the index files' checksums
    (default: IndexConfig.verify). Holds the output folder's lock (medcap.locking) throughout.
    """
    from medcap.data.readers import open_dataset

    if cfg.backend not in ("qwen2-vl", "blip2-lora"):
        raise InputError(
            f"cannot fine-tune backend {cfg.backend!r}; use --backend blip2-lora or qwen2-vl"
        )
    out = Path(out_dir)
    with output_lock(out):
        dataset = open_dataset(data)
        if cfg.train_split not in dataset.splits():
            raise InputError(
                f"{data} has no split {cfg.train_split!r}; it has {', '.join(dataset.splits())}"
            )
        kind: GeneratorKind = "qwen2-vl" if cfg.backend == "qwen2-vl" else "blip2-lora"
        identity = _identity(cfg, kind, dataset.fingerprint(), index_dir, model_id, limit)
        if resume and latest_checkpoint(out) is not None:
            fix = "resume with the same settings, or drop --resume to start over"
            recorded = read_identity(out / IDENTITY_FILE, f"the checkpoints in {out}")
            refuse_difference(recorded, identity, out, fix)
        records = list(islice(dataset.records(cfg.train_split), limit))
        if retriever is None:
            from medcap.retrieval.retriever import open_retriever

            searcher: RecordSearch = open_retriever(index_dir, device=cfg.device, verify=verify)
        else:
            searcher = retriever
        examples = build_training_examples(records, searcher, cfg)
        eval_examples = []
        if cfg.lora_eval_max_items > 0 and cfg.lora_eval_split in dataset.splits():
            held_out = islice(dataset.records(cfg.lora_eval_split), cfg.lora_eval_max_items)
            eval_examples = build_training_examples(list(held_out), searcher, cfg)
        elif cfg.lora_eval_max_items > 0:
            log.info("no validation loss: %s has no split %r", data, cfg.lora_eval_split)
        model, processor, model_id = load_generator(cfg.backend, cfg, model_id)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / IDENTITY_FILE, {"identity": identity})
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
            eval_examples=eval_examples,
        )


def _identity(
    cfg: GenerationConfig,
    kind: GeneratorKind,
    data_fingerprint: str,
    index_dir: str,
    model_id: str | None,
    limit: int | None,
) -> Identity:
    """What a generator run's checkpoints depend on (epochs and max steps may change)."""
    return as_json(
        {
            "data_fingerprint": data_fingerprint,
            "split": cfg.train_split,
            "index_fingerprint": index_fingerprint(Path(index_dir)),
            "backend": kind,
            "model": generator_model(replace(cfg, backend=kind), model_id),
            "template": cfg.template,
            "k": cfg.k,
            "limit": limit,
            "search_mode": cfg.search_mode,
            "lora": [cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout],
            "lora_targets": list(lora_targets(kind, cfg)),
            "batch_size": cfg.lora_batch_size,
            "lr": cfg.lora_lr,
            "seed": cfg.lora_seed,
        }
    )
