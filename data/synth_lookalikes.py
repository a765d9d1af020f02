"""Look-alikes a detector must not flag, drawn as attenuation added to a film.

    box = render_vascular(att, rng, artery_px, spacing_mm=0.15)

Used by ``insert_findings`` (``data/synth_lesions.py``); their sizes, densities and rates are in
``data/synth_lesion_priors.py``. Vascular calcification (interrupted tram-track lines along an
artery), calcific tendinitis (a small homogeneous dense oval at a tendon insertion), osteophytes (spurs
continuous with a joint margin), bone islands (dense ovals in medullary bone) and metal (clips, skin
staples, marker beads and rings: very dense, sharp-edged). Each returns the COCO box it drew, or None.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from calcidet.data.synth_lesion_priors import (
    FINDINGS,
    BoneIslandPriors,
    MetalPriors,
    OsteophytePriors,
    TendinitisPriors,
    VascularPriors,
)
from calcidet.data.synth_priors import TISSUE
from calcidet.data.synth_render import stamp


def _draw(shape_px: float, draw: Callable[[np.ndarray, int], object], blur: float = 0.6) -> tuple[np.ndarray, int]:
    """Run ``draw(canvas, offset)`` on a blank 8-bit canvas big enough for a shape ``shape_px`` across."""
    half = int(shape_px) + 6
    canvas = np.zeros((2 * half, 2 * half), np.uint8)
    draw(canvas, half)
    out = canvas.astype(np.float32) / 255
    return (cv2.GaussianBlur(out, (0, 0), blur) if blur else out), half


def _pts(pts: np.ndarray) -> list[np.ndarray]:
    return [np.round(np.asarray(pts) * 4).astype(np.int32)]  # 2 bits of sub-pixel precision


def render_vascular(att: np.ndarray, rng: np.random.Generator, path: np.ndarray, spacing: float,
                    body: np.ndarray | None = None, priors: VascularPriors = FINDINGS.vascular) -> list[float] | None:
    """Tram-track calcification: two thin, interrupted parallel lines along a curving artery.

    ``body``: optional mask (any resolution, same field of view): no plaque is drawn outside it.
    """
    step = 1.0 / spacing  # resample the course every millimetre
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    dist = np.concatenate([[0], np.cumsum(seg)])
    if dist[-1] < priors.min_course_mm * step:
        return None
    length = min(dist[-1], rng.uniform(*priors.length_mm) * step)
    start = rng.uniform(0, dist[-1] - length)
    along = np.arange(start, start + length, step)
    pts = np.stack([np.interp(along, dist, path[:, 0]), np.interp(along, dist, path[:, 1])], 1)
    walk = np.cumsum(rng.normal(0, priors.wander * step, pts.shape), 0)
    pts += walk * np.linspace(0, 1, len(pts))[:, None]
    tangent = np.gradient(pts, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) / (np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9)
    half = rng.uniform(*priors.lumen_radius_mm) / spacing
    on, i = np.zeros(len(pts), bool), 0
    while i < len(pts):  # plaques come and go along the wall
        run = int(rng.uniform(*priors.plaque_mm))
        on[i:i + run] = rng.random() < priors.plaque_rate
        i += run + int(rng.uniform(*priors.gap_mm))
    if body is not None:
        scale = body.shape[1] / att.shape[1]
        ix = np.clip((pts * scale).astype(int), 0, [body.shape[1] - 1, body.shape[0] - 1])
        on &= body[ix[:, 1], ix[:, 0]]
    if on.sum() < priors.min_plaque_mm:
        return None
    lo = pts.min(0) - half - 8
    canvas = np.zeros((int(np.ptp(pts[:, 1]) + 2 * half + 16), int(np.ptp(pts[:, 0]) + 2 * half + 16)), np.float32)
    thick = max(1, int(round(rng.uniform(*priors.wall_mm) / spacing)))
    for side in (-1, 1):
        wall = pts + side * half * normal - lo
        layer = np.zeros(canvas.shape, np.uint8)
        for run in np.split(np.arange(len(pts)), np.flatnonzero(np.diff(on.astype(int))) + 1):
            if on[run[0]] and len(run) > 1:
                cv2.polylines(layer, _pts(wall[run]), False, 255, thick, cv2.LINE_AA, 2)
        canvas += layer.astype(np.float32) / 255 * rng.uniform(*priors.wall_density)
    local = cv2.GaussianBlur(canvas, (0, 0), 0.6) * rng.uniform(*priors.density)
    return stamp(att, local, int(lo[0]), int(lo[1]), priors.box_fraction)


def render_tendinitis(att: np.ndarray, rng: np.random.Generator, site: tuple, spacing: float,
                      priors: TendinitisPriors = FINDINGS.tendinitis) -> list[float] | None:
    """A small homogeneous dense oval deposit at a tendon insertion, just off the bone."""
    x, y, dx, dy = site
    size = rng.uniform(*priors.size_mm)
    cx, cy = x + dx * rng.uniform(*priors.offset_mm) / spacing, y + dy * rng.uniform(*priors.offset_mm) / spacing
    long_axis, short_axis = size / spacing / 2, size / spacing / 2 * rng.uniform(*priors.aspect)
    angle = np.degrees(np.arctan2(dy, dx)) + 90 + rng.uniform(*priors.tilt_deg)

    def draw(canvas: np.ndarray, o: int) -> None:
        cv2.ellipse(canvas, ((o, o), (2 * long_axis, 2 * short_axis), angle), 255, -1, cv2.LINE_AA)

    local, half = _draw(long_axis, draw, priors.blur_px)
    local = np.sqrt(local) * TISSUE.calcium_per_mm * size * rng.uniform(*priors.density)  # near-flat: homogeneous
    return stamp(att, local, int(cx) - half, int(cy) - half)


def render_osteophyte(att: np.ndarray, rng: np.random.Generator, site: tuple, spacing: float,
                      priors: OsteophytePriors = FINDINGS.osteophyte) -> list[float] | None:
    """A bony spur (lip or beak) growing out of a joint margin: a cortical rim around a paler core, its
    broad base buried in the bone's cortex so that it is continuous with it."""
    x, y, dx, dy = site
    out, across = np.array([dx, dy]), np.array([-dy, dx])
    length = rng.uniform(*priors.length_mm) / spacing
    width = length * rng.uniform(*priors.width)
    bend = rng.choice([-1, 1]) * rng.uniform(*priors.bend) * length  # lips curl along the joint margin
    base = priors.base_mm / spacing
    ctrl = np.array([-base * out - across * width * 0.8, 0.3 * length * out - across * width * 0.45,
                     0.75 * length * out - across * width * 0.15 + 0.5 * bend * across, length * out + bend * across,
                     0.7 * length * out + across * width * 0.2 + 0.4 * bend * across,
                     0.2 * length * out + across * width * 0.5, -base * out + across * width * 0.8])
    for _ in range(2):  # round the outline: bone has no straight facets
        start, end = ctrl[:-1], ctrl[1:]
        cut = np.stack([0.75 * start + 0.25 * end, 0.25 * start + 0.75 * end], 1).reshape(-1, 2)
        ctrl = np.vstack([ctrl[:1], cut, ctrl[-1:]])
    rim = max(1, int(round(priors.rim_mm / spacing)))

    def draw(canvas: np.ndarray, o: int) -> None:
        cv2.fillPoly(canvas, _pts(ctrl + o), 190, cv2.LINE_AA, 2)  # core paler than the rim
        cv2.polylines(canvas, _pts(ctrl[1:-1] + o), False, 255, rim, cv2.LINE_AA, 2)  # cortex, open at the base

    local, half = _draw(length + width + base, draw)
    local *= TISSUE.cortex_per_mm * rng.uniform(*priors.density)
    return stamp(att, local, int(x) - half, int(y) - half, 0.3)


