"""Radiology-safe image augmentation, applied to whole batches of uint8 tensors.

Mild random resized crop, small rotation, brightness/contrast jitter. No horizontal (or
vertical) flips: a flipped chest film turns "left lower lobe" into the right one, so a flip
would teach the model the wrong caption. Crop and rotation are one affine resampling per
batch (`affine_grid` + `grid_sample`), cheap on CPU and on GPU, so images are decoded once
and augmented on the training device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medcap.config import TrainConfig

_ASPECT_JITTER = 1.1  # crop aspect ratio in [1/1.1, 1.1]: anatomy keeps its proportions


@dataclass(frozen=True)
class AugmentParams:
    """How strong each augmentation is (from TrainConfig)."""

    min_scale: float = 0.8
    max_rotate_deg: float = 7.0
    brightness: float = 0.15
    contrast: float = 0.15

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> AugmentParams:
        return cls(cfg.aug_min_scale, cfg.aug_max_rotate_deg, cfg.aug_brightness, cfg.aug_contrast)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device) * (high - low) + low


def augment_batch(
    images: torch.Tensor, params: AugmentParams, generator: torch.Generator
) -> torch.Tensor:
    """Augment uint8 images (B, 3, H, W) -> float in [0, 1], same shape and device.

    Random numbers come from `generator`, so a run seeded per step replays the same
    augmentation after a resume. Give it the images' device: numbers drawn on the CPU and
    copied to a GPU make the host wait for the GPU at every step.
    """
    b = images.shape[0]
    x = images.float() / 255.0
    area = _uniform(b, params.min_scale, 1.0, generator)
    log_r = math.log(_ASPECT_JITTER) if params.min_scale < 1.0 else 0.0  # no crop: no reshape
    ratio = torch.exp(_uniform(b, -log_r, log_r, generator))
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = _uniform(b, -1.0, 1.0, generator) * (1.0 - sx)
    ty = _uniform(b, -1.0, 1.0, generator) * (1.0 - sy)
    angle = torch.deg2rad(_uniform(b, -params.max_rotate_deg, params.max_rotate_deg, generator))
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output grid -> input coordinates: scale (the crop), rotate, then shift the crop centre.
    theta = torch.stack(
        [torch.stack([sx * cos, -sy * sin, tx], 1), torch.stack([sx * sin, sy * cos, ty], 1)], 1
    ).to(device=x.device, dtype=x.dtype)  # a no-op when the generator is on x's device
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    bright = (1.0 + _uniform(b, -params.brightness, params.brightness, generator)).to(x.device)
    contrast = (1.0 + _uniform(b, -params.contrast, params.contrast, generator)).to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast.view(-1, 1, 1, 1) + mean
    x = x * bright.view(-1, 1, 1, 1)
    return x.clamp_(0.0, 1.0)
