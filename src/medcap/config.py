"""Every project default, written once.

Precedence: these dataclass defaults, then an optional `medcap.toml` (one table per
section), then CLI flags. CLI options default to None, meaning "use the config".
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from medcap.errors import InputError

IndexType = Literal["auto", "flat", "hnsw", "ivfpq"]
SearchMode = Literal["captions", "images"]


@dataclass(frozen=True)
class DataConfig:
    """Dataset reading and the built-in phantom generator."""

    phantom_count: int = 2000
    phantom_seed: int = 0
    phantom_image_size: int = 128  # pixels per side of generated phantoms
    phantom_split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train/valid/test
    phantom_shard_rows: int = 1000  # rows per parquet shard written for phantoms
    image_column: str = "image"
    caption_column: str = "caption"
    id_column: str = "image_id"
    cui_column: str = "cui"
    split_column: str = "split"


@dataclass(frozen=True)
class EncoderConfig:
    """The CLIP encoder used for embedding."""

    model: str = "medcap-tiny"  # a spec: name[:tag] | hf-hub:org/repo | ckpt.pt | arch.json
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 64
    num_workers: int = 0  # DataLoader workers for image decoding
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU


@dataclass(frozen=True)
class TrainConfig:
    """Contrastive fine-tuning of the encoder."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 50
    grad_accum_steps: int = 1
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    grad_checkpointing: bool = False
    lock_image: bool = False
    lock_text: bool = False
    checkpoint_every_steps: int = 200
    num_workers: int = 0
    seed: int = 0
    max_minutes: float | None = None  # stop training after this wall time (None: no limit)
    eval_max_items: int = 1000  # validation pairs scored per epoch


@dataclass(frozen=True)
class IndexConfig:
    """Index directory builds."""

    split: str = "train"
    index_type: IndexType = "auto"
    batch_size: int = 64
    shard_size: int = 4096  # cases per float16 embedding shard (the unit of resume)
    memory_budget_gb: float = 4.0
    flat_max_vectors: int = 1_000_000  # `auto` uses an exact flat index up to this size
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    ivf_nprobe: int = 32


@dataclass(frozen=True)
class RetrievalConfig:
    """Search and retrieval evaluation."""

    k: int = 5
    mode: SearchMode = "captions"
    recall_ks: tuple[int, ...] = (1, 5, 10)
    sample_pairs: int | None = None  # e.g. 2000 for the PMC-CLIP protocol; None: whole split
    sample_seed: int = 0


@dataclass(frozen=True)
class GenerationConfig:
    """Retrieval-augmented caption generation."""

    backend: str = "consensus"
    k: int = 5
    template: str = "default"
    qwen2vl_model: str = "Qwen/Qwen2-VL-2B-Instruct"
    blip2_model: str = "Salesforce/blip2-opt-2.7b"
    max_new_tokens: int = 128
    batch_size: int = 16
    checkpoint_every: int = 50  # images between result-file flushes in batch captioning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05


@dataclass(frozen=True)
class EvalConfig:
    """Caption metrics, concept detection and reports."""

    imageclef_preprocess: bool = False
    concept_k: int = 33
    concept_threshold: float = 0.3
    example_queries: int = 6


@dataclass(frozen=True)
class MedcapConfig:
    """The root config: one section per stage."""

    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


DEFAULTS = MedcapConfig()

T = TypeVar("T")


def replace_set(section: T, **overrides: Any) -> T:
    """Return `section` with every override that is not None applied."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(section, **given) if given else section  # type: ignore[type-var]


def load_config(path: str | Path | None = None) -> MedcapConfig:
    """Read `medcap.toml` (or `path`) over the defaults; unknown keys are an error."""
    if path is None:
        path = Path("medcap.toml")
        if not path.exists():
            return DEFAULTS
    path = Path(path)
    if not path.exists():
        raise InputError(f"config file {path} does not exist; pass an existing medcap.toml")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    sections: dict[str, Any] = {}
    for name, table in raw.items():
        current = getattr(DEFAULTS, name, None)
        if current is None or not isinstance(table, dict):
            valid = ", ".join(f.name for f in dataclasses.fields(MedcapConfig))
            raise InputError(f"{path}: unknown section [{name}]; valid sections: {valid}")
        known = {f.name for f in dataclasses.fields(current)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise InputError(f"{path}: unknown keys {unknown} in [{name}]; valid: {sorted(known)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
        sections[name] = dataclasses.replace(current, **values)
    return dataclasses.replace(DEFAULTS, **sections)


def dump_config(config: Any, path: str | Path) -> None:
    """Write a config (any dataclass) as JSON next to a run's outputs."""
    Path(path).write_text(json.dumps(dataclasses.asdict(config), indent=2, default=str) + "\n")
