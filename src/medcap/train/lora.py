"""LoRA fine-tuning of a caption generator (BLIP-2 or Qwen2-VL) on retrieval-augmented prompts.

Only the adapter is trained and saved (`adapter_model.safetensors` + `adapter_config.json`,
whose `target_modules` are the backend's own unless `GenerationConfig.lora_targets` names
others, plus `medcap_adapter.json` with the base model, template and k). Resumable
checkpoints (medcap.train.lora_checkpoint: safetensors and JSON, never pickle) hold the
adapter, the optimizer and the RNG state, so a resumed run continues exactly where it
stopped. Writes `metrics.jsonl` (training loss, lr and samples/s per step; validation loss
after each epoch) with its TensorBoard mirror `tensorboard/` (medcap.train.log), and
`loss.png`.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medcap.clock import now_iso
from medcap.config import DEFAULTS, GenerationConfig
from medcap.errors import InputError
from medcap.generation.adapter import AdapterInfo, write_adapter_info
from medcap.generation.backends.base import backend_class, not_fine_tunable
from medcap.generation.collate import TrainExample, collate, encode_example
from medcap.train.log import MetricsLog
from medcap.train.lora_checkpoint import (
    CHECKPOINT_DIR,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass
class LoraResult:
    """What a LoRA run did; `losses` holds one training loss per optimizer step."""

    out_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    resumed_from: int = 0  # step of the checkpoint the run resumed from (0: fresh)


def lora_targets(kind: str, cfg: GenerationConfig) -> tuple[str, ...]:
    """The module names LoRA wraps for backend `kind`: `cfg.lora_targets`, else its own."""
    targets = cfg.lora_targets or backend_class(kind).lora_targets
    if not targets:
        raise InputError(not_fine_tunable(kind))
    return targets


def attach_lora(model: Any, kind: str, cfg: GenerationConfig) -> Any:
    """Wrap `model` with fresh LoRA layers on `lora_targets`; everything else is frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(lora_targets(kind, cfg)),
        bias="none",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise InputError(
            f"LoRA target modules {list(lora_targets(kind, cfg))} not found in the {kind} "
            f"model ({exc}); name the model's modules with --lora-targets"
        ) from None


def _image_of(example: TrainExample) -> Any:
    from PIL.Image import Image

    if isinstance(example.image, Image):
        return example.image
    from medcap.data.images import load_image

    return load_image(example.image)


class _Batches:
    """Encodes examples for one generator kind and yields collated batches on a device."""

    def __init__(self, kind: str, model: Any, processor: Any, cfg: GenerationConfig) -> None:
        self.kind, self.processor, self.cfg = kind, processor, cfg
        self.config = model.config
        tokenizer = processor.tokenizer
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )

    def batch(
        self, examples: Sequence[TrainExample], device: torch.device
    ) -> dict[str, torch.Tensor]:
        items = [
            encode_example(self.kind, self.processor, self.config, _image_of(e), e, self.cfg)
            for e in examples
        ]
        return {k: v.to(device) for k, v in collate(self.kind, items, self.pad_id).items()}


