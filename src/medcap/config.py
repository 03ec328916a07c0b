"""Every project default, written once.

CLI options default to None, meaning "use the default here"; the help of each option
shows it. Runs write their resolved settings (`dump_config`) next to their outputs.
"""

from __future__ import annotations

import dataclasses
import json
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
    info_max_images: int | None = None  # images decoded per split by `data info` (None: all)


@dataclass(frozen=True)
class EncoderConfig:
    """The CLIP encoder used for embedding."""

    model: str = "medcap-tiny"  # a spec: name[:tag] | hf-hub:org/repo | ckpt.pt | arch.json
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 64
    num_workers: int = 0  # DataLoader workers for image decoding
    # auto: JPEG/PNG decoded on the device (nvjpeg) under CUDA, by Pillow in workers on the CPU
    image_decode: Literal["auto", "workers", "device"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    init_seed: int = 0  # random-init specs (a name without tag, an architecture JSON) are seeded
    hub_probe_timeout_s: float = 3.0  # how long to wait for the hub before calling it offline


@dataclass(frozen=True)
class TrainConfig:
    """Contrastive fine-tuning of the encoder."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3  # for medcap-tiny from scratch; fine-tuning pretrained CLIP wants ~1e-5
    weight_decay: float = 0.1
    warmup_steps: int = 30
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
    max_steps: int | None = None  # cap on optimizer steps; also the length of the lr schedule
    min_lr_ratio: float = 0.0  # cosine decay ends at lr * min_lr_ratio
    logit_scale_max: float = 100.0  # CLIP clamps exp(logit_scale) at 100
    log_every_steps: int = 10  # train-loss lines in metrics.jsonl
    device: str = "auto"  # auto | cpu | cuda | cuda:N (torchrun sets the local GPU)
    cache_max_gb: float = 2.0  # decoded uint8 images kept in memory up to this; else per epoch
    augment: bool = True  # radiology augmentation: mild crop, rotation, intensity; no flips
    aug_min_scale: float = 0.8  # random resized crop keeps at least this share of the area
    aug_max_rotate_deg: float = 7.0
    aug_brightness: float = 0.15  # +- fraction
    aug_contrast: float = 0.15  # +- fraction
    num_threads: int | None = None  # torch CPU threads while training (None: torch's default)


@dataclass(frozen=True)
class IndexConfig:
    """Index directory builds."""

    split: str = "train"
    index_type: IndexType = "auto"
    batch_size: int = 64
    shard_size: int = 2048  # cases per float16 embedding shard (the unit of resume)
    memory_budget_gb: float = 4.0
    flat_max_vectors: int = 1_000_000  # `auto` uses an exact flat index up to this size
    hnsw_m: int = 32
    hnsw_ef_search: int = 256
    ivf_nprobe: int = 32
    ivf_rerank_factor: int = 16  # ivfpq: rescore k*factor candidates from the float16 shards
    thumbnail_size: int = 128  # pixels, longest side of stored case thumbnails; 0: none
    search_device: str = "auto"  # auto: faiss-gpu, else torch on CUDA (flat), else faiss-cpu
    half_scan_max_queries: int = 4  # flat on CPU: batches this small scan a float16 copy; 0: off
    half_scan_max_mb: int = 512  # ... unless that copy (n * d * 2 bytes per index) is larger


@dataclass(frozen=True)
class RetrievalConfig:
    """Search and retrieval evaluation."""

    k: int = 5
    mode: SearchMode = "captions"  # for image queries: captions (image->text) | images
    text_mode: SearchMode = "images"  # for text queries: images (text->image) | captions
    recall_ks: tuple[int, ...] = (1, 5, 10)
    sample_pairs: int | None = None  # e.g. 2000 for the PMC-CLIP protocol; None: whole split
    sample_seed: int = 0
    same_caption_relevant: bool = False  # every case with an identical caption counts as a hit
    rank_ties: Literal["pessimistic", "optimistic"] = "pessimistic"  # equal scores rank first/last


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
    search_mode: SearchMode = "captions"  # neighbours by image->caption or image->image search
    modality_hint: str | None = None  # e.g. "CT": added to the prompt when the template has {hint}
    consensus_similarity: Literal["cider-d", "token-f1"] = "cider-d"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    attn_implementation: str = "sdpa"  # eager | sdpa | flash_attention_2 (GPU only)
    min_pixels: int = 56 * 56  # Qwen2-VL image resize bounds; 28x28 pixels per visual token
    max_pixels: int = 448 * 448  # 448x448 -> 256 visual tokens
    static_cache: bool = False  # generate with a static KV cache (GPU speed path)
    pad_to_multiple_of: int = 64  # static cache: prompt lengths rounded up so shapes repeat
    num_beams: int = 1
    blip2_lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")  # OPT layers
    qwen2vl_lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # LM layers
    lora_lr: float = 1e-4
    lora_epochs: int = 3
    lora_batch_size: int = 4
    lora_max_steps: int | None = None  # cap on optimizer steps (None: run all epochs)
    lora_checkpoint_every: int = 100  # optimizer steps between resumable checkpoints
    lora_seed: int = 0
    train_split: str = "train"  # split whose cases the generator is fine-tuned on
    split: str = "test"  # split captioned by `medcap caption --data`
    train_backend: str = "blip2-lora"  # generator that `medcap train generator` fine-tunes
    blip2_template: str = "smallcap"  # OPT continues text: blip2-lora's template unless given

    def __post_init__(self) -> None:
        for name in ("k", "batch_size", "checkpoint_every", "max_new_tokens", "lora_batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"generation.{name} must be >= 1, got {getattr(self, name)}")
        if self.min_pixels > self.max_pixels:
            raise InputError("generation.min_pixels must not exceed generation.max_pixels")


@dataclass(frozen=True)
class EvalConfig:
    """Caption metrics, concept detection and reports."""

    split: str = "test"  # split scored by `medcap eval retrieval|concepts`
    imageclef_preprocess: bool = False
    concept_k: int = 33  # neighbours voting on each query's concepts (ImageCLEF winners used 33)
    concept_threshold: float = 0.3  # share of the similarity-weighted vote a concept needs
    concept_mode: SearchMode = "images"  # neighbours by image->image or image->caption search
    meteor: bool = True  # METEOR runs the METEOR 1.5 jar (needs Java and pycocoevalcap)
    bertscore_model: str = "microsoft/deberta-xlarge-mnli"  # ImageCLEF 2023; must be local
    bertscore_num_layers: int | None = None  # None: bert_score's default for known models
    bertscore_batch_size: int = 16
    clipscore_weight: float = 2.5  # Hessel et al. 2021
    match_attributes: tuple[str, ...] = ("modality", "region", "finding", "location")
    recall_curve_max_k: int = 50  # Recall@K curves in reports run K = 1..this
    example_queries: int = 6
    example_neighbours: int = 4  # top neighbours shown per example query
    thumbnail_px: int = 96  # longest side of example thumbnails in reports, pixels

    def __post_init__(self) -> None:
        if self.concept_k < 1:
            raise InputError(f"eval.concept_k must be >= 1, got {self.concept_k}")
        if not 0.0 < self.concept_threshold <= 1.0:
            raise InputError(
                f"eval.concept_threshold must be in (0, 1], got {self.concept_threshold}"
            )
        if self.concept_mode not in ("images", "captions"):
            raise InputError(
                f"eval.concept_mode must be images or captions, got {self.concept_mode!r}"
            )


@dataclass(frozen=True)
class AppConfig:
    """The Streamlit similar-case browser (`medcap app`)."""

    host: str = "127.0.0.1"  # loopback only unless asked otherwise
    port: int = 8501
    k: int = 9  # cases shown per search
    max_k: int = 48  # upper end of the k slider
    columns: int = 3  # result cards per row (3 keeps thumbnails ~300 px wide)
    thumbnail_px: int = 384  # longest side of card thumbnails, pixels
    filter_max_values: int = 40  # metadata columns with more distinct values get no filter
    # metadata shown on result cards, in this order, when an index has them (else the
    # first few text columns); a case's page always shows all of its metadata
    card_fields: tuple[str, ...] = ("modality", "region", "finding", "location", "view")


@dataclass(frozen=True)
class DemoConfig:
    """`medcap demo`: the whole pipeline on phantoms, sized for a laptop CPU."""

    n: int = 3000
    seed: int = 0
    image_size: int = 64  # phantom pixels per side (the tiny encoder's input size)
    model: str = "medcap-tiny"
    epochs: int = 12  # fixed, not a time budget, so the same seed gives the same metrics
    example_searches: int = 3


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
    demo: DemoConfig = field(default_factory=DemoConfig)
    app: AppConfig = field(default_factory=AppConfig)


DEFAULTS = MedcapConfig()

T = TypeVar("T")


def replace_set(section: T, **overrides: Any) -> T:
    """Return `section` with every override that is not None applied."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(section, **given) if given else section  # type: ignore[type-var]


def dump_config(config: Any, path: str | Path) -> None:
    """Write a config (any dataclass) as JSON next to a run's outputs."""
    Path(path).write_text(json.dumps(dataclasses.asdict(config), indent=2, default=str) + "\n")
