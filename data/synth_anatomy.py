"""Procedural anatomy of joints for synthetic plain films, as X-ray attenuation maps.

    from calcidet.data.synth_anatomy import render_anatomy
    anatomy = render_anatomy(shape_rng, pose_rng, "knee", "ap", "R", 1800, 1440, spacing=0.17)

Used by ``calcidet synth`` (``data/synth.py``). The pieces: the knobs (``data/synth_priors.py``:
tissue attenuation, patient size and pose, each joint's sizes and spreads), the joint plans built
from them (``data/synth_joints.py``, ``data/synth_digits.py``, outlines from ``data/synth_shapes.py``)
and their projection (``data/synth_render.py``). Everything is rendered at a working resolution of
at most ``WORK_MAX`` px and upsampled by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calcidet.data.synth_joints import BUILDERS
from calcidet.data.synth_priors import POSE, TISSUE, JointPriors, PosePriors, TissuePriors
from calcidet.data.synth_render import (
    WORK_MAX,
    Canvas,
    distance_mm,
    fill,
    render_bone,
    ridged_noise,
    soft_tissue,
    work_shape,
)

__all__ = ["FIELD_OF_VIEW_MM", "JOINT_WEIGHTS", "WORK_MAX", "Anatomy", "distance_mm", "render_anatomy", "work_shape"]

JOINT_WEIGHTS = {("knee", "ap"): 0.21, ("knee", "lat"): 0.11, ("hip", "ap"): 0.18, ("shoulder", "ap"): 0.18,
                 ("elbow", "ap"): 0.11, ("elbow", "lat"): 0.07, ("hand", "pa"): 0.08, ("foot", "dp"): 0.06}
FIELD_OF_VIEW_MM = {"knee": (260, 400), "hip": (300, 420), "shoulder": (260, 380), "elbow": (200, 300),
                    "hand": (200, 280), "foot": (220, 300)}


@dataclass
class Anatomy:
    """One film's anatomy at working resolution, and where look-alikes belong (working pixels)."""

    attenuation: np.ndarray  # float32 H x W, line integral of attenuation (0 = air)
    body: np.ndarray  # bool: inside the skin
    bone: np.ndarray  # bool: inside bone
    medulla: np.ndarray  # bool: inside bone, deep to the cortex
    spacing: float  # mm per working pixel
    joint: str
    view: str
    centre: tuple[float, float] | None  # the joint, (x, y); None: unknown (a real film)
    margins: list[tuple[float, float, float, float]] = field(default_factory=list)  # x, y, dx, dy
    insertions: list[tuple[float, float, float, float]] = field(default_factory=list)
    vessels: list[np.ndarray] = field(default_factory=list)  # polylines (k, 2)
    keepout: np.ndarray | None = None  # bool: soft tissue that is not periarticular (pelvis, chest)


def render_anatomy(shape_rng: np.random.Generator, pose_rng: np.random.Generator, joint: str, view: str,
                   side: str, height: int, width: int, spacing: float, *, priors: JointPriors | None = None,
                   pose: PosePriors = POSE, tissue: TissuePriors = TISSUE) -> Anatomy:
    """Render the soft tissue and bones of one joint on a film of ``height`` x ``width`` pixels.

    Args:
        shape_rng: draws the patient's anatomy (so a patient's two films show the same bones).
        pose_rng: draws this film's positioning (centre, rotation) and textures.
        joint: one of ``BUILDERS`` (knee, hip, shoulder, elbow, hand, foot).
        view: "ap" or "lat" (knee and elbow have both; hand "pa", foot "dp"; others "ap").
        side: "R" or "L"; a left joint is the mirror image of a right one.
        height, width: film size in pixels; spacing: mm per film pixel.
        priors: the joint's priors (``data.synth_priors``, e.g. ``KneeAPPriors``); None: the defaults.
        pose: patient size and positioning; tissue: attenuation per mm.

    Returns:
        The anatomy at working resolution (``work_shape``), attenuation 0 in air.
    """
    h, w, ws = work_shape(height, width, spacing)
    build = BUILDERS[(joint, view)]
    plan = build(shape_rng) if priors is None else build(shape_rng, priors)
    size = float(shape_rng.uniform(*pose.size_scale))  # patient size
    centre = (w * pose_rng.uniform(*pose.centre_frac), h * pose_rng.uniform(*pose.centre_frac))
    canvas = Canvas(centre, np.radians(pose_rng.uniform(*pose.rotation_deg)), side == "L", ws)
    att, body = soft_tissue(plan, canvas, size, ws, (h, w), pose_rng, tissue)
    # Trabeculae at two scales: fine (1 mm) struts over coarser (2.5 mm) ones.
    trabeculae = 0.6 * ridged_noise(pose_rng, h, w, 1.0 / ws) + 0.4 * ridged_noise(pose_rng, h, w, 2.5 / ws)
    bone, medulla = np.zeros((h, w), bool), np.zeros((h, w), bool)
    for item in plan.bones:
        render_bone(item, canvas, size, ws, trabeculae, att, bone, medulla, tissue)

    def sites(items: list) -> list[tuple[float, float, float, float]]:
        return [canvas.site(np.asarray(point) * size, direction) for point, direction in items]

    keepout = fill((h, w), [canvas.px(poly * size) for poly in plan.keepout], np.zeros(2)) > 0
    return Anatomy(att.astype(np.float32), body, bone, medulla, ws, joint, view, (float(centre[0]), float(centre[1])),
                   sites(plan.margins), sites(plan.insertions), [canvas.px(v * size) for v in plan.vessels], keepout)
