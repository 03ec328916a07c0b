"""Setting up a training run: process group, model, optimizer, data; checkpoint writing."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from medcap.clock import now_iso
from medcap.config import DEFAULTS, TrainConfig
from medcap.devices import resolve_device
from medcap.encoder.checkpoint import fingerprint_state, read_sidecar, write_checkpoint
from medcap.encoder.decode import uint8_transform
from medcap.encoder.encoder import autocast_dtype
from medcap.encoder.factory import BuiltModel, build_model
from medcap.encoder.spec import parse_spec
from medcap.errors import InputError
from medcap.runs.identity import as_json, refuse_difference
from medcap.train.contrastive import world
from medcap.train.data import CaseTensors, build_case_tensors
from medcap.train.state import Position, make_optimizer, pack_train_state

CONFIG_FILE = "config.json"


@dataclass
class Run:
    """The objects every step of one training run uses."""

    cfg: TrainConfig
    spec: str
    model: Any  # DDP-wrapped when distributed
    core: Any  # the open_clip model itself (untyped)
    built: BuiltModel
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None for fp32
    optimizer: torch.optim.AdamW
    scaler: Any  # GradScaler for fp16, else None
    rank: int
    world_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scheduler: Any = None
    source: str = ""
    data_fingerprint: str = ""
    equal_batches: bool = False  # every process's micro-batches have the same size (cached)

    @property
    def image_size(self) -> int:
        return int(torch.tensor(self.core.visual.image_size).reshape(-1)[0])


def process_device(setting: str, local_rank: int, world_size: int, cuda: bool) -> str:
    """The `--device` setting one training process resolves: on GPUs, `auto` and `cuda` both
    mean this process's own GPU, `cuda:LOCAL_RANK` (torchrun starts one process per GPU).

    A fixed `cuda:N` under several processes would put every rank on one GPU; it is refused.
    """
    if cuda and setting in ("auto", "cuda"):
        return f"cuda:{local_rank}"
    if world_size > 1 and setting.startswith("cuda:"):
        raise InputError(
            f"--device {setting} would put all {world_size} processes on one GPU; "
            "use --device cuda (each process takes cuda:LOCAL_RANK)"
        )
    return setting


def init_distributed(device_setting: str) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether this call created the process group).

    Under torchrun (WORLD_SIZE > 1) the group uses NCCL on GPUs and gloo on CPUs. The
    device is resolved (and checked) before the group starts, so a bad setting fails alone.
    """
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    setting = process_device(device_setting, local_rank, env_world, torch.cuda.is_available())
    device = resolve_device(setting)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and unindexed "cuda" tensors use this GPU
    created = False
    if env_world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        created = True
    rank, world_size = world()
    return rank, world_size, device, created


def build_run(spec: str, cfg: TrainConfig, rank: int, world_size: int, device: torch.device) -> Run:
    """Model (locked towers, grad checkpointing, DDP), optimizer and scaler for a run."""
    built = build_model(parse_spec(spec), seed=cfg.seed)
    core = built.model.to(device)
    core.train()
    if cfg.lock_image:
        core.lock_image_tower()
    if cfg.lock_text:
        core.lock_text_tower()
    if cfg.grad_checkpointing:
        core.set_grad_checkpointing(True)
    towers = [p for n, p in core.named_parameters() if not n.startswith("logit_")]
    if not any(p.requires_grad for p in towers):
        raise InputError(
            "both towers are locked: nothing to train; drop --lock-image or --lock-text"
        )
    model: Any = core
    if world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(core, device_ids=ids)
    dtype = autocast_dtype(device, cfg.precision)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    pp = built.preprocess_cfg
    return Run(
        cfg=cfg,
        spec=spec,
        model=model,
        core=core,
        built=built,
        device=device,
        dtype=dtype,
        optimizer=make_optimizer(core, cfg),
        scaler=scaler,
        rank=rank,
        world_size=world_size,
        mean=tuple(pp["mean"]),
        std=tuple(pp["std"]),
    )


def open_records(data: Any) -> Any:
    """A dataset source (path, hub name) opened, or an already opened Dataset as is."""
    if hasattr(data, "records"):
        return data
    from medcap.config import current
    from medcap.data.readers import open_dataset

    return open_dataset(data, cfg=current().data)


