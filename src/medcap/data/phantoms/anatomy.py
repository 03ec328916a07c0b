"""Anatomy drawn for each body region and view, as tissue labels on a `Canvas`.

Views: `axial`/`coronal` sections (CT, MRI, PET), `frontal` projections (X-ray, and the
faint background of angiography) and `sector` (ultrasound). Radiological convention:
the patient's right is on the image's left, so the heart, the spleen and the stomach
bubble sit on the image's right, and a right knee has its fibula on the image's left.
"""

from __future__ import annotations

import math

import numpy as np

from medcap.data.phantoms.canvas import (
    BLOOD,
    BONE,
    FAT,
    FLUID,
    GAS,
    GRAY,
    HEART,
    KIDNEY,
    LUNG,
    MARROW,
    ORGAN,
    RIB,
    SOFT,
    WHITE,
    Canvas,
    Point,
    bezier,
)
from medcap.data.phantoms.ultrasound import draw_ultrasound

# Where a finding sits for each (side, level): patient's right -> image left.
SITE_X = {"right": 0.32, "left": 0.68}
SITE_Y = {"upper": 0.36, "lower": 0.64}
_REGION_SITE_X = {"knee": {"right": 0.38, "left": 0.62}, "spine": {"right": 0.3, "left": 0.7}}
_SECTOR_SITE = ({"right": 0.36, "left": 0.64}, {"upper": 0.4, "lower": 0.66})


def site(region: str, view: str, side: str, level: str) -> Point:
    """Centre of a finding at (side, level), in anatomy coordinates."""
    if view == "sector":
        return _SECTOR_SITE[0][side], _SECTOR_SITE[1][level]
    return _REGION_SITE_X.get(region, SITE_X)[side], SITE_Y[level]


def bone_site(region: str, view: str, side: str, level: str) -> tuple[float, float, float]:
    """A point on bone near (side, level) and the bone's long-axis angle in degrees."""
    sign = -1.0 if side == "right" else 1.0
    up = level == "upper"
    if region == "chest":  # a rib on the lateral chest wall
        if view == "axial":
            angle = (
                math.radians(-150 if up else 150)
                if side == "right"
                else math.radians(-30 if up else 30)
            )
            return (
                0.5 + 0.39 * math.cos(angle),
                0.53 + 0.29 * math.sin(angle),
                math.degrees(angle) + 90,
            )
        return 0.5 + sign * 0.33, SITE_Y[level], 70.0 * sign
    if region == "head":  # the skull vault
        angle = math.radians(
            {(-1.0, True): 225, (1.0, True): 315, (-1.0, False): 135, (1.0, False): 45}[(sign, up)]
        )
        return (
            0.5 + 0.355 * math.cos(angle),
            0.5 + 0.425 * math.sin(angle),
            math.degrees(angle) + 90,
        )
    if region == "pelvis":  # iliac wing above, femoral neck/head below
        if view == "axial":
            return (0.5 + sign * 0.3, 0.46, -35.0 * sign) if up else (0.5 + sign * 0.25, 0.66, 90.0)
        return (
            (0.5 + sign * 0.27, 0.33, 60.0 * sign) if up else (0.5 + sign * 0.27, 0.68, 75.0 * sign)
        )
    if region == "knee":  # distal femur above, proximal tibia below
        return 0.5 + sign * 0.08, (0.32 if up else 0.7), 90.0
    # spine: a vertebral body
    return 0.5 + sign * 0.04, _nearest_vertebra(SITE_Y[level]), 0.0


_VERTEBRA_CENTRES = tuple(0.08 + k * 0.14 for k in range(7))


def _nearest_vertebra(y: float) -> float:
    return min(_VERTEBRA_CENTRES, key=lambda c: abs(c - y))


def draw_anatomy(
    canvas: Canvas, region: str, view: str, side_hint: str, rng: np.random.Generator
) -> None:
    """Draw `region` in `view`; `side_hint` is the knee's laterality (which knee is shown)."""
    if view == "sector":
        draw_ultrasound(canvas, region, rng)
    elif region == "knee":
        _knee(canvas, side_hint, section=view != "frontal")
    elif region == "spine":
        _spine(canvas, section=view != "frontal")
    elif view == "frontal":
        _PROJECTIONS[region](canvas, rng)
    else:
        _SECTIONS[region](canvas, rng)


