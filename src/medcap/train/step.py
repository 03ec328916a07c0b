"""One optimizer step: augmentation, global-batch InfoNCE, exact gradient accumulation."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

from medcap.encoder.decode import normalize
from medcap.encoder.encoder import autocast
from medcap.train.augment import AugmentParams, augment_batch
from medcap.train.contrastive import gather_parts, pair_loss, scale_grad, with_local
from medcap.train.data import CaseBatch, CaseTensors
from medcap.train.setup import Run

MicroBatch = tuple[torch.Tensor, torch.Tensor]  # (normalised pixels, token ids)


def micro_batch_groups(
    run: Run, cases: CaseTensors, steps: list[list[list[int]]], first_step: int
) -> Iterator[list[CaseBatch]]:
    """Per remaining step of an epoch: its micro-batches (case indices, uint8 images)."""
    flat = [mb for step in steps[first_step:] for mb in step]
    group: list[CaseBatch] = []
    for batch in cases.image_batches(flat):
        group.append(batch)
        if len(group) == run.cfg.grad_accum_steps:
            yield group
            group = []


def prepare(run: Run, cases: CaseTensors, group: list[CaseBatch], step: int) -> list[MicroBatch]:
    """Move a step's micro-batches to the device, augment and normalise them.

    With the cache on the GPU nothing here waits for the GPU: indices, tokens and random
    numbers are already there (a host sync per step costs a few percent of throughput).
    """
    params = AugmentParams.from_config(run.cfg)
    # One generator per (seed, step, rank): a resumed run replays the same augmentation.
    seed = run.cfg.seed * 1_000_003 + step * 101 + run.rank
    generator = torch.Generator(device=run.device).manual_seed(seed)
    micro = []
    for _, images, rows in group:
        x = images.to(run.device, non_blocking=True)
        x = augment_batch(x, params, generator) if run.cfg.augment else x
        tokens = cases.tokens[rows.to(cases.tokens.device)].to(run.device, non_blocking=True)
        micro.append((normalize(x, run.mean, run.std), tokens))
    return micro


Features = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


def _features(run: Run, pixels: torch.Tensor, tokens: torch.Tensor, grad: bool) -> Features:
    """(image, text, logit scale, logit bias or None), features in float32."""
    module = run.model if grad else run.core
    with torch.set_grad_enabled(grad), autocast(run.device, run.dtype):
        out = module(pixels, tokens)
    bias = out[3].float() if len(out) > 3 else None  # SigLIP-style models add a logit bias
    return out[0].float(), out[1].float(), out[2].float(), bias


def _loss(
    scale: torch.Tensor,
    bias: torch.Tensor | None,
    image: torch.Tensor,
    text: torch.Tensor,
    factor: float,
) -> torch.Tensor:
    """The global-batch loss with the temperature's (and bias's) gradient scaled by `factor`."""
    bias = scale_grad(bias, factor) if bias is not None else None
    return pair_loss(image, text, scale_grad(scale, factor), bias)


def _backward(run: Run, loss: torch.Tensor) -> None:
    # DDP averages gradients over processes; each holds a share of the global loss's.
    scaled = loss * run.world_size
    (run.scaler.scale(scaled) if run.scaler is not None else scaled).backward()


def train_step(run: Run, micro: list[MicroBatch]) -> torch.Tensor:
    """One optimizer step over the micro-batches of this process; returns the global loss
    (a detached 0-d tensor: reading it waits for the GPU, so the loop reads it only to log)."""
    inv_world = 1.0 / run.world_size
    equal = run.equal_batches
    if len(micro) == 1:
        image, text, scale, bias = _features(run, *micro[0], grad=True)
        all_image = with_local(gather_parts(image, equal_sizes=equal), image, run.rank)
        all_text = with_local(gather_parts(text, equal_sizes=equal), text, run.rank)
        loss = _loss(scale, bias, all_image, all_text, inv_world)
        _backward(run, loss)
    else:
        cached = [_features(run, p, t, grad=False) for p, t in micro]
        local_image = torch.cat([c[0] for c in cached])
        local_text = torch.cat([c[1] for c in cached])
        image_parts = gather_parts(local_image, equal_sizes=equal)
        text_parts = gather_parts(local_text, equal_sizes=equal)
        bounds = [0]
        for c in cached:
            bounds.append(bounds[-1] + c[0].shape[0])
        for j, (pixels, tokens) in enumerate(micro):
            last = j == len(micro) - 1
            no_sync = getattr(run.model, "no_sync", None)
            sync = no_sync() if no_sync is not None and not last else contextlib.nullcontext()
            with sync:
                image, text, scale, bias = _features(run, pixels, tokens, grad=True)
                lo, hi = bounds[j], bounds[j + 1]
                mine_image = torch.cat([local_image[:lo], image, local_image[hi:]])
                mine_text = torch.cat([local_text[:lo], text, local_text[hi:]])
                all_image = with_local(image_parts, mine_image, run.rank)
                all_text = with_local(text_parts, mine_text, run.rank)
                # The temperature's gradient is counted once per step, not per micro-batch.
                loss = _loss(scale, bias, all_image, all_text, inv_world if j == 0 else 0.0)
                _backward(run, loss)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    with torch.no_grad():
        run.core.logit_scale.clamp_(0, math.log(run.cfg.logit_scale_max))
    return loss.detach()
