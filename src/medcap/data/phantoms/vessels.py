"""Angiography phantoms: a region-specific arterial tree, branches to the four finding
sites, and the vascular findings (aneurysm, stenosis) on one of them."""

from __future__ import annotations

import math

import numpy as np

from medcap.data.phantoms.anatomy import site
from medcap.data.phantoms.canvas import BLOOD, SOFT, Canvas, Point, bezier, ellipse_points
from medcap.data.phantoms.spec import FIELD_OF_VIEW_CM, PhantomCase

_TARGET_VESSEL_WIDTH = 0.032  # branches that reach the four finding sites
_TRUNKS: dict[str, list[list[Point]]] = {
    "head": [
        bezier((0.42, 1.02), (0.36, 0.75), (0.43, 0.56)),
        bezier((0.58, 1.02), (0.64, 0.75), (0.57, 0.56)),
        bezier((0.43, 0.56), (0.44, 0.35), (0.48, 0.12)),
        bezier((0.57, 0.56), (0.56, 0.35), (0.52, 0.12)),
    ],
    "chest": [
        bezier((0.47, 0.28), (0.18, 0.34), (0.3, 0.86)),
        bezier((0.53, 0.28), (0.78, 0.34), (0.62, 0.88)),
        bezier((0.54, 0.3), (0.86, 0.44), (0.8, 0.72)),
    ],
    "abdomen": [[(0.5, 0.0), (0.5, 0.88)], bezier((0.5, 0.28), (0.58, 0.5), (0.52, 0.86))],
    "pelvis": [
        [(0.5, 0.0), (0.5, 0.22)],
        bezier((0.5, 0.22), (0.34, 0.45), (0.3, 1.02)),
        bezier((0.5, 0.22), (0.66, 0.45), (0.7, 1.02)),
    ],
    "knee": [
        bezier((0.5, -0.02), (0.53, 0.35), (0.5, 0.58)),
        bezier((0.5, 0.58), (0.34, 0.7), (0.33, 1.02)),
        bezier((0.5, 0.58), (0.64, 0.74), (0.6, 1.02)),
    ],
}


def draw_vessels(
    canvas: Canvas, case: PhantomCase, rng: np.random.Generator
) -> tuple[Point, float] | None:
    trunks = _TRUNKS[case.region]
    for trunk in trunks:
        canvas.line(trunk, BLOOD, 0.03)
    trunk_points = [p for trunk in trunks for p in trunk]
    target_info: tuple[Point, float] | None = None
    for side in ("right", "left"):
        for level in ("upper", "lower"):
            tx, ty = site(case.region, case.view, side, level)
            tx, ty = tx + float(rng.uniform(-0.03, 0.03)), ty + float(rng.uniform(-0.03, 0.03))
            start = min(trunk_points, key=lambda p: (p[0] - tx) ** 2 + (p[1] - ty) ** 2)
            ctrl = (
                (start[0] + tx) / 2 + float(rng.uniform(-0.08, 0.08)),
                (start[1] + ty) / 2 + float(rng.uniform(-0.08, 0.08)),
            )
            tangent = _unit(tx - ctrl[0], ty - ctrl[1])
            end = (tx + tangent[0] * 0.12, ty + tangent[1] * 0.12)
            canvas.line(bezier(start, ctrl, (tx, ty)) + [end], BLOOD, _TARGET_VESSEL_WIDTH)
            _twigs(canvas, (tx, ty), tangent, rng)
            if side == case.side and level == case.level:
                target_info = _vessel_finding(canvas, case, (tx, ty), tangent)
    for _ in range(6):
        origin = trunk_points[int(rng.integers(len(trunk_points)))]
        _twigs(canvas, origin, _unit(*rng.normal(size=2)), rng)
    catheter_end = trunks[0][0]
    canvas.line(bezier((0.56, 1.0), (0.62, 0.8), catheter_end), BLOOD, 0.008)
    return target_info


def _twigs(canvas: Canvas, origin: Point, direction: Point, rng: np.random.Generator) -> None:
    for _ in range(2):
        turn = float(rng.uniform(-1.0, 1.0))
        d = _unit(direction[0] - direction[1] * turn, direction[1] + direction[0] * turn)
        length = float(rng.uniform(0.06, 0.14))
        end = (origin[0] + d[0] * length, origin[1] + d[1] * length)
        canvas.line([origin, end], BLOOD, 0.009)


def _vessel_finding(
    canvas: Canvas, case: PhantomCase, at: Point, tangent: Point
) -> tuple[Point, float]:
    x, y = at
    if case.finding == "aneurysm":
        radius = (case.size_cm or 1.0) / FIELD_OF_VIEW_CM / 2.0 * 1.3
        canvas.ellipse(
            x + tangent[1] * radius * 0.5,
            y - tangent[0] * radius * 0.5,
            radius,
            radius * 0.9,
            BLOOD,
        )
        return (x, y), radius
    if case.finding == "stenosis":  # two bites out of the vessel wall leave a thin lumen
        lumen = {"small": 0.5, "moderate": 0.3, "large": 0.12}[case.severity or "moderate"]
        lumen *= _TARGET_VESSEL_WIDTH / 2
        bite = 0.022
        angle = math.degrees(math.atan2(tangent[1], tangent[0]))
        for sign in (-1.0, 1.0):
            offset = lumen + bite
            cx, cy = x - tangent[1] * offset * sign, y + tangent[0] * offset * sign
            canvas.polygon(ellipse_points(cx, cy, 0.045, bite, angle, 16), SOFT, host=(BLOOD,))
        return (x, y), 0.02
    return (x, y), 0.02


def _unit(dx: float, dy: float) -> Point:
    norm = math.hypot(dx, dy) or 1.0
    return dx / norm, dy / norm