# --- sections (CT, MRI, PET) ---------------------------------------------------------


def _chest_axial(c: Canvas, rng: np.random.Generator) -> None:
    c.ellipse(0.5, 0.53, 0.45, 0.34, FAT)
    c.ellipse(0.5, 0.53, 0.42, 0.31, SOFT)
    for k in range(16):  # ribs around the chest wall, leaving out spine and sternum
        t = 2 * math.pi * k / 16
        if abs(math.sin(t)) > 0.93:
            continue
        x, y = 0.5 + 0.385 * math.cos(t), 0.53 + 0.285 * math.sin(t)
        c.ellipse(x, y, 0.032, 0.014, BONE, math.degrees(t) + 90)
    c.ellipse(0.31, 0.5, 0.15, 0.22, LUNG, -8)
    c.ellipse(0.69, 0.5, 0.15, 0.22, LUNG, 8)
    c.ellipse(0.55, 0.46, 0.11, 0.1, HEART, -20)
    c.ellipse(0.57, 0.7, 0.033, 0.033, BLOOD)  # descending aorta, on the patient's left
    c.ellipse(0.5, 0.76, 0.055, 0.05, BONE)
    c.ellipse(0.5, 0.76, 0.038, 0.034, MARROW)
    c.polygon([(0.49, 0.8), (0.51, 0.8), (0.505, 0.87), (0.495, 0.87)], BONE)
    c.ellipse(0.5, 0.24, 0.04, 0.015, BONE)
    for _ in range(12):  # pulmonary vessels seen end-on
        x, y = rng.uniform(0.2, 0.8), rng.uniform(0.32, 0.7)
        c.ellipse(x, y, 0.006, 0.006, BLOOD, host=(LUNG,))


def _abdomen_coronal(c: Canvas, rng: np.random.Generator) -> None:
    c.ellipse(0.5, 0.55, 0.44, 0.53, FAT)
    c.ellipse(0.5, 0.55, 0.41, 0.5, SOFT)
    c.ellipse(0.3, 0.02, 0.16, 0.1, LUNG)
    c.ellipse(0.7, 0.02, 0.15, 0.09, LUNG)
    c.polygon([(0.12, 0.12), (0.5, 0.1), (0.53, 0.22), (0.42, 0.44), (0.15, 0.5)], ORGAN)  # liver
    c.ellipse(0.78, 0.25, 0.07, 0.11, ORGAN, 20)  # spleen
    c.ellipse(0.62, 0.2, 0.09, 0.06, GAS)  # stomach
    c.ellipse(0.36, 0.55, 0.05, 0.09, KIDNEY, -10)
    c.ellipse(0.64, 0.52, 0.05, 0.09, KIDNEY, 10)
    _vertebral_column(c, 0.1, 0.1)
    for _ in range(9):  # bowel loops
        x, y = rng.uniform(0.22, 0.78), rng.uniform(0.66, 0.9)
        c.ellipse(
            x,
            y,
            0.04,
            0.03,
            FLUID if rng.random() < 0.5 else GAS,
            rng.uniform(0, 180),
            host=(SOFT,),
        )
    c.ellipse(0.18, 0.99, 0.12, 0.07, BONE)
    c.ellipse(0.82, 0.99, 0.12, 0.07, BONE)


def _head_axial(c: Canvas, rng: np.random.Generator) -> None:
    c.ellipse(0.5, 0.5, 0.4, 0.47, SOFT)
    c.ellipse(0.5, 0.5, 0.37, 0.44, BONE)
    c.ellipse(0.5, 0.5, 0.34, 0.41, GRAY)
    c.ellipse(0.5, 0.52, 0.27, 0.33, WHITE)
    for k in range(18):  # sulci
        t = 2 * math.pi * (k + rng.uniform(-0.3, 0.3)) / 18
        p0 = (0.5 + 0.33 * math.cos(t), 0.5 + 0.4 * math.sin(t))
        p1 = (0.5 + 0.28 * math.cos(t), 0.5 + 0.34 * math.sin(t))
        c.line([p0, p1], FLUID, 0.007)
    c.line([(0.5, 0.1), (0.5, 0.9)], FLUID, 0.008)  # interhemispheric fissure
    c.ellipse(0.46, 0.5, 0.025, 0.1, FLUID, 12)
    c.ellipse(0.54, 0.5, 0.025, 0.1, FLUID, -12)


