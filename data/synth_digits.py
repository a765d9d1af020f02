"""Hand (PA) and foot (DP) plans: five rays of tubular bones on a row of carpals or tarsals.

    from calcidet.data.synth_digits import hand_pa
    plan = hand_pa(rng)  # or hand_pa(rng, replace(HAND, spread=(1.2, 1.5))): fingers splayed

Used through ``BUILDERS`` (``data/synth_joints.py``); the ray lengths, radii and spreads are the
``DigitsPriors`` of ``data/synth_priors.py``. Draws from ``rng`` in a fixed order: keep it when
editing, or the films for a given seed change.
"""

from __future__ import annotations

import cv2
import numpy as np

from calcidet.data.synth_priors import FOOT, HAND, DigitsPriors, Section
from calcidet.data.synth_shapes import Bone, Plan, ellipse, points, smooth, tube


def _rays(rng: np.random.Generator, priors: DigitsPriors) -> tuple[list[Bone], list[np.ndarray], list, list]:
    """The five rays: their bones, the soft tissue around each, joint margins and the palm's corners."""
    spread = rng.uniform(*priors.spread)
    bones, body, margins, palm = [], [], [], []
    for k in range(5):
        base_angle = priors.ray_angles_deg[k]
        angle = np.radians(base_angle * spread + rng.uniform(*priors.ray_jitter_deg))
        start = np.array(priors.ray_bases_mm[k], np.float64)
        radii = priors.bone_radii_mm[k]
        for i, (length, rad) in enumerate(zip(priors.bone_lengths_mm[k], radii)):
            along = np.array([np.sin(angle), -np.cos(angle)])
            end = start + along * length * rng.uniform(*priors.length_scale)
            deg = float(np.degrees(np.arctan2(along[1], along[0])))
            tip = i == len(radii) - 1
            polys = [tube(start, end, rad * 0.75), ellipse(*(start + along * rad * 0.7), rad * 0.9, rad * 1.2, deg),
                     ellipse(*(end - along * rad * 0.6), rad * 0.8, rad * (0.85 if tip else 1.05), deg)]
            section = Section(rad * priors.half_depth_per_radius, rad * priors.cortex_per_radius,
                              rad * priors.shaft_per_radius, rounding_mm=1.0)
            bones.append(Bone(polys, section))
            margins.append((tuple(end + np.array([-along[1], along[0]]) * rad), (-along[1], along[0])))
            if i == 0:
                palm += [start, end]
            start = end + along * priors.joint_space_mm
            angle += np.radians(rng.uniform(*priors.curl_deg) * (1 if base_angle >= 0 else -1))
        body.append(tube(palm[-1], start - along * 2, radii[1] + priors.ray_soft_tissue_mm,
                         radii[-1] + priors.tip_soft_tissue_mm))
    return bones, body, margins, palm


def _digits(rng: np.random.Generator, priors: DigitsPriors, foot: bool) -> Plan:
    """Hand (PA) or foot (DP): rays, carpals/tarsals, the forearm or hindfoot, and soft tissue."""
    carpals = [Bone([ellipse(x, y, priors.block_scale * half_x, priors.block_scale * half_y, deg)],
                    Section(max(half_x, half_y), priors.block_cortex_mm, rounding_mm=1))
               for x, y, half_x, half_y, deg in priors.blocks_mm]
    rays, body, margins, palm = _rays(rng, priors)
    bones = carpals + rays
    if foot:
        first = priors.ray_angles_deg[0]
        sesamoid_x, sesamoid_y = palm[1] - np.array([np.sin(np.radians(first)), -np.cos(np.radians(first))]) * 8
        bones += [Bone([ellipse(sesamoid_x - 5, sesamoid_y, 4, 5)], Section(4, 1)),
                  Bone([ellipse(sesamoid_x + 5, sesamoid_y, 4, 5)], Section(4, 1)),
                  Bone([ellipse(18, 118, 20, 30)], Section(22, 1.5, density=0.7))]
        vessel = points((-2, 450), (-4, 120), (-8, 60), (-14, 20))
    else:
        radius = smooth(points((-30, 68), (-22, 62), (-5, 62), (4, 66), (6, 80), (0, 100), (-20, 100), (-28, 85)))
        bones += [Bone([tube((-9, 95), (-8, 420), 11, 10), radius], Section(12, 3, 10)),
                  Bone([tube((18, 88), (16, 420), 6, 7), ellipse(17, 80, 7, 6), ellipse(21, 72, 2.5, 4)],
                       Section(7, 2.5))]
        vessel = points((-30, 450), (-32, 150), (-34, 70), (-40, 40))
    corners = np.vstack(palm + [points((-30, 90), (28, 90))])
    hull = cv2.convexHull(corners.astype(np.float32))[:, 0].astype(np.float64)
    out = hull - hull.mean(0)
    body += [hull + priors.palm_margin_mm * out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-9),
             tube((0, 70), (0, 450), *priors.wrist_radius_mm)]
    bases = priors.ray_bases_mm
    return Plan(bones=bones, body=body, depth=priors.soft_half_depth_mm, fat=rng.uniform(*priors.fat_mm),
                margins=margins[::2],
                insertions=[((bases[0][0] - 8, bases[0][1] + 5), (-1, 0)),
                            ((bases[4][0] + 7, bases[4][1] + 5), (1, 0))],
                vessels=[vessel])


def hand_pa(rng: np.random.Generator, priors: DigitsPriors = HAND) -> Plan:
    """Hand, postero-anterior."""
    return _digits(rng, priors, foot=False)


def foot_dp(rng: np.random.Generator, priors: DigitsPriors = FOOT) -> Plan:
    """Foot, dorso-plantar."""
    return _digits(rng, priors, foot=True)
