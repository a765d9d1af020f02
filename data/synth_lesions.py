"""Calcinosis lesions and the look-alikes a detector must not flag, as attenuation maps.

``render_calcinosis`` draws an amorphous, multilobulated ("cloud-like") calcified mass: many clustered
rounded lobules of varying density with lucent gaps between them. Variants follow the clinical
picture: ``cystic`` lobules have a dense calcified rim and a lucent centre; ``sedimentation`` lobules
hold a dense dependent layer under a flat, horizontal fluid-calcium level.

Hard negatives (never labelled): vascular calcification (tram-track lines along a vessel), small
calcific tendinitis deposits, osteophytes, bone islands and metal markers/clips.
"""

from __future__ import annotations

import cv2
import numpy as np

PATTERNS = ("cloud", "cystic", "sedimentation")
PATTERN_WEIGHTS = (0.55, 0.25, 0.2)
DISTRACTORS = ("vascular", "tendinitis", "osteophyte", "bone_island", "metal")


def _patch_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    small = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def render_calcinosis(rng: np.random.Generator, diameter_px: float, pattern: str, density: float) -> np.ndarray:
    """One calcified mass as a square float32 patch (0 outside), about ``diameter_px`` across.

    Args:
        rng: random generator (the mass's shape, lobules and texture).
        diameter_px: overall size of the mass in pixels.
        pattern: ``cloud``, ``cystic`` or ``sedimentation``.
        density: peak attenuation of the densest lobules (relative to cortical bone ~1-2).
    """
    size = int(diameter_px * 1.3) + 8
    patch = np.zeros((size, size), np.float32)
    c = size / 2
    radius = diameter_px / 2
    n_lobules = int(rng.integers(6, 16) + diameter_px / 12)
    # Lobule centres fill an irregular envelope: a few overlapping sub-clusters.
    anchors = c + rng.normal(0, radius * 0.3, (int(rng.integers(2, 5)), 2))
    for _ in range(n_lobules):
        a = anchors[rng.integers(len(anchors))]
        centre = a + rng.normal(0, radius * 0.28, 2)
        if np.hypot(*(centre - c)) > radius * 0.85:
            centre = c + (centre - c) * radius * 0.85 / np.hypot(*(centre - c))
        r = max(1.5, radius * rng.uniform(0.12, 0.32))
        axes = (int(max(1, r * rng.uniform(0.75, 1.25))), int(max(1, r * rng.uniform(0.75, 1.25))))
        lob = np.zeros_like(patch)
        cx, cy = int(centre[0]), int(centre[1])
        ang = float(rng.uniform(0, 180))
        cv2.ellipse(lob, (cx, cy), axes, ang, 0, 360, 1.0, -1, cv2.LINE_AA)
        value = density * rng.uniform(0.45, 1.0)
        if pattern == "cystic":
            inner = np.zeros_like(patch)
            rim = max(1, int(min(axes) * rng.uniform(0.25, 0.4)))
            cv2.ellipse(inner, (cx, cy), (max(1, axes[0] - rim), max(1, axes[1] - rim)), ang, 0, 360, 1.0, -1,
                        cv2.LINE_AA)
            lob = lob - 0.8 * inner
        elif pattern == "sedimentation":
            level = cy + rng.uniform(-0.2, 0.5) * axes[1]  # flat, horizontal fluid-calcium level
            rows = np.arange(size, dtype=np.float32)[:, None]
            lob = lob * np.where(rows > level, 1.0, 0.25)
        patch = np.maximum(patch, lob * value) + lob * value * 0.25  # overlaps a little denser
    # Amorphous, chalky texture and soft edges.
    patch *= 0.7 + 0.6 * _patch_noise(rng, size, max(3, int(diameter_px / 6)))
    patch = cv2.GaussianBlur(patch, (0, 0), max(0.7, diameter_px / 90))
    return patch


