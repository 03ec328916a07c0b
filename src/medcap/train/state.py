"""Optimizer, schedule and the resumable training state (everything `--resume` restores)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medcap.config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on gains, biases, norms and the temperature (as CLIP)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or "ln" in name or "bn" in name or "bias" in name
        (no_decay if exempt or "logit_scale" in name else decay).append(param)
    groups = [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": cfg.weight_decay},
    ]
    try:  # the fused kernel is several times faster, on CPU too (one pass over all params)
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Any:
    """lr multiplier per step: linear warmup, then cosine decay to `min_ratio`."""
    warmup = max(0, min(warmup_steps, total_steps - 1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch RNG states, in types `torch.load(weights_only=True)` reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Undo capture_rng."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


@dataclass
class Position:
    """Where training stands: `step` optimizer steps done; resume at (epoch, batch)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # optimizer steps already done within `epoch`
    best_score: float = -1.0
    best_epoch: int = -1
    elapsed_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def pack_train_state(
    position: Position,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
) -> dict[str, Any]:
    """Everything besides the weights that `--resume` needs."""
    return {
        "position": {
            "step": position.step,
            "epoch": position.epoch,
            "batch": position.batch,
            "best_score": position.best_score,
            "best_epoch": position.best_epoch,
            "elapsed_s": position.elapsed_s,
        },
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": capture_rng(),
    }


def unpack_train_state(
    state: dict[str, Any], optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any
) -> Position:
    """Restore optimizer, scheduler, scaler and RNG; return the saved position."""
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    restore_rng(state["rng"])
    return Position(**state["position"])
