"""Resumable LoRA trainer checkpoints in formats that cannot run code when loaded.

A checkpoint `checkpoints/step-NNNNNNN/` holds `adapter.safetensors` (the LoRA weights),
`optimizer.safetensors` (every tensor of the optimizer state, keyed `state.<param>.<name>`)
and `trainer.json` (step, losses, the optimizer's param groups and non-tensor state, and
the CPU and CUDA RNG states as plain lists of bytes). safetensors and JSON hold data only;
a pickle (the old `trainer.pt`) runs whatever a crafted file tells it to, so it is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medcap.atomic import write_text_atomic
from medcap.errors import CorruptArtifactError, InputError, first_line

if TYPE_CHECKING:
    import torch

CHECKPOINT_DIR = "checkpoints"
KEEP_CHECKPOINTS = 2
ADAPTER_FILE = "adapter.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_FILE = "trainer.json"
OLD_TRAINER_FILE = "trainer.pt"  # pickled by medcap before trainer.json; never loaded
TRAINER_FORMAT = "medcap-lora-trainer"
TRAINER_VERSION = 1


def save_checkpoint(
    model: Any, optimizer: Any, step: int, losses: list[float], out_dir: Path
) -> Path:
    """Write checkpoint `step` of a run (atomically: a temp dir renamed); keep the newest two."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    root = out_dir / CHECKPOINT_DIR
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    adapter = {
        k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()
    }
    save_file(adapter, str(tmp / ADAPTER_FILE))
    tensors, optimizer_meta = _split_optimizer_state(optimizer.state_dict())
    save_file(tensors, str(tmp / OPTIMIZER_FILE))
    trainer = {
        "format": TRAINER_FORMAT,
        "version": TRAINER_VERSION,
        "step": step,
        "losses": losses,
        "optimizer": optimizer_meta,
        "rng": capture_rng_lists(),
    }
    write_text_atomic(tmp / TRAINER_FILE, json.dumps(trainer) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob("step-*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint directory of a run, if any."""
    found = sorted(p for p in (Path(out_dir) / CHECKPOINT_DIR).glob("step-*") if p.is_dir())
    return found[-1] if found else None


def load_checkpoint(model: Any, optimizer: Any, path: Path) -> tuple[int, list[float]]:
    """Restore adapter, optimizer and RNG states from `path`; return (step, losses).

    Reads only safetensors and JSON; every file is read and parsed before the model,
    optimizer or RNG is touched.
    """
    from peft import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    trainer_file = path / TRAINER_FILE
    if not trainer_file.is_file() and (path / OLD_TRAINER_FILE).exists():
        raise InputError(
            f"{path / OLD_TRAINER_FILE}: old trainer-state format (a pickle, which can run "
            "code) is no longer loaded; start over without --resume or delete the run's "
            f"{CHECKPOINT_DIR}/ folder"
        )
    damaged = f"checkpoint {path} is damaged"
    try:
        meta = json.loads(trainer_file.read_text(encoding="utf-8"))
        adapter = load_file(str(path / ADAPTER_FILE))
        tensors = load_file(str(path / OPTIMIZER_FILE))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as exc:
        raise CorruptArtifactError(
            f"{damaged} ({first_line(exc)}); delete it to resume from an older one"
        ) from None
    try:
        step, losses, optimizer_state, rng = _parse_trainer(meta, tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptArtifactError(
            f"{damaged} ({TRAINER_FILE}: {first_line(exc)}); delete it to resume from an older one"
        ) from None
    _check_gpu_count(rng, path)
    try:
        set_peft_model_state_dict(model, adapter)
        optimizer.load_state_dict(_with_tuples(optimizer_state, optimizer.state_dict()))
        restore_rng(rng)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CorruptArtifactError(
            f"{damaged} or from another model ({first_line(exc)}); delete it or start over"
        ) from None
    return step, losses


def capture_rng_lists() -> dict[str, Any]:
    """The torch CPU RNG state, and each GPU's when CUDA is initialised, as lists of bytes."""
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the RNG states parsed from `capture_rng_lists` (as byte tensors; GPU count checked)."""
    import torch

    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_gpu_count(rng: dict[str, Any], path: Path) -> None:
    import torch

    saved = rng["cuda"]
    if saved is None:
        return
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible != len(saved):
        raise InputError(
            f"checkpoint {path} holds the RNG states of {len(saved)} GPU(s) but {visible} are "
            "visible; resume with the same GPUs (CUDA_VISIBLE_DEVICES) or start over without "
            "--resume"
        )


def _split_optimizer_state(
    state_dict: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer state_dict -> (its tensors by `state.<param>.<name>`, the JSON rest)."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for param, entries in state_dict["state"].items():
        plain[str(param)] = {}
        for name, value in entries.items():
            if hasattr(value, "detach"):
                tensors[f"state.{param}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain[str(param)][name] = value
    return tensors, {"state": plain, "param_groups": state_dict["param_groups"]}


def _parse_trainer(
    meta: Any, tensors: dict[str, torch.Tensor]
) -> tuple[int, list[float], dict[str, Any], dict[str, Any]]:
    """Check trainer.json's shape and join the optimizer's tensors back into its state."""
    if not isinstance(meta, dict) or meta.get("format") != TRAINER_FORMAT:
        raise ValueError(f"not a {TRAINER_FORMAT} file")
    if meta.get("version") != TRAINER_VERSION:
        raise ValueError(f"unsupported version {meta.get('version')!r}")
    step = meta["step"]
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"bad step {step!r}")
    losses = [float(x) for x in meta["losses"]]
    if len(losses) != step:
        raise ValueError(f"{len(losses)} losses for {step} steps")
    state: dict[int, dict[str, Any]] = {
        int(param): dict(entries) for param, entries in meta["optimizer"]["state"].items()
    }
    for key, tensor in tensors.items():
        prefix, param, name = key.split(".", 2)
        if prefix != "state":
            raise ValueError(f"unexpected tensor {key!r} in {OPTIMIZER_FILE}")
        state.setdefault(int(param), {})[name] = tensor
    groups = meta["optimizer"]["param_groups"]
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ValueError("bad optimizer param_groups")
    rng = meta["rng"]
    cuda = rng.get("cuda")
    if cuda is not None and not isinstance(cuda, list):
        raise ValueError("bad cuda rng state")
    states = {
        "torch": _byte_tensor(rng["torch"]),
        "cuda": None if cuda is None else [_byte_tensor(s) for s in cuda],
    }
    return step, losses, {"state": state, "param_groups": groups}, states


def _with_tuples(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """JSON turned tuples (AdamW's betas) into lists: give them back their type."""
    for group, now in zip(saved["param_groups"], current["param_groups"], strict=False):
        for key, value in now.items():
            if isinstance(value, tuple) and isinstance(group.get(key), list):
                group[key] = tuple(group[key])
    return saved


def _byte_tensor(values: Any) -> torch.Tensor:
    import torch

    if not isinstance(values, list) or not all(
        isinstance(v, int) and 0 <= v <= 255 for v in values
    ):
        raise ValueError("an RNG state must be a list of bytes")
    return torch.tensor(values, dtype=torch.uint8)
