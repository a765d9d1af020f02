"""Outlines of bones and limbs in millimetres, and the plan of a joint that the renderer draws.

    from calcidet.data.synth_shapes import Bone, Plan, ellipse, tube
    shaft = Bone([tube((0, -420), (0, -70), 11)], Section(20, 3.5, 11))

Used by the joint builders (``data/synth_joints.py``, ``data/synth_digits.py``); the renderer
(``data/synth_render.py``) projects a ``Plan``. Frame: joint-centred, right side, lateral to -x,
distal down; a canvas mirrors, rotates and scales it onto the film.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calcidet.data.synth_priors import Section

Site = tuple[tuple[float, float], tuple[float, float]]  # a point and the outward direction there (mm)


@dataclass
class Bone:
    """A bone: the union of outlines (mm) projected as a tube of the given cross ``section``."""

    polys: list[np.ndarray]
    section: Section
    holes: list[np.ndarray] = field(default_factory=list)
    thin: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (outline, kept fraction): fossae
    lines: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (open polyline, width mm)


@dataclass
class Plan:
    """A joint: its bones, skin outline, limb half-depth, fat layer and where look-alikes go."""

    bones: list[Bone]
    body: list[np.ndarray]
    depth: float  # mm: the limb's half-thickness along the ray, at most
    fat: float  # mm: subcutaneous fat layer
    lucent: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (outline, mm of air)
    margins: list[Site] = field(default_factory=list)  # joint margins: osteophyte sites
    insertions: list[Site] = field(default_factory=list)  # tendon insertions: calcific tendinitis sites
    vessels: list[np.ndarray] = field(default_factory=list)  # arterial courses
    keepout: list[np.ndarray] = field(default_factory=list)  # no calcinosis here (pelvic cavity, chest)


def points(*pts: tuple[float, float]) -> np.ndarray:
    """Hand-placed points (mm) as a (k, 2) array."""
    return np.array(pts, np.float64)


def smooth(pts: np.ndarray, passes: int = 3) -> np.ndarray:
    """Chaikin corner cutting of a closed outline: hand-placed points become a smooth contour."""
    for _ in range(passes):
        nxt = np.roll(pts, -1, 0)
        pts = np.stack([0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], 1).reshape(-1, 2)
    return pts


def ellipse(cx: float, cy: float, half_x: float, half_y: float, deg: float = 0.0, n: int = 40) -> np.ndarray:
    """An ellipse centred at (cx, cy), turned by ``deg``."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    cos, sin = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    x, y = half_x * np.cos(t), half_y * np.sin(t)
    return np.stack([cx + cos * x - sin * y, cy + sin * x + cos * y], 1)


def tube(p0, p1, r0: float, r1: float | None = None, n: int = 10) -> np.ndarray:
    """A tapered capsule from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``): a bone shaft."""
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    r1 = r0 if r1 is None else r1
    along = (p1 - p0) / (np.linalg.norm(p1 - p0) + 1e-9)
    across = np.array([-along[1], along[0]])
    angle = np.linspace(-np.pi / 2, np.pi / 2, n)[:, None]
    cap = np.cos(angle) * along + np.sin(angle) * across
    return np.vstack([p1 + r1 * cap, p0 - r0 * cap])


def arc(cx: float, cy: float, radius: float, deg0: float, deg1: float, n: int = 24) -> np.ndarray:
    """An open arc of a circle, from ``deg0`` to ``deg1``."""
    t = np.radians(np.linspace(deg0, deg1, n))
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], 1)


def curved_tube(path: np.ndarray, r0: float, r1: float) -> list[np.ndarray]:
    """Tubes along a smoothed open path, radius ``r0`` to ``r1``: a curved bone (clavicle, rib)."""
    for _ in range(2):
        start, end = path[:-1], path[1:]
        cut = np.stack([0.75 * start + 0.25 * end, 0.25 * start + 0.75 * end], 1).reshape(-1, 2)
        path = np.vstack([path[:1], cut, path[-1:]])
    radii = np.linspace(r0, r1, len(path))
    return [tube(path[i], path[i + 1], radii[i], radii[i + 1], n=6) for i in range(len(path) - 1)]
