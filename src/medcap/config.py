"""Every project default, written once, and the checks every setting must pass.

CLI options default to None, meaning "use the active config" (`current()`); the help of
each option shows the default. `medcap --config FILE.toml --set section.field=value`
changes the active config for one command (read by `medcap.config_files.load_config`);
library functions take the section they need and default to `DEFAULTS`. Every section
checks its values in `__post_init__` and names the bad one in a one-line InputError.
Runs write their resolved settings (`dump_config`) next to their outputs.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from medcap.errors import InputError

IndexType = Literal["auto", "flat", "hnsw", "ivfpq"]
SearchMode = Literal["captions", "images"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]  # auto: bf16 on GPU, fp32 on CPU
ImageDecode = Literal["auto", "workers", "device"]  # where encode_cases decodes JPEG/PNG
RankTies = Literal["pessimistic", "optimistic"]
ConsensusSimilarity = Literal["cider-d", "token-f1"]
Duplicates = Literal["error", "mean"]  # mean: each image's rows weigh 1/m
AttnImplementation = Literal["eager", "sdpa", "flash_attention_2", "flash_attention_3"]
Engine = Literal["local", "ray"]  # local: this process; ray: a Ray cluster (medcap[dist])
DicomUnit = Literal["series", "instance"]  # one case per DICOM series, or per instance


_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of every field of a config dataclass (resolved once per class)."""
    if cls not in _FIELD_TYPES:
        _FIELD_TYPES[cls] = typing.get_type_hints(cls)
    return _FIELD_TYPES[cls]


def _check_choices(section: str, cfg: Any) -> None:
    """Every Literal-typed field holds one of its choices."""
    for name, kind in field_types(type(cfg)).items():
        if typing.get_origin(kind) is Literal:
            value = getattr(cfg, name)
            if value not in typing.get_args(kind):
                valid = ", ".join(map(str, typing.get_args(kind)))
                raise InputError(
                    f"unknown {name.replace('_', ' ')} {value!r} ({section}.{name}); valid: {valid}"
                )


