"""`medcap train generator`: LoRA-tune a generator backend on a split, prompts from an index.

Opens the dataset and the index, builds one training example per case (its neighbours in
the prompt, its caption as the target) and runs `medcap.train.lora.train_lora`.
"""

from __future__ import annotations

import logging
from itertools import islice
from pathlib import Path
from typing import Any

from medcap.atomic import write_json_atomic
from medcap.config import DEFAULTS, DataConfig, GenerationConfig, current
from medcap.errors import InputError
from medcap.generation.backends.base import backend_class, not_fine_tunable
from medcap.generation.captioning import (
    RecordSearch,
    build_training_examples,
    generator_model,
    template_of,
)
from medcap.index.manifest import index_fingerprint
from medcap.locking import output_lock
from medcap.runs.identity import Identity, as_json, read_identity, refuse_difference
from medcap.train.lora import LoraResult, lora_targets, train_lora
from medcap.train.lora_checkpoint import latest_checkpoint

IDENTITY_FILE = "run_identity.json"  # beside the LoRA checkpoints: what they were trained on

log = logging.getLogger(__name__)


def load_generator(
    kind: str, cfg: GenerationConfig, model_id: str | None = None
) -> tuple[Any, Any, str]:
    """(model, processor, model id) of the base model a generator backend fine-tunes."""
    from medcap.devices import resolve_device
    from medcap.generation.backends import hf

    backend = backend_class(kind)
    if not backend.lora_targets:
        raise InputError(not_fine_tunable(kind))
    hf.require_transformers()
    device = resolve_device(cfg.device)
    dtype = hf.resolve_dtype(cfg.dtype, device)
    model_id = model_id or backend.default_model
    model, processor = backend.load(model_id, cfg, device, dtype)
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
    data_cfg: DataConfig | None = None,
) -> LoraResult:
    """LoRA-tune generator `cfg.backend` on `cfg.train_split` of `data`; neighbours: `index_dir`.

    The validation loss is measured on up to `cfg.lora_eval_max_items` cases of
    `cfg.lora_eval_split` when `data` has that split. The run's identity (data, split, index,
    base model, prompt and LoRA settings) is kept in `out_dir/run_identity.json`; `resume`
    continues only a run with the same identity. `verify` checks the index files' checksums
    (default: IndexConfig.verify); `data_cfg` says how `data` is read (default: the active
    config's DataConfig). Holds the output folder's lock (medcap.locking) throughout.
    """
    from medcap.data.readers import open_dataset

    if not backend_class(cfg.backend).lora_targets:
        raise InputError(not_fine_tunable(cfg.backend))
    out = Path(out_dir)
    with output_lock(out):
        dataset = open_dataset(data, cfg=data_cfg or current().data)
        if cfg.train_split not in dataset.splits():
            raise InputError(
                f"{data} has no split {cfg.train_split!r}; it has {', '.join(dataset.splits())}"
            )
        identity = _identity(cfg, dataset.fingerprint(), index_dir, model_id, limit)
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
            kind=cfg.backend,
            cfg=cfg,
            base_model=model_id,
            resume=resume,
            progress=progress,
            eval_examples=eval_examples,
        )


def _identity(
    cfg: GenerationConfig,
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
            "backend": cfg.backend,
            "model": generator_model(cfg, model_id),
            "template": template_of(cfg),
            "k": cfg.k,
            "limit": limit,
            "search_mode": cfg.search_mode,
            "lora": [cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout],
            "lora_targets": list(lora_targets(cfg.backend, cfg)),
            "batch_size": cfg.lora_batch_size,
            "lr": cfg.lora_lr,
            "seed": cfg.lora_seed,
        }
    )
