"""Render a `PhantomCase` to a PIL image: anatomy, the finding, modality look, arrow.

Every modality has its own palette (tissue -> intensity) and post-processing, so the
same anatomy looks like CT (sharp, bright bone, couch), MRI (T1/T2 contrast, smooth,
bias field), X-ray (projection, dark lungs, side marker), ultrasound (speckled sector,
shadows), angiography (dark vessel tree on grey) or PET (blurry hot spots).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from medcap.data.phantoms.anatomy import bone_site, draw_anatomy, site
from medcap.data.phantoms.canvas import (
    AIR,
    BODY,
    BONE,
    CALC,
    COUCH,
    FAT,
    FLUID,
    GAS,
    GRAY,
    LESION,
    LUNG,
    MARROW,
    N_TISSUES,
    NECROSIS,
    ORGAN,
    SOFT,
    WHITE,
    Canvas,
    Point,
    bezier,
    blob_points,
    gaussian_blur,
)
from medcap.data.phantoms.spec import FIELD_OF_VIEW_CM, PhantomCase
from medcap.data.phantoms.vessels import draw_vessels

_SEVERITY_DEPTH = {"small": 0.05, "moderate": 0.08, "large": 0.12}

# Palettes: intensity in percent per tissue id (PET: uptake; ultrasound: echogenicity).
# fmt: off
_PALETTES_PERCENT: dict[str, list[int]] = {
    #              AIR FAT SFT ORG KID LNG BON MRW FLU BLD GRY WHT LES CAL HRT GAS RIB NEC COU
    "CT":          [  0, 28, 46, 52, 50,  7,100, 62, 36, 48, 50, 44, 68,100, 50,  2,100, 30, 42],
    "CT+":         [  0, 28, 46, 60, 80,  7,100, 62, 36, 78, 50, 44, 76,100, 72,  2,100, 30, 42],
    "MRI-T2":      [  0, 72, 30, 36, 50,  4,  6, 55, 95,  5, 58, 42, 78,  2, 25,  2,  6, 90,  0],
    "MRI-T1":      [  0, 92, 36, 48, 42,  4,  6, 82, 14,  5, 42, 58, 80,  2, 30,  2,  6, 15,  0],
    "X-ray":       [  0, 42, 50, 56, 54, 14, 92, 78, 62, 50, 50, 50, 74, 98, 62, 10, 34, 58,  0],
    "angiography": [ 78, 76, 75, 75, 75, 77, 66, 70, 75, 10, 75, 75, 10, 62, 75, 79, 70, 75, 78],
    "PET":         [  0,  6, 10, 22, 45,  3,  8, 12, 50, 15, 42, 25,100,  8, 45,  0,  8, 30,  0],
    "ultrasound":  [  0, 62, 38, 48, 34, 45, 95, 55,  2,  3, 40, 40, 10,100, 30, 85, 80,  5,  0],
}
# fmt: on


def render_case(case: PhantomCase, size: int, rng: np.random.Generator) -> Image.Image:
    """Draw `case` at `size` x `size` pixels: mode L, or RGB when `case.color`."""
    canvas = Canvas(size, rng)
    knee_side = ("right", "left")[int(rng.integers(2))]  # drawn always: same rng stream either way
    side_hint = case.side or knee_side
    draw_anatomy(canvas, case.region, case.view, side_hint, rng)
    if case.modality == "CT" and case.view == "axial":
        canvas.line(bezier((0.1, 0.9), (0.5, 0.99), (0.9, 0.9)), COUCH, 0.025, host=(AIR,))
    target = draw_vessels(canvas, case, rng) if case.modality == "angiography" else None
    if case.modality != "angiography":
        target = _draw_finding(canvas, case, rng)
    values = _palette(case)[canvas.labels()]
    gray = _POST[case.modality](values, canvas, rng)
    image = _to_image(gray, case)
    _overlays(image, case, rng)
    if case.has_arrow and target is not None:
        _draw_arrow(image, canvas, target, case, rng)
    return image


def _palette(case: PhantomCase) -> NDArray[np.float32]:
    key = case.modality
    if case.modality == "CT" and case.contrast:
        key = "CT+"
    elif case.modality == "MRI":
        key = f"MRI-{case.sequence}"
    palette = np.asarray(_PALETTES_PERCENT[key], dtype=np.float32) / 100.0
    assert palette.shape == (N_TISSUES,)
    return palette


# --- findings ------------------------------------------------------------------------


def _draw_finding(
    canvas: Canvas, case: PhantomCase, rng: np.random.Generator
) -> tuple[Point, float] | None:
    """Draw the finding; return its centre (anatomy coordinates) and radius for the arrow."""
    if case.finding == "none" or case.side is None or case.level is None:
        return None
    cm = 1.0 / FIELD_OF_VIEW_CM
    x, y = site(case.region, case.view, case.side, case.level)
    x, y = x + float(rng.uniform(-0.03, 0.03)), y + float(rng.uniform(-0.03, 0.03))
    radius = (case.size_cm or 1.0) * cm / 2.0
    finding = case.finding
    if finding == "nodule":
        stretch = float(rng.uniform(0.0, 0.15))
        canvas.ellipse(
            x, y, radius * (1 + stretch), radius * (1 - stretch), LESION, float(rng.uniform(0, 180))
        )
    elif finding == "mass":
        canvas.polygon(blob_points(x, y, radius, rng, 0.3), LESION)
        if case.modality != "ultrasound" and rng.random() < 0.5:
            canvas.polygon(blob_points(x, y, radius * 0.4, rng, 0.3), NECROSIS)
    elif finding == "cyst":
        canvas.ellipse(x, y, radius, radius * 0.95, SOFT)
        canvas.ellipse(x, y, radius * 0.84, radius * 0.8, FLUID)
    elif finding == "calcification":
        canvas.ellipse(x, y, radius, radius, CALC)
        for _ in range(int(rng.integers(0, 3))):
            dx, dy = rng.uniform(-2.5, 2.5, size=2) * radius
            canvas.ellipse(x + dx, y + dy, radius * 0.5, radius * 0.5, CALC)
    elif finding == "effusion":
        return _draw_effusion(canvas, case, x, y)
    elif finding == "fracture":
        return _draw_fracture(canvas, case, rng)
    return (x, y), radius


def _draw_effusion(canvas: Canvas, case: PhantomCase, x: float, y: float) -> tuple[Point, float]:
    depth = _SEVERITY_DEPTH[case.severity or "moderate"]
    if case.view == "sector":
        canvas.ellipse(x, y, 0.2, depth, FLUID, host=BODY + (LUNG, ORGAN))
        return (x, y), depth
    if case.region == "chest":  # dependent fluid at the lung base (posterior on axial images)
        lung_x = 0.31 if case.side == "right" else 0.69
        base = 0.74 if case.view == "axial" else 0.8
        canvas.ellipse(lung_x, base, 0.18, depth * 1.6, FLUID, host=(LUNG,))
        return (lung_x, base - depth), depth
    if case.region == "knee":  # suprapatellar recess
        canvas.ellipse(x, 0.34, 0.07, depth * 1.3, FLUID, host=(FAT, SOFT))
        return (x, 0.34), depth
    canvas.ellipse(x, y + 0.05, 0.14, depth, FLUID, host=BODY)
    return (x, y + 0.05), depth


def _draw_fracture(
    canvas: Canvas, case: PhantomCase, rng: np.random.Generator
) -> tuple[Point, float]:
    assert case.side is not None and case.level is not None
    x, y, angle = bone_site(case.region, case.view, case.side, case.level)
    if case.region == "chest":  # make sure a rib is there to break
        canvas.ellipse(x, y, 0.07, 0.018, BONE, angle)
    along = math.radians(angle)
    ux, uy = math.cos(along), math.sin(along)
    px, py = -uy, ux  # across the bone
    half = 0.06
    kink = float(rng.uniform(-0.015, 0.015))
    gap = [
        (x - px * half, y - py * half),
        (x + ux * kink, y + uy * kink),
        (x + px * half, y + py * half),
    ]
    # Signs that survive 64 px: marrow oedema, soft-tissue swelling, then a wide fracture line.
    canvas.ellipse(x, y, 0.07, 0.07, NECROSIS, host=(MARROW,))
    canvas.ellipse(x, y, 0.075, 0.06, SOFT, angle, host=(FAT, LUNG, GRAY, WHITE, AIR))
    canvas.line(gap, NECROSIS, 0.028, host=(BONE, MARROW, SOFT))
    return (x, y), 0.05


# --- modality looks ------------------------------------------------------------------

Post = NDArray[np.float32]


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> NDArray[np.float32]:
    return (rng.standard_normal(shape) * sigma).astype(np.float32)


def _post_ct(v: Post, canvas: Canvas, rng: np.random.Generator) -> Post:
    return v + _noise(rng, v.shape, 0.018)


def _post_mri(v: Post, canvas: Canvas, rng: np.random.Generator) -> Post:
    s = canvas.size / 128.0
    v = gaussian_blur(v, 0.9 * s)
    yy, xx = np.mgrid[0 : v.shape[0], 0 : v.shape[1]].astype(np.float32) / v.shape[0]
    phi = float(rng.uniform(0, 2 * math.pi))
    bias = 1.0 + 0.35 * ((xx - 0.5) * math.cos(phi) + (yy - 0.5) * math.sin(phi))
    v = v * bias
    real, imag = v + _noise(rng, v.shape, 0.03), _noise(rng, v.shape, 0.03)
    magnitude: Post = np.sqrt(real * real + imag * imag)  # Rician magnitude noise
    return magnitude


def _post_xray(v: Post, canvas: Canvas, rng: np.random.Generator) -> Post:
    s = canvas.size / 128.0
    v = gaussian_blur(v, 1.4 * s)
    yy = np.linspace(0.0, 1.0, v.shape[0], dtype=np.float32)[:, None]
    return v * (0.9 + 0.12 * yy) + _noise(rng, v.shape, 0.012)


def _post_angio(v: Post, canvas: Canvas, rng: np.random.Generator) -> Post:
    v = gaussian_blur(v, 0.7 * canvas.size / 128.0)
    return v + _noise(rng, v.shape, 0.02)


def _post_pet(v: Post, canvas: Canvas, rng: np.random.Generator) -> Post:
    s = canvas.size / 128.0
    v = gaussian_blur(v, 2.6 * s)
    v = v * (1.0 + gaussian_blur(_noise(rng, v.shape, 0.25), 0.7 * s))
    return v * 0.95  # a fixed scale: a hot lesion must not dim the rest of the study


def _post_us(v: Post, canvas: Canvas, rng: np.random.Generator) -> Post:
    n = v.shape[0]
    labels = canvas.labels()
    speckle = gaussian_blur(rng.rayleigh(0.8, size=v.shape).astype(np.float32), 0.6 * n / 128.0)
    v = v * speckle / float(speckle.mean())
    blocker = np.isin(labels, (BONE, CALC, GAS)).astype(np.float32)
    shadow = np.maximum.accumulate(
        np.roll(blocker, 2, axis=0) * (np.arange(n)[:, None] >= 2), axis=0
    )
    fluid = np.maximum.accumulate(np.isin(labels, (FLUID,)).astype(np.float32), axis=0)
    v = v * (1.0 - 0.8 * shadow * (1 - blocker)) * (1.0 + 0.35 * fluid * (labels != FLUID))
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    depth = np.hypot(xx - 0.5, yy + 0.02)
    angle = np.degrees(np.arctan2(xx - 0.5, yy + 0.02))
    inside = (depth < 0.98) & (np.abs(angle) < 38.0) & (depth > 0.08)
    v = v * (1.05 - 0.45 * depth)
    return np.where(inside, v, 0.0).astype(np.float32)


_POST = {
    "CT": _post_ct,
    "MRI": _post_mri,
    "X-ray": _post_xray,
    "angiography": _post_angio,
    "PET": _post_pet,
    "ultrasound": _post_us,
}


def _to_image(values: Post, case: PhantomCase) -> Image.Image:
    v = np.clip(values, 0.0, 1.0)
    if case.modality == "PET":
        if case.color:  # "hot" colour map
            rgb = np.stack(
                [np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1
            )
            return Image.fromarray(np.round(rgb * 255).astype(np.uint8))
        v = 1.0 - v  # maximum-intensity projections are read black-on-white
    gray = Image.fromarray(np.round(v * 255).astype(np.uint8))
    return gray.convert("RGB") if case.color else gray


# --- overlays ------------------------------------------------------------------------


def _ink(
    image: Image.Image, case: PhantomCase, rng: np.random.Generator
) -> int | tuple[int, int, int]:
    dark_background = not (
        case.modality == "angiography" or (case.modality == "PET" and not case.color)
    )
    level = 255 if dark_background else 0
    if image.mode == "RGB":
        if dark_background and rng.random() < 0.5:
            return (255, 220, 0)  # yellow arrows, as in many published figures
        return (level, level, level)
    return level


def _overlays(image: Image.Image, case: PhantomCase, rng: np.random.Generator) -> None:
    size = image.size[0]
    draw = ImageDraw.Draw(image)
    white: int | tuple[int, int, int] = 255 if image.mode == "L" else (255, 255, 255)
    if case.modality == "X-ray":  # side marker: the patient's right is on the image's left
        font = ImageFont.load_default(size=max(8, size // 10))
        draw.text((size * 0.04, size * 0.02), "R", fill=white, font=font)
    elif case.modality == "ultrasound":
        for k in range(1, 9):
            y = size * k / 10
            draw.rectangle(
                (size * 0.95, y, size * 0.95 + max(1, size // 64), y + max(1, size // 64)),
                fill=white,
            )


def _draw_arrow(
    image: Image.Image,
    canvas: Canvas,
    target: tuple[Point, float],
    case: PhantomCase,
    rng: np.random.Generator,
) -> None:
    (x, y), radius = target
    tx, ty = canvas.map(x, y)
    size = image.size[0]
    directions = [
        (math.cos(a), math.sin(a)) for a in np.radians([-135, -45, 45, 135, -90, 0, 90, 180])
    ]
    order = [int(i) for i in rng.permutation(len(directions))]
    length, gap = 0.15, radius * canvas.scale + 0.02
    for i in order:
        dx, dy = directions[i]
        tail = (tx + dx * (gap + length), ty + dy * (gap + length))
        if 0.03 < tail[0] < 0.97 and 0.03 < tail[1] < 0.97:
            break
    tip = (tx + dx * gap, ty + dy * gap)
    ink = _ink(image, case, rng)
    draw = ImageDraw.Draw(image)
    width = max(1, size // 64)
    draw.line(
        [(tail[0] * size, tail[1] * size), (tip[0] * size, tip[1] * size)], fill=ink, width=width
    )
    head = 0.05
    left = (
        tip[0] + (dx * math.cos(0.5) - dy * math.sin(0.5)) * head,
        tip[1] + (dx * math.sin(0.5) + dy * math.cos(0.5)) * head,
    )
    right = (
        tip[0] + (dx * math.cos(-0.5) - dy * math.sin(-0.5)) * head,
        tip[1] + (dx * math.sin(-0.5) + dy * math.cos(-0.5)) * head,
    )
    draw.polygon([(p[0] * size, p[1] * size) for p in (tip, left, right)], fill=ink)
