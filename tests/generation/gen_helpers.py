"""Helpers for the generation tests: phantom-style captions, neighbour hits, images."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from medcap.types import Hit

MODALITIES = ("CT", "MRI", "X-ray", "Ultrasound")
REGIONS = ("chest", "brain", "abdomen", "knee")
FINDINGS = ("nodule", "mass", "cyst", "fracture")
SIDES = ("left", "right")


def make_captions(n: int, seed: int = 0) -> list[str]:
    """Phantom-style captions built from a few attributes."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(MODALITIES)} of the {rng.choice(REGIONS)} showing a "
        f"{rng.randint(1, 5)} cm {rng.choice(FINDINGS)} on the {rng.choice(SIDES)} (arrow)."
        for _ in range(n)
    ]


def make_hits(captions: list[str], prefix: str = "case") -> list[Hit]:
    return [
        Hit(rank=i + 1, score=round(0.9 - 0.05 * i, 4), image_id=f"{prefix}-{i}", caption=c)
        for i, c in enumerate(captions)
    ]


def make_image(i: int, mode: str = "RGB") -> Image.Image:
    """A seeded noise image; sizes vary with `i`, grayscale when mode is "L"."""
    rng = np.random.default_rng(i)
    shape = (64, 64 + 8 * (i % 3)) if mode == "L" else (64, 64 + 8 * (i % 3), 3)
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=None)
