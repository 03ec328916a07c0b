"""Ultrasound phantoms: the tissue layers seen under a probe for each region, as labels.

The sector shape, speckle, shadows and enhancement are added in phantom_render.
"""

from __future__ import annotations

import numpy as np

from medcap.data.phantoms.canvas import (
    AIR,
    BONE,
    CALC,
    FAT,
    FLUID,
    KIDNEY,
    LUNG,
    ORGAN,
    RIB,
    SOFT,
    Canvas,
    bezier,
)


def draw_ultrasound(canvas: Canvas, region: str, rng: np.random.Generator) -> None:
    """Draw `region` as seen by an ultrasound probe at the top of the image."""
    _ULTRASOUND[region](canvas, rng)


def _us_wall(c: Canvas) -> None:
    c.polygon([(0.0, 0.0), (1.0, 0.0), (1.0, 0.12), (0.0, 0.12)], FAT)
    c.polygon([(0.0, 0.12), (1.0, 0.12), (1.0, 0.19), (0.0, 0.19)], SOFT)


def _us_abdomen(c: Canvas, rng: np.random.Generator) -> None:
    c.fill(ORGAN)
    _us_wall(c)
    for _ in range(3):
        c.ellipse(
            rng.uniform(0.25, 0.75), rng.uniform(0.3, 0.6), 0.025, 0.018, FLUID, rng.uniform(0, 180)
        )
    c.ellipse(0.64, 0.8, 0.17, 0.09, KIDNEY, -8)
    c.ellipse(0.64, 0.8, 0.1, 0.035, FAT, -8)
    c.line(bezier((0.05, 0.93), (0.5, 0.84), (0.95, 0.95)), CALC, 0.014)  # diaphragm


def _us_pelvis(c: Canvas, rng: np.random.Generator) -> None:
    c.fill(SOFT)
    _us_wall(c)
    c.ellipse(0.5, 0.42, 0.22, 0.13, FLUID)  # bladder
    c.ellipse(0.5, 0.72, 0.15, 0.09, ORGAN)


def _us_chest(c: Canvas, rng: np.random.Generator) -> None:
    c.fill(LUNG)
    _us_wall(c)
    c.polygon([(0.0, 0.19), (1.0, 0.19), (1.0, 0.27), (0.0, 0.27)], SOFT)
    c.ellipse(0.24, 0.22, 0.08, 0.03, BONE)
    c.ellipse(0.76, 0.22, 0.08, 0.03, BONE)
    c.line([(0.0, 0.28), (1.0, 0.28)], RIB, 0.012)  # pleural line
    for y in (0.5, 0.72):  # A-lines: reverberations of the pleura
        c.line([(0.0, y), (1.0, y)], RIB, 0.008, host=(LUNG,))


def _us_knee(c: Canvas, rng: np.random.Generator) -> None:
    c.fill(SOFT)
    _us_wall(c)
    for k in range(6):  # fibrillar tendon
        y = 0.22 + k * 0.025
        c.line([(0.1, y), (0.9, y + 0.01)], RIB, 0.006)
    c.line(bezier((0.0, 0.66), (0.5, 0.58), (1.0, 0.66)), FLUID, 0.03)  # cartilage
    c.line(bezier((0.0, 0.7), (0.5, 0.62), (1.0, 0.7)), BONE, 0.02)
    c.polygon([(0.0, 0.71), (1.0, 0.71), (1.0, 1.0), (0.0, 1.0)], AIR, host=(SOFT,))


_ULTRASOUND = {"chest": _us_chest, "abdomen": _us_abdomen, "pelvis": _us_pelvis, "knee": _us_knee}