def load_split(dataset: Any, split: str, limit: int | None, run: Run) -> CaseTensors:
    """The cases of one split (at most `limit`), tokenized and decoded for training."""
    records = []
    if split in dataset.splits():
        for record in dataset.records(split):
            records.append(record)
            if limit is not None and len(records) >= limit:
                break
    return build_case_tensors(
        records,
        uint8_transform(eval_transform(run.built.preprocess_cfg)),
        run.built.tokenizer,
        image_size=run.image_size,
        cache_max_gb=run.cfg.cache_max_gb,
        num_workers=run.cfg.num_workers,
    )


def eval_transform(preprocess_cfg: dict[str, Any]) -> Any:
    """open_clip's inference transform for a preprocessing config."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    pp = {k: tuple(v) if isinstance(v, list) else v for k, v in preprocess_cfg.items()}
    return image_transform_v2(PreprocessCfg(**pp), is_train=False)


def save_checkpoint(
    run: Run, path: Path, pos: Position, metrics: dict[str, float], *, resumable: bool
) -> None:
    """Write `path` (+ sidecar): weights, and the full training state when `resumable`."""
    state = {k: v.detach().cpu() for k, v in run.core.state_dict().items()}
    meta = {
        "architecture": run.built.architecture,
        "preprocess": run.built.preprocess_cfg,
        "base_spec": run.spec,
        "train_config": dataclasses.asdict(run.cfg),
        "dataset": {"source": run.source, "fingerprint": run.data_fingerprint},
        "step": pos.step,
        "epoch": pos.epoch,
        "metrics": metrics,
        "fingerprint": fingerprint_state(run.built.architecture, state),
        "created_at": now_iso(),
    }
    train_state = (
        pack_train_state(pos, run.optimizer, run.scheduler, run.scaler) if resumable else None
    )
    write_checkpoint(path, state, meta, train_state)


# Settings a resumed run must keep (with the world size): they fix which cases each saved
# step position stands for.
_FIXED_SETTINGS = ("batch_size", "grad_accum_steps", "seed")


def check_resumable(out_dir: Path, run: Run, checkpoint: Path) -> dict[str, Any]:
    """Refuse to resume `out_dir` with other data, another model or another batch layout;
    returns the saved config.json.

    Runs before anything in `out_dir` is rewritten; `run` holds the data now given (its
    fingerprint) and the model built now.
    """
    path = out_dir / CONFIG_FILE
    try:
        saved = json.loads(path.read_text())
        saved_train = saved["train"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(
            f"{path} is missing or unreadable, so the run cannot be checked before resuming; "
            "train into another --out"
        ) from None
    fix = "resume with what the run was started with, or train into another --out"
    if saved.get("dataset_fingerprint") != run.data_fingerprint:
        raise InputError(
            f"{out_dir} was trained on {saved.get('data')!r} (data fingerprint "
            f"{str(saved.get('dataset_fingerprint'))[:12]}), not {run.source!r} "
            f"({run.data_fingerprint[:12]}); {fix}"
        )
    architecture = read_sidecar(checkpoint).get("architecture")
    if saved.get("model") != run.spec or as_json(architecture or {}) != as_json(
        run.built.architecture
    ):
        raise InputError(
            f"{out_dir} was started from model {saved.get('model')!r}, not {run.spec!r} "
            f"(another architecture or spec); {fix}"
        )
    recorded = {name: saved_train.get(name) for name in _FIXED_SETTINGS}
    now = {name: getattr(run.cfg, name) for name in _FIXED_SETTINGS}
    recorded["world_size"], now["world_size"] = saved.get("world_size", 1), run.world_size
    refuse_difference(recorded, now, out_dir, fix)
    return dict(saved)


def resume_config(out_dir: str | Path, **overrides: Any) -> tuple[str, str, TrainConfig]:
    """(model spec, data source, TrainConfig) saved in `out_dir/config.json`, with every
    non-None override applied (`model`, `data`, or any TrainConfig field)."""
    path = Path(out_dir) / CONFIG_FILE
    if not path.is_file():
        raise InputError(f"{path} not found: nothing to resume in {out_dir}; run without --resume")
    saved = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {
        k: tuple(v) if isinstance(v, list) else v for k, v in saved["train"].items() if k in names
    }
    given = {k: v for k, v in overrides.items() if v is not None and k in names}
    cfg = dataclasses.replace(DEFAULTS.train, **{**values, **given})
    return (
        str(overrides.get("model") or saved["model"]),
        str(overrides.get("data") or saved["data"]),
        cfg,
    )