def _at_least(section: str, cfg: Any, minimum: float, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value < minimum:
            raise InputError(f"{section}.{name} must be >= {minimum:g}, got {value}")


def _positive(section: str, cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"{section}.{name} must be a positive number, got {value}")


def _fraction(section: str, cfg: Any, *names: str, high_open: bool = False) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not (0.0 <= value < 1.0 if high_open else 0.0 <= value <= 1.0):
            bound = "1)" if high_open else "1]"
            raise InputError(f"{section}.{name} must be in [0, {bound}, got {value}")


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
    # Images declaring more pixels (DICOM: rows x columns x frames) are refused from their
    # header, before decoding; 0: no limit. Pillow's own guard, which medcap leaves alone,
    # refuses above 2 x PIL.Image.MAX_IMAGE_PIXELS (179 Mpx by default) whatever this says.
    max_image_pixels: int = 12_000 * 12_000
    encoding: str = "utf-8"  # of CSV/TSV/JSONL tables; utf-8 also reads a byte-order mark
    allow_outside_paths: bool = False  # image paths in a table may leave the dataset folder
    # Metadata columns copied from a dataset into records, indexes, reports and answers; any
    # other column (PatientName, PatientID, ...) is dropped when read. The defaults are the
    # usual case attributes and the phantoms' ground truth, which the app and reports show.
    keep_columns: tuple[str, ...] = (
        "modality", "region", "finding", "location", "side", "level", "size_cm", "severity",
        "has_arrow", "view", "sequence", "contrast", "color", "image_format",
    )  # fmt: skip

    def __post_init__(self) -> None:
        _at_least("data", self, 1, "phantom_count", "phantom_image_size", "phantom_shard_rows")
        _at_least("data", self, 0, "info_max_images", "max_image_pixels")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise InputError(
                f"unknown text encoding {self.encoding!r} (data.encoding); "
                "use e.g. utf-8, latin-1 or cp1252"
            ) from None
        fractions = self.phantom_split_fractions
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise InputError(
                "data.phantom_split_fractions must be three shares (train, valid, test) >= 0 "
                f"that sum to 1, got {fractions}"
            )


@dataclass(frozen=True)
class EncoderConfig:
    """The CLIP encoder used for embedding."""

    model: str = "medcap-tiny"  # spec: name[:tag] | hf-hub:org/repo | snapshot/ | ckpt.pt | .json
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 64
    num_workers: int = 0  # DataLoader workers for image decoding
    # auto: JPEG/PNG decoded on the device (nvjpeg) under CUDA, by Pillow in workers on the CPU
    image_decode: ImageDecode = "auto"
    precision: Precision = "auto"  # auto: bf16 on GPU, fp32 on CPU
    init_seed: int = 0  # random-init specs (a name without tag, an architecture JSON) are seeded
    hub_probe_timeout_s: float = 3.0  # how long to wait for the hub before calling it offline

    def __post_init__(self) -> None:
        _check_choices("encoder", self)
        _at_least("encoder", self, 1, "batch_size")
        _at_least("encoder", self, 0, "num_workers")
        _positive("encoder", self, "hub_probe_timeout_s")


@dataclass(frozen=True)
class TrainConfig:
    """Contrastive fine-tuning of the encoder."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3  # for medcap-tiny from scratch; fine-tuning pretrained CLIP wants ~1e-5
    weight_decay: float = 0.1
    warmup_steps: int = 30
    grad_accum_steps: int = 1
    precision: Precision = "auto"
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
    tensorboard: bool = True  # mirror metrics.jsonl to TensorBoard event files (medcap[tb])

    def __post_init__(self) -> None:
        _check_choices("train", self)
        _at_least(
            "train", self, 1, "epochs", "batch_size", "grad_accum_steps",
            "checkpoint_every_steps", "eval_max_items", "max_steps", "log_every_steps",
            "num_threads",
        )  # fmt: skip
        _at_least("train", self, 0, "warmup_steps", "num_workers", "weight_decay", "cache_max_gb")
        _at_least("train", self, 0, "aug_max_rotate_deg")
        _positive("train", self, "lr", "max_minutes", "logit_scale_max", "aug_min_scale")
        _fraction("train", self, "min_lr_ratio", "aug_min_scale")
        _fraction("train", self, "aug_brightness", "aug_contrast", high_open=True)


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
    verify: bool = True  # check every index file's checksum on open (--no-verify skips it)
    filter_scan_max_rows: int = 20_000  # filtered searches keeping at most this many rows scan
    # them exactly; more: FAISS searches with an IDSelector (benchmarks/bench_refine.py)

    def __post_init__(self) -> None:
        _check_choices("index", self)
        _at_least("index", self, 1, "batch_size", "shard_size", "flat_max_vectors")
        _at_least("index", self, 1, "hnsw_ef_search", "ivf_nprobe")
        _at_least("index", self, 2, "hnsw_m")
        _at_least("index", self, 0, "ivf_rerank_factor", "thumbnail_size")
        _at_least("index", self, 0, "half_scan_max_queries", "half_scan_max_mb")
        _at_least("index", self, 0, "filter_scan_max_rows")
        _positive("index", self, "memory_budget_gb")


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
    rank_ties: RankTies = "pessimistic"  # equal scores rank first/last

    def __post_init__(self) -> None:
        _check_choices("retrieval", self)
        _at_least("retrieval", self, 1, "k", "sample_pairs")
        if not self.recall_ks or min(self.recall_ks) < 1:
            raise InputError(
                f"retrieval.recall_ks must be one or more K >= 1, got {self.recall_ks}"
            )


@dataclass(frozen=True)
class RefineConfig:
    """Refining a search: by region, by example (relevance feedback) and by concept (text).

    Weights are shares of a mix of unit vectors, re-normalised after mixing; the feedback
    weights are Rocchio's alpha (the query), beta (relevant hits) and gamma (the others).
    """

    roi_weight: float = 0.5  # region query: the region's share of each hit's score
    roi_rerank: int = 50  # hits re-scored by the same region of their own image; 0: the
    # region's vector is mixed into the query instead (bench_refine.py compares both)
    text_weight: float = 0.1  # image steered by --text: the text's share (bench_refine.py)
    rocchio_alpha: float = 1.0
    rocchio_beta: float = 0.75
    rocchio_gamma: float = 0.25
    roi_min_px: int = 4  # regions narrower or lower than this are refused

    def __post_init__(self) -> None:
        _fraction("refine", self, "roi_weight", "text_weight")
        _at_least("refine", self, 0, "rocchio_alpha", "rocchio_beta", "rocchio_gamma")
        _at_least("refine", self, 1, "roi_min_px")
        _at_least("refine", self, 0, "roi_rerank")


@dataclass(frozen=True)
class GenerationConfig:
    """Retrieval-augmented caption generation."""

    backend: str = "consensus"  # a registered backend (medcap.generation.backends)
    k: int = 5
    template: str | None = None  # prompt template name or .txt path; None: the backend's own
    max_new_tokens: int = 128
    batch_size: int = 16
    checkpoint_every: int = 50  # images between result-file flushes in batch captioning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    search_mode: SearchMode = "captions"  # neighbours by image->caption or image->image search
    modality_hint: str | None = None  # e.g. "CT": added to the prompt when the template has {hint}
    consensus_similarity: ConsensusSimilarity = "cider-d"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: Precision = "auto"  # auto: bf16 on GPU, fp32 on CPU
    attn_implementation: AttnImplementation = "sdpa"  # flash_attention_*: GPU only
    min_pixels: int = 56 * 56  # Qwen2-VL image resize bounds; 28x28 pixels per visual token
    max_pixels: int = 448 * 448  # 448x448 -> 256 visual tokens
    static_cache: bool = False  # generate with a static KV cache (GPU speed path)
    pad_to_multiple_of: int = 64  # static cache: prompt lengths rounded up so shapes repeat
    num_beams: int = 1
    lora_targets: tuple[str, ...] = ()  # module names LoRA wraps; (): the backend's own
    lora_lr: float = 1e-4
    lora_epochs: int = 3
    lora_batch_size: int = 4
    lora_max_steps: int | None = None  # cap on optimizer steps (None: run all epochs)
    lora_checkpoint_every: int = 100  # optimizer steps between resumable checkpoints
    lora_seed: int = 0
    lora_eval_split: str = "valid"  # its cases' mean loss is logged after each epoch
    lora_eval_max_items: int = 100  # validation cases scored (0: no validation loss)
    lora_tensorboard: bool = True  # mirror metrics.jsonl to TensorBoard event files (medcap[tb])
    train_split: str = "train"  # split whose cases the generator is fine-tuned on
    split: str = "test"  # split captioned by `medcap caption --data`
    train_backend: str = "blip2-lora"  # generator that `medcap train generator` fine-tunes
    auto_k: bool = False  # `--k auto`: neighbours kept until the similarity drops sharply
    auto_k_min: int = 2  # ... at least this many
    auto_k_max: int = 10  # ... at most this many (the search asks for these)
    auto_k_gap_ratio: float = 2.0  # a drop is sharp when >= ratio x the list's mean drop

    def __post_init__(self) -> None:
        _check_choices("generation", self)
        _at_least(
            "generation", self, 1, "k", "batch_size", "checkpoint_every", "max_new_tokens",
            "lora_batch_size", "num_beams", "lora_r", "lora_epochs", "lora_max_steps",
            "lora_checkpoint_every", "pad_to_multiple_of", "min_pixels",
        )  # fmt: skip
        _at_least("generation", self, 0, "lora_eval_max_items")
        _at_least("generation", self, 1, "auto_k_min", "auto_k_gap_ratio")
        if self.auto_k_max < self.auto_k_min:
            raise InputError(
                f"generation.auto_k_max must be >= generation.auto_k_min ({self.auto_k_min}), "
                f"got {self.auto_k_max}"
            )
        _positive("generation", self, "lora_alpha", "lora_lr")
        _fraction("generation", self, "lora_dropout", high_open=True)
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
    duplicates: Duplicates = "error"  # repeated image ids in a results file: refuse or average

    def __post_init__(self) -> None:
        _check_choices("eval", self)
        _at_least("eval", self, 1, "concept_k", "bertscore_num_layers", "bertscore_batch_size")
        _at_least("eval", self, 1, "recall_curve_max_k", "example_neighbours", "thumbnail_px")
        _at_least("eval", self, 0, "example_queries")
        _positive("eval", self, "clipscore_weight")
        if not 0.0 < self.concept_threshold <= 1.0:
            raise InputError(
                f"eval.concept_threshold must be in (0, 1], got {self.concept_threshold}"
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
    max_upload_pixels: int = 8192 * 8192  # uploaded images declaring more are refused undecoded
    max_upload_mb: int = 50  # Streamlit's server.maxUploadSize: bytes per uploaded file, in MB
    max_report_mb: float = 20.0  # report.json / report.md / plot files the Benchmarks page reads

    def __post_init__(self) -> None:
        _at_least("app", self, 1, "k", "columns", "thumbnail_px", "filter_max_values")
        _at_least("app", self, 0, "max_upload_pixels")
        _at_least("app", self, 1, "max_upload_mb")
        _positive("app", self, "max_report_mb")
        _at_least("app", self, 0, "port")
        if self.port > 65535:
            raise InputError(f"app.port must be <= 65535, got {self.port}")
        if self.max_k < self.k:
            raise InputError(f"app.max_k must be >= app.k ({self.k}), got {self.max_k}")


@dataclass(frozen=True)
class ServeConfig:
    """The HTTP service (`medcap serve`): binding, limits, micro-batching, timeouts."""

    host: str = "127.0.0.1"  # loopback only; another address needs --token (or --insecure)
    port: int = 8600
    workers: int = 1  # one process: micro-batching and /metrics live in it (see medcap.serve)
    max_upload_bytes: int = 50 * 1024 * 1024  # request body limit (a large DICOM fits)
    max_k: int = 100  # largest k a search may ask for
    batch_max_size: int = 32  # queries encoded together at most
    batch_max_wait_ms: float = 2.0  # how long the first query of a batch waits for others
    queue_max: int = 1024  # queries waiting for the encoder before new ones get 503
    request_timeout_s: float = 30.0  # a request still running after this gets 504
    graceful_shutdown_s: float = 30.0  # SIGTERM: how long in-flight requests may finish
    encoder_threads: int | None = None  # torch CPU threads (None: one less than the cores)
    column_values_max: int = 40  # GET /v1/index lists a column's values up to this many
    min_token_chars: int = 16  # shorter bearer tokens are refused (guessable)
    log_requests: bool = True  # one log line per request (method, path, status, ms)

    def __post_init__(self) -> None:
        _at_least("serve", self, 0, "port", "batch_max_wait_ms", "column_values_max")
        _at_least("serve", self, 1, "workers", "max_upload_bytes", "max_k", "batch_max_size")
        _at_least("serve", self, 1, "queue_max", "encoder_threads", "min_token_chars")
        _positive("serve", self, "request_timeout_s", "graceful_shutdown_s")
        if self.port > 65535:
            raise InputError(f"serve.port must be <= 65535, got {self.port}")


@dataclass(frozen=True)
class DemoConfig:
    """`medcap demo`: the whole pipeline on phantoms, sized for a laptop CPU."""

    n: int = 3000
    seed: int = 0
    image_size: int = 64  # phantom pixels per side (the tiny encoder's input size)
    model: str = "medcap-tiny"
    epochs: int = 12  # fixed, not a time budget, so the same seed gives the same metrics
    example_searches: int = 3

    def __post_init__(self) -> None:
        _at_least("demo", self, 1, "n", "image_size", "epochs")
        _at_least("demo", self, 0, "example_searches")


@dataclass(frozen=True)
class DistConfig:
    """Index builds and batch captioning on a Ray cluster (`--engine ray`, medcap[dist])."""

    engine: Engine = "local"
    address: str | None = None  # Ray cluster host:port; None: start a local Ray, stop it after
    node_ip_address: str | None = None  # this machine's Ray node IP (None: a loopback address
    # in `address`, else Ray's own guess)
    actors: int | None = None  # None: one per GPU, else half the CPUs / cpus_per_actor
    cpus_per_actor: float = 1.0  # also the torch threads of a CPU actor
    gpus_per_actor: float | None = None  # None: 1 when the cluster has GPUs, else 0
    decode_cpus: float = 1.0  # CPUs per read + decode task
    batches_per_task: int = 4  # model batches (index.batch_size cases) per decode task
    inflight_per_actor: int = 2  # tasks queued per actor, so none waits for the driver
    max_restarts: int = -1  # a dead actor is replaced this often (-1: always)
    task_retries: int = 3  # a failed read/decode task is run again this often
    stall_timeout_s: float = 900.0  # give up when nothing finishes for this long
    progress_every_s: float = 10.0  # driver progress lines (cases done, cases/s, ETA)
    local_num_cpus: int | None = None  # a local Ray's CPUs (None: all)
    local_object_store_mb: int | None = None  # a local Ray's object store (None: Ray's 30% of RAM)
    temp_dir: str | None = None  # a local Ray's session folder (None: a new one under /tmp)
    log_to_driver: bool = False  # False: worker logs stay in the Ray session's log folder

    def __post_init__(self) -> None:
        _check_choices("dist", self)
        _at_least("dist", self, 1, "actors", "batches_per_task", "inflight_per_actor")
        _at_least("dist", self, 1, "local_num_cpus", "local_object_store_mb")
        _at_least("dist", self, -1, "max_restarts")
        _at_least("dist", self, 0, "task_retries", "cpus_per_actor", "gpus_per_actor")
        _positive("dist", self, "decode_cpus", "stall_timeout_s")
        _at_least("dist", self, 0, "progress_every_s")


@dataclass(frozen=True)
class DicomConfig:
    """DICOM folders and DICOMweb servers as datasets (medcap.data.dicom)."""

    unit: DicomUnit = "series"  # one case per series (its middle instance) or per instance
    allow_burned_in: bool = False  # index instances that may show identifiers in their pixels
    # Modalities where burned-in text is common: skipped unless allow_burned_in.
    burned_in_modalities: tuple[str, ...] = ("US", "SC", "OT", "XC")
    keep_tags: tuple[str, ...] = ()  # header keywords kept on purpose (listed in the manifest)
    timeout_s: float = 30.0  # per DICOMweb request
    retries: int = 3  # a failed DICOMweb request is tried again this often
    retry_wait_s: float = 0.5  # first wait between tries (doubles each time)
    workers: int = 4  # parallel WADO-RS retrievals

    def __post_init__(self) -> None:
        _check_choices("dicom", self)
        _at_least("dicom", self, 0, "retries")
        _at_least("dicom", self, 1, "workers")
        _positive("dicom", self, "timeout_s", "retry_wait_s")


@dataclass(frozen=True)
class MedcapConfig:
    """The root config: one section per stage."""

    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    app: AppConfig = field(default_factory=AppConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    dicom: DicomConfig = field(default_factory=DicomConfig)


DEFAULTS = MedcapConfig()

T = TypeVar("T")


def replace_set(section: T, **overrides: Any) -> T:
    """Return `section` with every override that is not None applied."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(section, **given) if given else section  # type: ignore[type-var]


def dump_config(config: Any, path: str | Path) -> None:
    """Write a config (any dataclass) as JSON next to a run's outputs."""
    Path(path).write_text(json.dumps(dataclasses.asdict(config), indent=2, default=str) + "\n")


_current: list[MedcapConfig] = [DEFAULTS]


def current() -> MedcapConfig:
    """The active config: DEFAULTS, or what `medcap --config/--set` made of it."""
    return _current[0]


def use_config(config: MedcapConfig) -> MedcapConfig:
    """Make `config` the active one (the CLI's root callback, the app's entry script);
    returns the one it replaces."""
    previous, _current[0] = _current[0], config
    return previous