def _pelvis_axial(c: Canvas, rng: np.random.Generator) -> None:
    c.ellipse(0.5, 0.52, 0.46, 0.34, FAT)
    c.ellipse(0.5, 0.52, 0.43, 0.31, SOFT)
    for sign in (-1.0, 1.0):
        c.ellipse(0.5 + sign * 0.3, 0.46, 0.1, 0.045, BONE, -35 * sign)
        c.ellipse(0.5 + sign * 0.3, 0.46, 0.075, 0.025, MARROW, -35 * sign)
        c.ellipse(0.5 + sign * 0.25, 0.66, 0.065, 0.065, BONE)
        c.ellipse(0.5 + sign * 0.25, 0.66, 0.048, 0.048, MARROW)
    c.ellipse(0.5, 0.45, 0.1, 0.08, FLUID)  # bladder
    c.ellipse(0.5, 0.66, 0.04, 0.035, GAS)  # rectum
    c.ellipse(0.5, 0.79, 0.08, 0.04, BONE)
    c.ellipse(0.5, 0.79, 0.06, 0.025, MARROW)


# --- frontal projections (X-ray, angiography background) -----------------------------


def _chest_frontal(c: Canvas, rng: np.random.Generator) -> None:
    c.polygon([(0.38, 0.0), (0.62, 0.0), (0.64, 0.14), (0.36, 0.14)], SOFT)
    c.polygon([(0.1, 0.16), (0.9, 0.16), (0.95, 1.0), (0.05, 1.0)], SOFT)
    c.ellipse(0.31, 0.48, 0.16, 0.31, LUNG)
    c.ellipse(0.69, 0.48, 0.15, 0.3, LUNG)
    c.polygon([(0.45, 0.12), (0.55, 0.12), (0.57, 0.6), (0.43, 0.6)], SOFT)  # mediastinum
    c.ellipse(0.56, 0.66, 0.12, 0.11, HEART)
    c.line([(0.5, 0.0), (0.5, 1.0)], MARROW, 0.05)  # spine behind the mediastinum
    for sign in (-1.0, 1.0):
        c.line(
            [(0.5 + sign * 0.04, 0.17), (0.5 + sign * 0.16, 0.2), (0.5 + sign * 0.33, 0.16)],
            BONE,
            0.022,
        )
        for k in range(7):
            y0 = 0.2 + k * 0.085
            arc = bezier(
                (0.5 + sign * 0.03, y0),
                (0.5 + sign * 0.25, y0 - 0.05),
                (0.5 + sign * 0.38, y0 + 0.09),
            )
            c.line(arc, RIB, 0.012, host=(LUNG,))
    c.ellipse(0.68, 0.86, 0.05, 0.03, GAS)  # gastric bubble under the left hemidiaphragm


def _abdomen_frontal(c: Canvas, rng: np.random.Generator) -> None:
    c.polygon([(0.08, 0.0), (0.92, 0.0), (0.96, 1.0), (0.04, 1.0)], SOFT)
    c.polygon([(0.1, 0.06), (0.48, 0.04), (0.5, 0.16), (0.38, 0.36), (0.12, 0.42)], ORGAN)
    for sign in (-1.0, 1.0):
        c.line(
            bezier((0.5 + sign * 0.08, 0.02), (0.5 + sign * 0.3, 0.0), (0.5 + sign * 0.4, 0.14)),
            BONE,
            0.015,
        )
        c.ellipse(0.5 + sign * 0.26, 0.98, 0.17, 0.1, BONE)
    _vertebral_column(c, 0.08, 0.1)
    for _ in range(11):
        p0 = (rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.85))
        p2 = (p0[0] + rng.uniform(-0.15, 0.15), p0[1] + rng.uniform(-0.08, 0.08))
        ctrl = (p0[0] + rng.uniform(-0.1, 0.1), p0[1] + rng.uniform(-0.1, 0.1))
        c.line(bezier(p0, ctrl, p2, 6), GAS, 0.035, host=(SOFT, ORGAN))