def render_bone_island(att: np.ndarray, rng: np.random.Generator, centre: tuple[float, float], spacing: float,
                       priors: BoneIslandPriors = FINDINGS.bone_island) -> list[float] | None:
    """An enostosis: a dense oval in medullary bone with short radiating spicules (brush border)."""
    size = rng.uniform(*priors.size_mm) / spacing
    long_axis, short_axis, angle = size / 2, size / 2 * rng.uniform(*priors.aspect), rng.uniform(0, 180)

    def draw(canvas: np.ndarray, o: int) -> None:
        cv2.ellipse(canvas, ((o, o), (2 * long_axis, 2 * short_axis), angle), 255, -1, cv2.LINE_AA)
        for t in rng.uniform(0, 2 * np.pi, int(rng.integers(*priors.spicules))):
            r0 = min(long_axis, short_axis) * 0.9
            r1 = r0 + rng.uniform(*priors.spicule_mm) / spacing
            spicule = np.array([[o + r0 * np.cos(t), o + r0 * np.sin(t)], [o + r1 * np.cos(t), o + r1 * np.sin(t)]])
            cv2.polylines(canvas, _pts(spicule), False, 255, max(1, int(priors.spicule_width_mm / spacing)),
                          cv2.LINE_AA, 2)

    local, half = _draw(long_axis + 3 / spacing, draw, 0.8)
    local *= TISSUE.cortex_per_mm * size * spacing * rng.uniform(*priors.density)
    return stamp(att, local, int(centre[0]) - half, int(centre[1]) - half)


METAL_SHAPES = {0: np.array([[-0.1, 0.5], [-0.05, -0.5], [0.05, -0.5], [0.1, 0.5]]),  # clip: two joined legs
                1: np.array([[-0.5, 0.25], [-0.5, -0.2], [0.5, -0.2], [0.5, 0.25]])}  # staple: squared U


def render_metal(att: np.ndarray, rng: np.random.Generator, centre: tuple[float, float], spacing: float,
                 priors: MetalPriors = FINDINGS.metal) -> list[float] | None:
    """A surgical clip, a skin staple, a marker bead or ring: very dense with sharp edges."""
    kind = int(rng.integers(4))
    size = rng.uniform(*priors.size_mm) / spacing
    thick = max(1, int(round(rng.uniform(*priors.wire_mm) / spacing)))
    rot = rng.uniform(0, 2 * np.pi)
    turn = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])

    def draw(canvas: np.ndarray, o: int) -> None:
        if kind in METAL_SHAPES:
            cv2.polylines(canvas, _pts(METAL_SHAPES[kind] @ turn.T * size + o), False, 255, thick, cv2.LINE_AA, 2)
        elif kind == 2:  # marker bead
            cv2.circle(canvas, (o, o), max(1, int(size * 0.2)), 255, -1, cv2.LINE_AA)
        else:  # ring marker
            cv2.circle(canvas, (o, o), max(2, int(size * 0.5)), 255, thick, cv2.LINE_AA)

    local, half = _draw(size, draw, 0.4)
    local *= rng.uniform(*priors.density)
    return stamp(att, local, int(centre[0]) - half, int(centre[1]) - half, 0.3)
