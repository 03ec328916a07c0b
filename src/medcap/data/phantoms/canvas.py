"""A label canvas for phantoms: shapes are painted as tissue ids, coloured per modality later.

Coordinates are normalised to [0, 1] with x to the image's right and y down. A small
random affine jitter (scale, shift) is applied to everything drawn, so anatomy varies
from case to case while staying in place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

# Tissue ids (label values). Palettes in phantom_render map them to intensities.
AIR, FAT, SOFT, ORGAN, KIDNEY, LUNG, BONE, MARROW, FLUID = 0, 1, 2, 3, 4, 5, 6, 7, 8
BLOOD, GRAY, WHITE, LESION, CALC, HEART, GAS, RIB, NECROSIS, COUCH = range(9, 19)
N_TISSUES = 19

BODY = (FAT, SOFT, ORGAN, KIDNEY, GAS, HEART, BLOOD, FLUID)  # where soft-tissue findings may spill

Point = tuple[float, float]


class Canvas:
    """Tissue labels of one phantom image, drawn with PIL in normalised coordinates."""

    def __init__(self, size: int, rng: np.random.Generator, jitter: float = 0.02) -> None:
        self.size = size
        self.scale = 1.0 + float(rng.uniform(-jitter, jitter)) * 2.0
        self.dx = float(rng.uniform(-jitter, jitter))
        self.dy = float(rng.uniform(-jitter, jitter))
        self.image = Image.new("L", (size, size), AIR)
        self.draw = ImageDraw.Draw(self.image)

    def map(self, x: float, y: float) -> Point:
        """Normalised anatomy coordinates -> jittered normalised image coordinates."""
        return ((x - 0.5) * self.scale + 0.5 + self.dx, (y - 0.5) * self.scale + 0.5 + self.dy)

    def px(self, x: float, y: float) -> Point:
        """Normalised anatomy coordinates -> pixel coordinates."""
        u, v = self.map(x, y)
        return (u * self.size, v * self.size)

    def fill(self, tissue: int) -> None:
        """Set every pixel to `tissue`."""
        self.draw.rectangle((0, 0, self.size, self.size), fill=tissue)

    def polygon(
        self, points: Sequence[Point], tissue: int, host: Sequence[int] | None = None
    ) -> None:
        """Fill a polygon; with `host`, only pixels that currently hold one of those tissues."""
        xy = [self.px(x, y) for x, y in points]
        if host is None:
            self.draw.polygon(xy, fill=tissue)
            return
        mask = Image.new("L", self.image.size, 0)
        ImageDraw.Draw(mask).polygon(xy, fill=255)
        self._apply(np.asarray(mask) > 0, tissue, host)

    def _apply(self, mask: NDArray[np.bool_], tissue: int, host: Sequence[int]) -> None:
        labels = np.array(self.image)
        labels[mask & np.isin(labels, host)] = tissue
        self.image = Image.fromarray(labels)
        self.draw = ImageDraw.Draw(self.image)

    def ellipse(
        self,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        tissue: int,
        angle_deg: float = 0.0,
        host: Sequence[int] | None = None,
    ) -> None:
        """Fill an ellipse with radii (rx, ry), rotated by `angle_deg`."""
        self.polygon(ellipse_points(cx, cy, rx, ry, angle_deg), tissue, host)

    def line(
        self,
        points: Sequence[Point],
        tissue: int,
        width: float,
        host: Sequence[int] | None = None,
    ) -> None:
        """A polyline `width` (normalised) wide, at least one pixel; `host` as in `polygon`."""
        xy = [self.px(x, y) for x, y in points]
        pixels = max(1, round(width * self.size * self.scale))
        target, value = (
            (self.image, tissue) if host is None else (Image.new("L", self.image.size, 0), 255)
        )
        draw = ImageDraw.Draw(target)
        draw.line(xy, fill=value, width=pixels, joint="curve")
        if pixels > 2:  # round caps so thick polylines have no notches at their ends
            radius = pixels / 2.0
            for u, v in (xy[0], xy[-1]):
                draw.ellipse((u - radius, v - radius, u + radius, v + radius), fill=value)
        if host is not None:
            self._apply(np.asarray(target) > 0, tissue, host)

    def labels(self) -> NDArray[np.uint8]:
        """The label map, (size, size) uint8 tissue ids."""
        return np.array(self.image)


def ellipse_points(
    cx: float, cy: float, rx: float, ry: float, angle_deg: float = 0.0, n: int = 32
) -> list[Point]:
    """`n` points on an ellipse rotated by `angle_deg`."""
    cos_a, sin_a = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    points = []
    for i in range(n):
        t = 2.0 * math.pi * i / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        points.append((cx + x * cos_a - y * sin_a, cy + x * sin_a + y * cos_a))
    return points


def blob_points(
    cx: float, cy: float, radius: float, rng: np.random.Generator, roughness: float, n: int = 14
) -> list[Point]:
    """A closed lobulated outline: radius varies smoothly by up to `roughness` (fraction)."""
    phases = rng.uniform(0, 2 * math.pi, size=3)
    amplitudes = rng.uniform(0.3, 1.0, size=3) * roughness / 1.5
    points = []
    for i in range(n):
        t = 2.0 * math.pi * i / n
        wobble = sum(
            a * math.sin((k + 2) * t + p)
            for k, (a, p) in enumerate(zip(amplitudes, phases, strict=True))
        )
        r = radius * (1.0 + wobble)
        points.append((cx + r * math.cos(t), cy + r * math.sin(t)))
    return points


def bezier(p0: Point, p1: Point, p2: Point, n: int = 12) -> list[Point]:
    """Points along a quadratic Bezier curve from p0 to p2 with control point p1."""
    out = []
    for i in range(n + 1):
        t = i / n
        a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t**2
        out.append((a * p0[0] + b * p1[0] + c * p2[0], a * p0[1] + b * p1[1] + c * p2[1]))
    return out


def gaussian_blur(values: NDArray[np.float32], sigma_px: float) -> NDArray[np.float32]:
    """Separable Gaussian blur of a 2-D float array (edges replicated); sigma in pixels."""
    if sigma_px <= 0.3:
        return values
    radius = max(1, int(math.ceil(3.0 * sigma_px)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2).astype(np.float32)
    taps /= taps.sum()
    out = values
    for axis in (0, 1):
        padded = np.pad(
            out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge"
        )
        acc = np.zeros_like(out)
        n = out.shape[axis]
        for i, w in enumerate(taps):
            acc += w * (padded[i : i + n] if axis == 0 else padded[:, i : i + n])
        out = acc
    return out