def _head_frontal(c: Canvas, rng: np.random.Generator) -> None:
    c.ellipse(0.5, 0.46, 0.39, 0.44, SOFT)
    c.ellipse(0.5, 0.43, 0.36, 0.4, BONE)
    c.ellipse(0.5, 0.43, 0.32, 0.36, SOFT)
    for sign in (-1.0, 1.0):
        c.ellipse(0.5 + sign * 0.14, 0.55, 0.085, 0.075, BONE)
        c.ellipse(0.5 + sign * 0.14, 0.55, 0.065, 0.055, FAT)
        c.ellipse(0.5 + sign * 0.11, 0.71, 0.06, 0.05, GAS)
    c.polygon([(0.47, 0.6), (0.53, 0.6), (0.55, 0.78), (0.45, 0.78)], GAS)
    c.line(bezier((0.2, 0.66), (0.5, 1.08), (0.8, 0.66)), BONE, 0.04)
    c.line([(0.32, 0.82), (0.68, 0.82)], BONE, 0.025)  # teeth


def _pelvis_frontal(c: Canvas, rng: np.random.Generator) -> None:
    c.polygon([(0.03, 0.0), (0.97, 0.0), (0.99, 1.0), (0.01, 1.0)], SOFT)
    _vertebral_column(c, -0.06, 0.12, stop=0.2)
    c.polygon([(0.42, 0.2), (0.58, 0.2), (0.54, 0.52), (0.46, 0.52)], MARROW)  # sacrum
    for sign in (-1.0, 1.0):
        wing = [
            (0.5 + sign * 0.08, 0.48),
            (0.5 + sign * 0.1, 0.22),
            (0.5 + sign * 0.3, 0.1),
            (0.5 + sign * 0.41, 0.16),
            (0.5 + sign * 0.32, 0.5),
            (0.5 + sign * 0.22, 0.58),
        ]
        c.polygon(wing, BONE)
        c.polygon(_shrink(wing, 0.72), MARROW)
        c.ellipse(0.5 + sign * 0.1, 0.74, 0.075, 0.065, BONE)  # pubic ramus ring
        c.ellipse(0.5 + sign * 0.1, 0.74, 0.045, 0.035, SOFT)  # obturator foramen
        c.ellipse(0.5 + sign * 0.27, 0.62, 0.07, 0.07, BONE)  # femoral head
        c.line([(0.5 + sign * 0.27, 0.62), (0.5 + sign * 0.33, 0.8)], BONE, 0.07)
        c.line([(0.5 + sign * 0.33, 0.78), (0.5 + sign * 0.32, 1.0)], BONE, 0.085)
        c.line([(0.5 + sign * 0.33, 0.8), (0.5 + sign * 0.32, 1.0)], MARROW, 0.04)


# --- shared by sections and projections ---------------------------------------------


def _shrink(points: list[Point], factor: float) -> list[Point]:
    cx = sum(x for x, _ in points) / len(points)
    cy = sum(y for _, y in points) / len(points)
    return [(cx + (x - cx) * factor, cy + (y - cy) * factor) for x, y in points]


def _vertebral_column(c: Canvas, top: float, step: float, stop: float = 1.0) -> None:
    y = top
    while y < stop:
        c.polygon([(0.44, y), (0.56, y), (0.56, y + step * 0.78), (0.44, y + step * 0.78)], BONE)
        c.polygon(
            [
                (0.455, y + 0.01),
                (0.545, y + 0.01),
                (0.545, y + step * 0.7),
                (0.455, y + step * 0.7),
            ],
            MARROW,
        )
        y += step


