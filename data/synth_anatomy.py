"""Procedural anatomy for synthetic plain films: soft-tissue envelope and bones of a joint.

Shapes are described in millimetres in a joint-centred frame and drawn with OpenCV at the film's
pixel spacing, so that lesions of a given physical size look right beside the bones. The result is
an attenuation map: soft tissue ~1 per 100 mm of thickness, cortical bone several times more.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

JOINTS = ("knee", "hip", "shoulder", "elbow", "hand", "foot")
JOINT_WEIGHTS = (0.3, 0.2, 0.2, 0.15, 0.08, 0.07)
FIELD_OF_VIEW_MM = {"knee": 300, "hip": 360, "shoulder": 320, "elbow": 260, "hand": 220, "foot": 260}


@dataclass
class Anatomy:
    """Attenuation maps of one film (float32, H x W) and the masks lesions are placed with."""

    soft: np.ndarray  # soft-tissue thickness (relative)
    bone: np.ndarray  # bone attenuation (cortex bright, medulla textured)
    body_mask: np.ndarray  # bool: inside the limb
    bone_mask: np.ndarray  # bool: inside bone
    joint: str
    joint_centre: tuple[float, float]  # (x, y) pixels
    bone_edges: list[tuple[float, float]] = field(default_factory=list)


class Canvas:
    """Draws mm-space shapes into pixel masks with a rotation about the joint centre."""

    def __init__(self, height: int, width: int, spacing: float, centre: tuple[float, float], angle: float) -> None:
        self.h, self.w, self.s = height, width, spacing
        self.cx, self.cy = centre
        self.cos, self.sin = np.cos(angle), np.sin(angle)

    def px(self, pts_mm: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts_mm, dtype=np.float64).reshape(-1, 2)
        x = self.cx + (pts[:, 0] * self.cos - pts[:, 1] * self.sin) / self.s
        y = self.cy + (pts[:, 0] * self.sin + pts[:, 1] * self.cos) / self.s
        return np.stack([x, y], 1)

    def blank(self) -> np.ndarray:
        return np.zeros((self.h, self.w), np.uint8)

    def ellipse(self, mask: np.ndarray, centre_mm, axes_mm, angle_deg: float = 0.0) -> None:
        c = self.px(centre_mm)[0]
        ang = angle_deg + np.degrees(np.arctan2(self.sin, self.cos))
        axes = (max(1, int(axes_mm[0] / self.s)), max(1, int(axes_mm[1] / self.s)))
        cv2.ellipse(mask, (int(c[0]), int(c[1])), axes, ang, 0, 360, 255, -1, cv2.LINE_AA)

    def polygon(self, mask: np.ndarray, pts_mm) -> None:
        cv2.fillPoly(mask, [np.round(self.px(pts_mm)).astype(np.int32)], 255, cv2.LINE_AA)

    def tube(self, mask: np.ndarray, p0_mm, p1_mm, width_mm: float) -> None:
        """A bone shaft: a thick segment with rounded ends."""
        a, b = self.px(p0_mm)[0], self.px(p1_mm)[0]
        t = max(1, int(width_mm / self.s))
        cv2.line(mask, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 255, t, cv2.LINE_AA)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in ~0..1 made at low resolution and upsampled (cheap at 2500 px)."""
    small = rng.random((max(2, h * cells // max(h, w)), max(2, w * cells // max(h, w)))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _bones_knee(c: Canvas, rng: np.random.Generator) -> list[np.ndarray]:
    femur, tibia, fibula, patella = c.blank(), c.blank(), c.blank(), c.blank()
    gap = rng.uniform(4, 8)
    c.tube(femur, (0, -200), (0, -40), rng.uniform(26, 34))
    c.polygon(femur, [(-16, -70), (16, -70), (40, -12), (38, 0), (-38, 0), (-40, -12)])
    c.ellipse(femur, (-21, -8), (19, 14)), c.ellipse(femur, (21, -8), (19, 14))
    c.polygon(tibia, [(-40, gap), (40, gap), (42, gap + 14), (18, gap + 60), (-18, gap + 60), (-42, gap + 14)])
    c.tube(tibia, (0, gap + 40), (0, 220), rng.uniform(24, 30))
    c.ellipse(fibula, (46, gap + 22), (9, 11))
    c.tube(fibula, (46, gap + 22), (52, 220), 10)
    c.ellipse(patella, (rng.uniform(-6, 6), -30), (20, 24))
    return [femur, tibia, fibula, patella]


def _bones_hip(c: Canvas, rng: np.random.Generator) -> list[np.ndarray]:
    pelvis, femur = c.blank(), c.blank()
    c.polygon(pelvis, [(-160, -160), (10, -170), (40, -60), (30, -10), (-5, 10), (-40, 40), (-120, 60), (-170, 0)])
    neck_angle = np.radians(rng.uniform(120, 140))
    head = np.array([0.0, -25.0])
    c.ellipse(femur, head, (24, 24))
    shaft_top = head + 55 * np.array([np.sin(neck_angle), -np.cos(neck_angle)])
    c.tube(femur, head, shaft_top, 30)
    c.ellipse(femur, shaft_top + (12, -14), (20, 26))  # greater trochanter
    c.tube(femur, shaft_top, shaft_top + (10, 260), 32)
    c.ellipse(femur, shaft_top + (-14, 38), (10, 14))  # lesser trochanter
    return [pelvis, femur]


def _bones_shoulder(c: Canvas, rng: np.random.Generator) -> list[np.ndarray]:
    humerus, scapula, clavicle = c.blank(), c.blank(), c.blank()
    c.ellipse(humerus, (0, 0), (26, 28))
    c.tube(humerus, (4, 10), (12, 240), 28)
    c.polygon(scapula, [(-30, -30), (-24, 30), (-60, 150), (-140, 80), (-120, -40)])
    c.ellipse(scapula, (-30, 0), (7, 28))  # glenoid rim
    c.tube(clavicle, (-150, -90), (10, -60), 18)
    c.polygon(scapula, [(-40, -60), (30, -70), (35, -52), (-30, -44)])  # acromion
    return [humerus, scapula, clavicle]


def _bones_elbow(c: Canvas, rng: np.random.Generator) -> list[np.ndarray]:
    humerus, radius, ulna = c.blank(), c.blank(), c.blank()
    c.tube(humerus, (0, -220), (0, -40), 24)
    c.polygon(humerus, [(-12, -60), (12, -60), (36, -8), (30, 0), (-30, 0), (-36, -8)])
    gap = rng.uniform(3, 6)
    c.ellipse(radius, (18, gap + 8), (11, 8))
    c.tube(radius, (18, gap + 8), (30, 230), 15)
    c.polygon(ulna, [(-26, gap - 10), (4, gap), (0, gap + 30), (-16, gap + 30)])
    c.tube(ulna, (-10, gap + 20), (-6, 230), 14)
    return [humerus, radius, ulna]


def _bones_hand(c: Canvas, rng: np.random.Generator, foot: bool = False) -> list[np.ndarray]:
    bones = [c.blank() for _ in range(3)]
    c.polygon(bones[0], [(-45, 40), (45, 40), (40, 80), (-40, 80)] if not foot else
              [(-40, 20), (40, 20), (30, 120), (-30, 120)])
    for k in range(5):
        x = -40 + 20 * k + rng.uniform(-3, 3)
        spread = (k - 2) * (4 if not foot else 2)
        c.tube(bones[1], (x * 0.8, 35), (x + spread, -30), 9 if k else 11)
        c.tube(bones[2], (x + spread, -36), (x + 1.6 * spread, -75 if k else -60), 7)
        c.tube(bones[2], (x + 1.6 * spread, -80), (x + 2 * spread, -100 if k else -85), 6)
    return bones


BUILDERS = {"knee": _bones_knee, "hip": _bones_hip, "shoulder": _bones_shoulder, "elbow": _bones_elbow,
            "hand": _bones_hand, "foot": lambda c, rng: _bones_hand(c, rng, foot=True)}


def render_anatomy(rng: np.random.Generator, height: int, width: int, spacing: float, joint: str) -> Anatomy:
    """Draw the soft tissue and bones of ``joint`` on an H x W film with ``spacing`` mm per pixel."""
    centre = (width * rng.uniform(0.4, 0.6), height * rng.uniform(0.4, 0.6))
    angle = np.radians(rng.uniform(-12, 12))
    c = Canvas(height, width, spacing, centre, angle)
    bone_masks = BUILDERS[joint](c, rng)

    body = c.blank()
    half = {"knee": 60, "hip": 150, "shoulder": 110, "elbow": 45, "hand": 55, "foot": 60}[joint] * rng.uniform(0.9, 1.3)
    c.polygon(body, [(-half, -400), (half, -400), (half * 1.05, 0), (half, 400), (-half, 400), (-half * 1.05, 0)])
    if joint in ("hip", "shoulder"):
        c.ellipse(body, (-60, 0), (220, 260))
    body_mask = body > 127
    # Tissue thickness grows from the skin inwards (a rounded limb in projection).
    dist = cv2.distanceTransform(body_mask.astype(np.uint8), cv2.DIST_L2, 5) * spacing
    soft = np.sqrt(np.clip(dist / (half * 0.7), 0, 1)).astype(np.float32) * rng.uniform(0.35, 0.55)

    bone = np.zeros((height, width), np.float32)
    bone_union = np.zeros((height, width), bool)
    # Trabecular texture: fine (~1.5 mm) over coarse (~8 mm) noise.
    texture = 0.6 * _smooth_noise(rng, height, width, max(8, int(max(height, width) * spacing / 1.5)))
    texture += 0.4 * _smooth_noise(rng, height, width, max(4, int(max(height, width) * spacing / 8)))
    cortex_px = max(1, int(rng.uniform(2.0, 4.0) / spacing))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cortex_px + 1, 2 * cortex_px + 1))
    for m in bone_masks:
        inside = m > 127
        medulla = cv2.erode(m, kernel) > 127
        cortex = inside & ~medulla
        b = np.where(cortex, 1.0, 0.0).astype(np.float32)
        b += np.where(medulla, 0.35 + 0.35 * texture, 0.0)
        bone = np.maximum(bone, b) if joint in ("hand", "foot") else bone + b  # overlaps add in projection
        bone_union |= inside
    bone = cv2.GaussianBlur(bone, (0, 0), max(0.6, 0.4 / spacing))
    return Anatomy(soft=soft, bone=bone * rng.uniform(0.5, 0.75), body_mask=body_mask, bone_mask=bone_union,
                   joint=joint, joint_centre=centre)
