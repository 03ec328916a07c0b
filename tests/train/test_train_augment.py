"""Radiology augmentation: mild, seeded, and never mirrors left and right."""

from __future__ import annotations

import torch

from medcap.encoder.decode import normalize
from medcap.train.augment import AugmentParams, augment_batch


def _left_bright(n: int = 64) -> torch.Tensor:
    images = torch.full((n, 3, 64, 64), 20, dtype=torch.uint8)
    images[:, :, 8:56, 4:24] = 230  # a bright structure on the image's left
    return images


def test_no_augmentation_is_identity() -> None:
    images = _left_bright(4)
    off = AugmentParams(min_scale=1.0, max_rotate_deg=0.0, brightness=0.0, contrast=0.0)
    out = augment_batch(images, off, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, images.float() / 255, atol=1e-5, rtol=0)


def test_left_stays_left_and_changes_are_mild() -> None:
    images = _left_bright()
    out = augment_batch(images, AugmentParams(), torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    left, right = out[..., :32].mean(dim=(1, 2, 3)), out[..., 32:].mean(dim=(1, 2, 3))
    assert bool((left > right + 0.2).all())  # a flip would put the structure on the right
    assert not torch.allclose(out[0], out[1])  # each image gets its own draw
    diff = (out - images.float() / 255).abs().mean(dim=(1, 2, 3))
    assert float(diff.max()) < 0.25


def test_same_generator_seed_same_augmentation() -> None:
    images = _left_bright(8)
    a = augment_batch(images, AugmentParams(), torch.Generator().manual_seed(5))
    b = augment_batch(images, AugmentParams(), torch.Generator().manual_seed(5))
    c = augment_batch(images, AugmentParams(), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_normalize_matches_channel_stats() -> None:
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(images, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))