def _knee(c: Canvas, side: str, section: bool) -> None:
    fibula_x = 0.3 if side == "right" else 0.7  # lateral = patient's side of that knee
    c.polygon([(0.2, 0.0), (0.8, 0.0), (0.82, 1.0), (0.18, 1.0)], FAT)
    c.polygon([(0.24, 0.0), (0.76, 0.0), (0.78, 1.0), (0.22, 1.0)], SOFT)
    c.polygon([(0.42, 0.0), (0.58, 0.0), (0.61, 0.3), (0.39, 0.3)], BONE)
    c.polygon([(0.39, 0.29), (0.61, 0.29), (0.71, 0.41), (0.29, 0.41)], BONE)
    c.ellipse(0.4, 0.42, 0.1, 0.07, BONE)
    c.ellipse(0.6, 0.42, 0.1, 0.07, BONE)
    c.polygon([(0.28, 0.54), (0.72, 0.54), (0.62, 0.66), (0.38, 0.66)], BONE)
    c.polygon([(0.4, 0.65), (0.6, 0.65), (0.58, 1.0), (0.42, 1.0)], BONE)
    c.ellipse(fibula_x, 0.62, 0.035, 0.03, BONE)
    c.line([(fibula_x, 0.62), (fibula_x + (0.02 if side == "right" else -0.02), 1.0)], BONE, 0.035)
    if section:  # marrow inside the cortex
        c.polygon([(0.445, 0.0), (0.555, 0.0), (0.575, 0.3), (0.425, 0.3)], MARROW)
        c.ellipse(0.4, 0.41, 0.08, 0.05, MARROW)
        c.ellipse(0.6, 0.41, 0.08, 0.05, MARROW)
        c.polygon([(0.31, 0.56), (0.69, 0.56), (0.6, 0.64), (0.4, 0.64)], MARROW)
        c.polygon([(0.44, 0.64), (0.56, 0.64), (0.55, 1.0), (0.45, 1.0)], MARROW)
        c.line([(0.3, 0.5), (0.7, 0.5)], FLUID, 0.012)  # joint fluid and cartilage
    else:
        c.ellipse(0.5, 0.4, 0.07, 0.06, MARROW)  # patella through the femur


def _spine(c: Canvas, section: bool) -> None:
    c.polygon([(0.06, 0.0), (0.94, 0.0), (0.94, 1.0), (0.06, 1.0)], FAT)
    c.polygon([(0.1, 0.0), (0.9, 0.0), (0.9, 1.0), (0.1, 1.0)], SOFT)
    for k, centre in enumerate(_VERTEBRA_CENTRES):
        top, bottom = centre - 0.055, centre + 0.055
        c.polygon([(0.4, top), (0.6, top), (0.6, bottom), (0.4, bottom)], BONE)
        c.polygon(
            [
                (0.415, top + 0.012),
                (0.585, top + 0.012),
                (0.585, bottom - 0.012),
                (0.415, bottom - 0.012),
            ],
            MARROW,
        )
        if section:
            c.polygon(
                [
                    (0.41, bottom + 0.006),
                    (0.59, bottom + 0.006),
                    (0.59, bottom + 0.024),
                    (0.41, bottom + 0.024),
                ],
                FLUID,
            )
        for sign in (-1.0, 1.0):
            c.line([(0.5 + sign * 0.1, centre), (0.5 + sign * 0.2, centre + 0.01)], BONE, 0.022)
            if not section:
                c.ellipse(0.5 + sign * 0.065, centre - 0.01, 0.016, 0.024, BONE)
            if k < 2:
                c.line(
                    bezier(
                        (0.5 + sign * 0.12, centre),
                        (0.5 + sign * 0.3, centre - 0.03),
                        (0.5 + sign * 0.42, centre + 0.1),
                    ),
                    BONE,
                    0.015,
                )


_SECTIONS = {
    "chest": _chest_axial,
    "abdomen": _abdomen_coronal,
    "head": _head_axial,
    "pelvis": _pelvis_axial,
}
_PROJECTIONS = {
    "chest": _chest_frontal,
    "abdomen": _abdomen_frontal,
    "head": _head_frontal,
    "pelvis": _pelvis_frontal,
}