def _forward_loss(model: Any, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    import torch

    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    batch = dict(batch)
    batch["pixel_values"] = batch["pixel_values"].to(dtype)
    autocast = device.type == "cuda" and dtype != torch.float32
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        loss: torch.Tensor = model(**batch).loss
    return loss


def evaluate_loss(
    model: Any,
    processor: Any,
    examples: Sequence[TrainExample],
    *,
    kind: str,
    cfg: GenerationConfig = DEFAULTS.generation,
) -> float:
    """Mean masked caption loss (nats per target token, averaged over batches) in eval mode."""
    import torch

    device = next(model.parameters()).device
    batches = _Batches(kind, model, processor, cfg)
    was_training = model.training
    model.eval()
    losses = []
    with torch.no_grad():
        for start in range(0, len(examples), cfg.lora_batch_size):
            chunk = examples[start : start + cfg.lora_batch_size]
            losses.append(float(_forward_loss(model, batches.batch(chunk, device), device)))
    model.train(was_training)
    return sum(losses) / max(1, len(losses))


def _step_order(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Example indices of global step `step`: a seeded shuffle per epoch, so resume can replay."""
    import torch

    per_epoch = math.ceil(n / batch_size)
    epoch, within = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    return order[within * batch_size : (within + 1) * batch_size]


def plot_losses(losses: Sequence[float], path: Path) -> Path:
    """Write the training-loss curve as a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.plot(range(1, len(losses) + 1), losses, lw=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("masked caption loss")
    ax.set_title("generator LoRA training")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def train_lora(
    model: Any,
    processor: Any,
    examples: Sequence[TrainExample],
    out_dir: str | Path,
    *,
    kind: str,
    cfg: GenerationConfig = DEFAULTS.generation,
    base_model: str = "",
    resume: bool = False,
    progress: bool = False,
    eval_examples: Sequence[TrainExample] = (),
) -> LoraResult:
    """Fine-tune LoRA adapters of a built model on `examples`; save only the adapter to `out_dir`.

    Runs `cfg.lora_epochs` epochs of `cfg.lora_batch_size`, capped at `cfg.lora_max_steps`.
    The mean loss on `eval_examples` (when given) is logged after each epoch and the last step.

    Example:
        >>> model, processor = build_tiny_blip2(captions)
        >>> train_lora(model, processor, examples, "runs/adapter", kind="blip2-lora")
    """
    import torch
    from tqdm.auto import tqdm

    if not examples:
        raise InputError("no training examples for the generator; check --data and --split")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.lora_seed)
    device = next(model.parameters()).device
    peft_model = attach_lora(model, kind, cfg)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lora_lr, weight_decay=0.0)
    per_epoch = math.ceil(len(examples) / cfg.lora_batch_size)
    total = per_epoch * cfg.lora_epochs
    if cfg.lora_max_steps is not None:
        total = min(total, cfg.lora_max_steps)
    metrics = MetricsLog(out, tensorboard=cfg.lora_tensorboard)
    step, losses = 0, list[float]()
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        step, losses = load_checkpoint(peft_model, optimizer, checkpoint)
        log.info("resuming generator training from %s (step %d of %d)", checkpoint, step, total)
    elif not resume:
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    metrics.start(resume_step=step if resume else None)
    result = LoraResult(
        out_dir=out,
        steps=step,
        trainable_params=sum(p.numel() for p in trainable),
        total_params=sum(p.numel() for p in peft_model.parameters()),
        resumed_from=step,
    )
    batches = _Batches(kind, model, processor, cfg)
    peft_model.train()
    start = last = time.perf_counter()
    bar = tqdm(
        total=total,
        initial=step,
        unit="step",
        desc=f"train {kind}",
        disable=None if progress else True,
    )
    try:
        while step < total:
            indices = _step_order(len(examples), cfg.lora_batch_size, step, cfg.lora_seed)
            loss = _forward_loss(
                peft_model, batches.batch([examples[i] for i in indices], device), device
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            step += 1
            losses.append(loss.item())
            now = time.perf_counter()
            metrics.append(
                "train",
                step=step,
                epoch=(step - 1) // per_epoch,
                loss=round(losses[-1], 6),
                lr=optimizer.param_groups[0]["lr"],
                samples_per_s=round(len(indices) / max(now - last, 1e-9), 3),
                elapsed_s=round(now - start, 3),
            )
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
            if eval_examples and (step % per_epoch == 0 or step == total):
                valid_loss = evaluate_loss(peft_model, processor, eval_examples, kind=kind, cfg=cfg)
                metrics.append("eval", step=step, epoch=(step - 1) // per_epoch, loss=valid_loss)
            if step % cfg.lora_checkpoint_every == 0 or step == total:
                save_checkpoint(peft_model, optimizer, step, losses, out)
                metrics.flush()
            last = time.perf_counter()  # validation and checkpoints are not training throughput
    finally:
        bar.close()
        metrics.close()
    peft_model.eval()
    _save_adapter(peft_model, out)
    write_adapter_info(
        AdapterInfo(
            backend=kind,
            base_model=base_model,
            template=examples[0].prompt.template,
            k=cfg.k,
            lora={
                "r": cfg.lora_r,
                "alpha": cfg.lora_alpha,
                "dropout": cfg.lora_dropout,
                "target_modules": list(lora_targets(kind, cfg)),
            },
            steps=step,
            final_loss=losses[-1] if losses else None,
            created_at=now_iso(),
        ),
        out,
    )
    if losses:
        plot_losses(losses, out / "loss.png")
    result.steps, result.losses = step, losses
    return result


def _save_adapter(peft_model: Any, out: Path) -> None:
    """Save only the adapter weights and config (peft's format) into `out`, via a temp dir."""
    tmp = out / ".adapter.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    peft_model.save_pretrained(str(tmp))
    for item in tmp.iterdir():
        item.replace(out / item.name)
    shutil.rmtree(tmp, ignore_errors=True)
