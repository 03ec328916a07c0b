"""Symmetric InfoNCE over a global batch: gathering across processes, and exact accumulation.

Every process computes the loss over the *global* batch (all processes, all accumulation
micro-batches). Gradients reach only the features this process computed with grad; the other
rows are detached copies. Summed over micro-batches, and all-reduced by DDP, that gives the
exact gradient of the large-batch loss:

- the backward pass uses `loss * world_size`, because DDP averages (not sums) over processes;
- the temperature (and a SigLIP model's logit bias) enters each micro-batch's loss through
  `scale_grad(s, f)`, with f = 1 / world_size on the first micro-batch and 0 on the rest, so
  its gradient is counted once rather than once per micro-batch and per process.

Models with a `logit_bias` (SigLIP-style, open_clip `init_logit_bias`) train with the pairwise
sigmoid loss they were built for; the others with the symmetric softmax (InfoNCE) loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy of (n, d) L2-normalised image/text features; pair i is (i, i)."""
    logits = logit_scale * image.float() @ text.float().T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def sigmoid_loss(
    image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, logit_bias: torch.Tensor
) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss of (n, d) features: every (i, j) is a binary decision,
    positive on the diagonal; summed over pairs and divided by n (as open_clip's SigLipLoss)."""
    logits = logit_scale * image.float() @ text.float().T + logit_bias
    n = logits.shape[0]
    labels = 2 * torch.eye(n, device=logits.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / n


def pair_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor | None,
) -> torch.Tensor:
    """The model's own contrastive loss: sigmoid with a logit bias, else softmax (InfoNCE)."""
    if logit_bias is None:
        return clip_loss(image, text, logit_scale)
    return sigmoid_loss(image, text, logit_scale, logit_bias)


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """`x` in the forward pass; its gradient multiplied by `factor` in the backward pass."""
    if factor == 1.0:
        return x
    detached = x.detach()
    return detached + (x - detached) * factor


def world() -> tuple[int, int]:
    """(rank, world_size) of the current process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_parts(features: torch.Tensor, *, equal_sizes: bool = False) -> list[torch.Tensor]:
    """Every process's (n_r, d) features, detached, in rank order (sizes may differ).

    `equal_sizes` (every process holds as many rows, e.g. batches from an in-memory cache)
    skips the size exchange, whose read-back would make the host wait for the GPU.
    """
    rank, size = world()
    if size == 1:
        return [features.detach()]
    if equal_sizes:
        parts = [torch.empty_like(features) for _ in range(size)]
        dist.all_gather(parts, features.detach().contiguous())
        return parts
    n = torch.tensor([features.shape[0]], device=features.device)
    sizes = [torch.zeros_like(n) for _ in range(size)]
    dist.all_gather(sizes, n)
    longest = int(max(int(s) for s in sizes))
    padded = features.detach().new_zeros((longest, *features.shape[1:]))
    padded[: features.shape[0]] = features.detach()
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    return [p[: int(s)] for p, s in zip(parts, sizes, strict=True)]


def with_local(parts: list[torch.Tensor], local: torch.Tensor, rank: int) -> torch.Tensor:
    """Concatenate gathered parts, with this process's part replaced by `local` (with grad)."""
    return torch.cat([local if r == rank else p.to(local.dtype) for r, p in enumerate(parts)])