def tight_box(patch: np.ndarray, frac: float = 0.08) -> tuple[int, int, int, int] | None:
    """(x1, y1, x2, y2) of the visibly calcified part of a patch (pixels above ``frac`` of its peak)."""
    ys, xs = np.nonzero(patch > frac * float(patch.max()))
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def render_vascular(rng: np.random.Generator, h: int, w: int, spacing: float) -> np.ndarray:
    """Tram-track calcification: two thin parallel, interrupted lines along a curving vessel."""
    out = np.zeros((h, w), np.float32)
    n = 40
    start = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0, 0.3) * h])
    heading = np.radians(rng.uniform(60, 120))
    steps = rng.uniform(0.015, 0.03) * max(h, w)
    turn = np.cumsum(rng.normal(0, 0.06, n))
    pts = start + np.cumsum(np.stack([np.cos(heading + turn), np.sin(heading + turn)], 1) * steps, 0)
    normal = np.stack([-np.sin(heading + turn), np.cos(heading + turn)], 1)
    half = rng.uniform(2.0, 3.5) / spacing  # vessel radius ~2-3.5 mm
    thick = max(1, int(0.8 / spacing))
    keep = rng.random(n) > 0.25  # calcification is patchy along the wall
    for side in (-1, 1):
        wall = pts + side * half * normal
        for i in range(n - 1):
            if keep[i]:
                a, b = wall[i].astype(int), wall[i + 1].astype(int)
                cv2.line(out, tuple(map(int, a)), tuple(map(int, b)), rng.uniform(0.35, 0.6), thick, cv2.LINE_AA)
    return cv2.GaussianBlur(out, (0, 0), 0.7)


def render_small_dense(rng: np.random.Generator, h: int, w: int, centre: tuple[float, float],
                       diameter_px: float, value: float) -> np.ndarray:
    """A small homogeneous dense oval (calcific tendinitis deposit or bone island)."""
    out = np.zeros((h, w), np.float32)
    axes = (max(1, int(diameter_px / 2)), max(1, int(diameter_px / 2 * rng.uniform(0.45, 0.8))))
    cv2.ellipse(out, (int(centre[0]), int(centre[1])), axes, float(rng.uniform(0, 180)), 0, 360, value, -1,
                cv2.LINE_AA)
    return cv2.GaussianBlur(out, (0, 0), max(0.6, diameter_px / 15))


def render_osteophyte(rng: np.random.Generator, h: int, w: int, base: tuple[float, float],
                      direction: np.ndarray, length_px: float) -> np.ndarray:
    """A bony spur pointing away from a joint margin (added to the bone)."""
    out = np.zeros((h, w), np.float32)
    d = direction / (np.linalg.norm(direction) + 1e-6)
    n = np.array([-d[1], d[0]])
    b = np.asarray(base)
    tip = b + d * length_px + n * length_px * rng.uniform(-0.4, 0.4)
    pts = np.array([b - n * length_px * 0.45, tip, b + n * length_px * 0.45]).astype(np.int32)
    cv2.fillPoly(out, [pts], 1.0, cv2.LINE_AA)
    return cv2.GaussianBlur(out, (0, 0), 0.8)


def render_metal(rng: np.random.Generator, h: int, w: int, centre: tuple[float, float], spacing: float) -> np.ndarray:
    """A surgical clip, skin staple or round skin marker: very dense with sharp edges."""
    out = np.zeros((h, w), np.float32)
    cx, cy = int(centre[0]), int(centre[1])
    size = rng.uniform(4, 10) / spacing
    kind = rng.integers(3)
    thick = max(1, int(0.8 / spacing))
    if kind == 0:  # clip: a narrow V
        ang = rng.uniform(0, 2 * np.pi)
        for da in (-0.2, 0.2):
            x2, y2 = cx + size * np.cos(ang + da), cy + size * np.sin(ang + da)
            cv2.line(out, (cx, cy), (int(x2), int(y2)), 1.0, thick)
    elif kind == 1:  # staple: a squared U
        s = int(size / 2)
        pts = np.array([(cx - s, cy + s // 2), (cx - s, cy - s // 3), (cx + s, cy - s // 3), (cx + s, cy + s // 2)])
        cv2.polylines(out, [pts.astype(np.int32)], False, 1.0, thick)
    else:  # round marker bead
        cv2.circle(out, (cx, cy), max(1, int(size / 3)), 1.0, -1)
    return out * rng.uniform(2.5, 4.0)
