"""Contrastive fine-tuning of a CLIP encoder (`medcap train`): resumable and DDP-ready.

Batches: `TrainConfig.batch_size` is per process and per micro-batch (as in open_clip); one
optimizer step sees batch_size x grad_accum_steps x world_size pairs, and the loss is the
symmetric InfoNCE over that whole global batch (medcap.train.contrastive). With
grad_accum_steps > 1, the features of all micro-batches are first computed without grad,
then each micro-batch is recomputed with grad against the cached rest: one extra forward
pass buys the exact large-batch gradient, where averaging per-micro-batch losses would
shrink the pool of negatives to one micro-batch.

Outputs in `out_dir`: config.json (resolved config), metrics.jsonl and its TensorBoard mirror
tensorboard/ (medcap.train.log), training_curve.png, last.pt/.json (resumable: every
`checkpoint_every_steps` and at each epoch end) and best.pt/.json (best validation mean
recall). `load_encoder(out_dir)` loads best.pt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from medcap.atomic import write_json_atomic
from medcap.config import DEFAULTS, TrainConfig
from medcap.encoder.checkpoint import load_train_state, read_sidecar
from medcap.errors import InputError
from medcap.locking import output_lock
from medcap.train.contrastive import world
from medcap.train.data import CaseTensors, epoch_batches
from medcap.train.evaluate import validate
from medcap.train.log import CURVE_FILE, MetricsLog, plot_training_curve
from medcap.train.setup import (
    CONFIG_FILE,
    Run,
    build_run,
    check_resumable,
    init_distributed,
    load_split,
    open_records,
    save_checkpoint,
)
from medcap.train.state import Position, unpack_train_state, warmup_cosine
from medcap.train.step import micro_batch_groups, prepare, train_step
from medcap.types import Skipped

log = logging.getLogger(__name__)

LAST, BEST = "last.pt", "best.pt"
StepHook = Callable[[int, float], None]


@dataclass
class TrainResult:
    """What a training run produced."""

    out_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    steps: int  # optimizer steps done in total (resumed runs included)
    epochs: int  # epochs fully done
    best_metrics: dict[str, float]
    last_metrics: dict[str, float]
    skipped: list[Skipped] = field(default_factory=list)
    stopped_early: bool = False  # by max_minutes


def train_encoder(
    data: Any,
    out_dir: str | Path,
    *,
    model: str = DEFAULTS.encoder.model,
    cfg: TrainConfig = DEFAULTS.train,
    resume: bool = False,
    progress: bool = False,
    on_step: StepHook | None = None,
) -> TrainResult:
    """Fine-tune the encoder `model` (a spec) on the train split of `data`; write `out_dir`.

    `data` is a dataset source (see medcap.data.readers.open_dataset) or an opened Dataset.
    `resume` continues from `out_dir/last.pt` (and starts fresh when there is none).
    `on_step(step, loss)` runs after every optimizer step and its checkpoint; an exception
    raised there stops the run as a crash would (the resume tests use it).

    >>> train_encoder("phantoms/", "runs/tiny", cfg=replace_set(DEFAULTS.train, epochs=2))
    """
    out = Path(out_dir)
    if min(cfg.grad_accum_steps, cfg.batch_size, cfg.epochs, cfg.checkpoint_every_steps) < 1:
        raise InputError(
            "batch size, accumulation steps, epochs and checkpoint interval must be >= 1"
        )
    rank, world_size, device, created = init_distributed(cfg.device)
    threads = torch.get_num_threads()
    if cfg.num_threads:
        # On a shared CPU, fewer threads than cores avoid spin-waiting on busy cores.
        torch.set_num_threads(cfg.num_threads)
    try:
        # Process 0 writes the run folder, so it alone holds the folder's lock.
        with output_lock(out) if rank == 0 else contextlib.nullcontext():
            if (out / LAST).exists() and not resume:
                raise InputError(
                    f"{out} already holds a training run; pass --resume to continue it, "
                    "or another --out"
                )
            torch.manual_seed(cfg.seed)
            run = build_run(model, cfg, rank, world_size, device)
            loop = _Loop(run, out, data, progress, on_step)
            try:
                return loop.fit(resume and (out / LAST).exists())
            finally:
                loop.metrics.close()  # a crashed run keeps the events it logged
    finally:
        torch.set_num_threads(threads)
        if created:
            dist.destroy_process_group()


class _Loop:
    """The epochs of one run: steps, logging, checkpoints, validation, best tracking."""

    def __init__(self, run: Run, out: Path, data: Any, progress: bool, on_step: StepHook | None):
        self.run, self.out, self.data = run, out, data
        self.progress, self.on_step = progress, on_step
        self.metrics = MetricsLog(out, tensorboard=run.cfg.tensorboard)
        self.pos = Position()
        self.last_metrics: dict[str, float] = {}
        self.best_metrics: dict[str, float] = {}
        self.clock = time.monotonic()
        self.saved_step = 0  # the step of the newest last.pt

    # -- setup -------------------------------------------------------------------------
    def _load_data(self) -> None:
        run = self.run
        dataset = open_records(self.data)
        run.source = str(getattr(dataset, "name", self.data))
        run.data_fingerprint = str(dataset.fingerprint())
        self.train = load_split(dataset, "train", None, run)
        self.valid: CaseTensors | None = None
        if run.rank == 0:
            self.valid = load_split(dataset, "valid", run.cfg.eval_max_items, run)
            if len(self.valid) < 2:
                log.warning("%s has no validation split: best.pt is the last epoch", run.source)
        # Cached batches are exact slices of one permutation: every process's are equal in size.
        run.equal_batches = self.train.cached
        if run.device.type == "cuda" and self.train.images is not None:
            # A cache that fits the budget lives on the GPU: a step never waits for the host.
            self.train.images = self.train.images.to(run.device)
            self.train.tokens = self.train.tokens.to(run.device)

    def _fit_batch_size(self) -> None:
        run, n = self.run, len(self.train)
        per_step = run.world_size * run.cfg.grad_accum_steps
        if n >= per_step * run.cfg.batch_size:
            return
        batch_size = n // per_step
        if batch_size < 2:
            raise InputError(
                f"{run.source}: {n} decodable training cases are too few; need {2 * per_step}"
            )
        log.warning(
            "only %d training cases: batch size %d -> %d", n, run.cfg.batch_size, batch_size
        )
        run.cfg = dataclasses.replace(run.cfg, batch_size=batch_size)

    def _setup(self, resume: bool) -> None:
        run = self.run
        self._load_data()
        self._fit_batch_size()
        cfg = run.cfg
        self.steps_per_epoch = len(self.train) // (
            run.world_size * cfg.batch_size * cfg.grad_accum_steps
        )
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        run.scheduler = torch.optim.lr_scheduler.LambdaLR(
            run.optimizer, warmup_cosine(self.total_steps, cfg.warmup_steps, cfg.min_lr_ratio)
        )
        if resume:
            saved = check_resumable(self.out, run, self.out / LAST)
            state_dict, train_state = load_train_state(self.out / LAST)
            run.core.load_state_dict(state_dict)
            self.pos = unpack_train_state(train_state, run.optimizer, run.scheduler, run.scaler)
            self._check_length(int(saved.get("total_steps") or self.total_steps))
            self.saved_step = self.pos.step
            log.info("resuming %s at step %d (epoch %d)", self.out, self.pos.step, self.pos.epoch)
            if run.rank == 0:
                self.metrics.start(resume_step=self.pos.step)
                self.best_metrics = (
                    dict(read_sidecar(self.out / BEST).get("metrics") or {})
                    if (self.out / BEST).exists()
                    else {}
                )
        elif run.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            self.metrics.start()
        if run.rank == 0:
            self._write_config()

    def _check_length(self, saved_total: int) -> None:
        """A resumed run may be extended (more epochs or steps), never cut below its past.

        Extending recomputes the warmup + cosine schedule over the new total: from the
        resume step on, the learning rate is the one the longer schedule has at that step
        (higher than where the shorter one was), decaying to min_lr at the new end.
        """
        pos, cfg = self.pos, self.run.cfg
        if cfg.epochs < pos.epoch or self.total_steps < pos.step:
            asked = f"--epochs {cfg.epochs}" + (
                f" with --max-steps {cfg.max_steps}" if cfg.max_steps is not None else ""
            )
            raise InputError(
                f"{self.out} has trained {pos.epoch} epochs ({pos.step} steps) already; "
                f"{asked} would end before that; pass more to extend it, or train into "
                "another --out"
            )
        schedule = self.run.scheduler
        groups = self.run.optimizer.param_groups
        for group, base_lr, factor in zip(
            groups, schedule.base_lrs, schedule.lr_lambdas, strict=True
        ):
            group["lr"] = base_lr * factor(schedule.last_epoch)  # the schedule in force now
        if self.total_steps != saved_total:
            log.warning(
                "%s: training length %d -> %d steps; the learning-rate schedule is recomputed "
                "for the new length (lr now %.3g)",
                self.out, saved_total, self.total_steps, groups[0]["lr"],
            )  # fmt: skip

    def _write_config(self) -> None:
        run = self.run
        write_json_atomic(
            self.out / CONFIG_FILE,
            {
                "model": run.spec,
                "data": run.source if hasattr(self.data, "records") else str(self.data),
                "dataset_fingerprint": run.data_fingerprint,
                "train": dataclasses.asdict(run.cfg),
                "world_size": run.world_size,
                "device": str(run.device),
                "train_cases": len(self.train),
                "valid_cases": len(self.valid) if self.valid is not None else 0,
                "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps,
                "skipped": [dataclasses.asdict(s) for s in self.train.skipped],
            },
        )

    # -- the loop ----------------------------------------------------------------------
    def fit(self, resume: bool) -> TrainResult:
        self._setup(resume)
        run, cfg = self.run, self.run.cfg
        deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes else None
        bar = _progress(self.total_steps, self.pos.step, self.progress and run.rank == 0)
        stopped_early = False
        tick = (time.monotonic(), self.pos.step, 0.0, 0)
        while (
            self.pos.epoch < cfg.epochs and self.pos.step < self.total_steps and not stopped_early
        ):
            steps = epoch_batches(
                len(self.train),
                cfg.batch_size,
                cfg.grad_accum_steps,
                epoch=self.pos.epoch,
                seed=cfg.seed,
                rank=run.rank,
                world_size=run.world_size,
            )
            for group in micro_batch_groups(run, self.train, steps, self.pos.batch):
                loss = train_step(run, prepare(run, self.train, group, self.pos.step))
                self.pos.step += 1
                self.pos.batch += 1
                bar.update(1)
                tick = self._log_train(loss, tick)
                if self.pos.batch < len(steps) and self.pos.step % cfg.checkpoint_every_steps == 0:
                    self._checkpoint()
                if self.on_step is not None:
                    self.on_step(self.pos.step, float(loss))
                stopped_early = _time_is_up(deadline, run.device)
                if self.pos.step >= self.total_steps or stopped_early:
                    break
            if self.pos.batch >= len(steps):
                self.pos.epoch, self.pos.batch = self.pos.epoch + 1, 0
            self._end_of_epoch()
        if run.rank == 0 and (self.pos.step != self.saved_step or not (self.out / LAST).exists()):
            self._checkpoint()  # the final state, resumable (a later run may add epochs)
        bar.close()
        return TrainResult(
            self.out,
            self.out / BEST,
            self.out / LAST,
            self.pos.step,
            self.pos.epoch,
            self.best_metrics,
            self.last_metrics,
            list(self.train.skipped),
            stopped_early,
        )

    def _log_train(self, loss: torch.Tensor, tick: tuple[float, int, Any, int]) -> Any:
        since, since_step, loss_sum, count = tick
        loss_sum, count = loss_sum + loss, count + 1
        step, cfg, run = self.pos.step, self.run.cfg, self.run
        if run.rank != 0 or (step % cfg.log_every_steps and step != 1):
            return since, since_step, loss_sum, count
        # Reading the loss waits for the GPU: only then has this interval's work been done.
        mean_loss = float(loss_sum) / count
        now = time.monotonic()
        samples = (step - since_step) * cfg.batch_size * cfg.grad_accum_steps * run.world_size
        self.metrics.append(
            "train",
            step=step,
            epoch=self.pos.epoch,
            loss=mean_loss,
            lr=run.optimizer.param_groups[0]["lr"],
            logit_scale=float(run.core.logit_scale.detach().exp()),
            samples_per_s=samples / max(now - since, 1e-9),
        )
        return now, step, 0.0, 0

    def _checkpoint(self, metrics: dict[str, float] | None = None) -> None:
        if self.run.rank != 0:
            return
        now = time.monotonic()
        self.pos.elapsed_s += now - self.clock
        self.clock = now
        save_checkpoint(
            self.run, self.out / LAST, self.pos, metrics or self.last_metrics, resumable=True
        )
        self.saved_step = self.pos.step
        self.metrics.flush()  # TensorBoard holds what last.pt has seen, as metrics.jsonl does
        plot_training_curve(self.metrics.read(), self.out / CURVE_FILE)

    def _end_of_epoch(self) -> None:
        run = self.run
        if run.rank == 0:
            metrics: dict[str, float] = {}
            if self.valid is not None and len(self.valid) >= 2:
                metrics = validate(
                    run.core,
                    self.valid,
                    device=run.device,
                    mean=run.mean,
                    std=run.std,
                    batch_size=max(run.cfg.batch_size, 64),
                    dtype=run.dtype,
                )
                self.metrics.append("eval", step=self.pos.step, epoch=self.pos.epoch, **metrics)
                log.info(
                    "epoch %d step %d: image->text R@1 %.3f R@5 %.3f R@10 %.3f",
                    self.pos.epoch,
                    self.pos.step,
                    metrics["i2t_R@1"],
                    metrics["i2t_R@5"],
                    metrics["i2t_R@10"],
                )
            self.last_metrics = metrics
            score = metrics.get("mean_recall", 0.0)
            if score > self.pos.best_score or not (self.out / BEST).exists():
                self.pos.best_score, self.pos.best_epoch = score, self.pos.epoch
                self.best_metrics = metrics
                save_checkpoint(run, self.out / BEST, self.pos, metrics, resumable=False)
            # Small datasets have many short epochs: checkpoint them at the configured pace.
            if self.pos.step - self.saved_step >= run.cfg.checkpoint_every_steps:
                self._checkpoint(metrics)
        if run.world_size > 1:
            dist.barrier()


def _time_is_up(deadline: float | None, device: torch.device) -> bool:
    if deadline is None:
        return False
    up = time.monotonic() >= deadline
    if world()[1] > 1:  # every process must stop after the same step
        flag = torch.tensor([1.0 if up else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        up = bool(flag.item() > 0)
    return up


def _progress(total: int, done: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=done, unit="step", desc="training", disable=None if enabled else True
    )
