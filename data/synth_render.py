"""Projection of a joint's plan to attenuation maps: canvas, chord lengths, rasterising, textures.

    from calcidet.data.synth_render import Canvas, render_bone, soft_tissue
    soft, body = soft_tissue(plan, canvas, size, mm_per_px, (h, w), rng)

Used by ``render_anatomy`` (``data/synth_anatomy.py``); ``distance_mm`` and ``stamp`` also by the
lesion and look-alike code. Projection is physical: a bone is a tube with a cortical shell, so its
attenuation is the chord length through cortex and through trabecular marrow (``chord``); that gives
bright cortical margins, a darker textured medulla and thin-cortex epiphyses. Soft tissue is a
rounded limb with a subcutaneous fat layer. Maps are at a working resolution of at most ``WORK_MAX`` px.
"""

from __future__ import annotations

import cv2
import numpy as np

from calcidet.data.synth_priors import TISSUE, TissuePriors
from calcidet.data.synth_shapes import Bone, Plan

WORK_MAX = 1000  # longest side of the working maps, px: anatomy is smooth, the film is upsampled from it
TRABECULAR_CONTRAST = (0.7, 0.6)  # marrow attenuation x (base + gain * ridged texture)
SCLEROTIC_LINE_GAIN = 4.0  # x cortex attenuation: lines seen edge-on are as dense as 4 mm of cortex
SOFT_TEXTURE = 0.04  # +-4% soft-tissue modulation: fascial planes and muscle bundles
SOFT_TEXTURE_CELL_MM = 40.0
BODY_ROUNDING_MM = 3.0  # skin outlines are rounded at this scale
AIR_EDGE_MM = 4.0  # blur of the edge of lung or bowel gas
FOSSA_EDGE_MM = 2.0  # blur of the edge of a fossa (bone thins gradually)


class Canvas:
    """Maps joint-frame millimetres to working pixels: mirror, rotate, scale, translate."""

    def __init__(self, centre: tuple[float, float], angle: float, mirror: bool, mm_per_px: float) -> None:
        cos, sin = np.cos(angle), np.sin(angle)
        self.turn = np.array([[cos, -sin], [sin, cos]]) @ np.diag([-1.0 if mirror else 1.0, 1.0])
        self.matrix = self.turn / mm_per_px
        self.centre = np.asarray(centre, np.float64)

    def px(self, pts: np.ndarray) -> np.ndarray:
        """Points in mm (k, 2) to working pixels."""
        return np.asarray(pts, np.float64).reshape(-1, 2) @ self.matrix.T + self.centre

    def site(self, point: tuple[float, float], direction: tuple[float, float]) -> tuple[float, float, float, float]:
        """A point (mm) and a direction in the joint frame to (x, y, dx, dy) on the film, unit direction."""
        pos = self.px(point)[0]
        turned = self.turn @ np.asarray(direction, np.float64)
        turned /= np.linalg.norm(turned) + 1e-9
        return float(pos[0]), float(pos[1]), float(turned[0]), float(turned[1])

    def halved(self) -> Canvas:
        """The same mapping onto a map of half the resolution."""
        half = Canvas((0, 0), 0, False, 1.0)
        half.turn, half.matrix, half.centre = self.turn, self.matrix / 2, self.centre / 2
        return half


def chord(depth: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
    """Path length through a cylinder of ``radius`` at ``depth`` inside its silhouette (mm)."""
    inside = np.minimum(np.maximum(depth, 0), radius)
    return 2.0 * np.sqrt(np.maximum(inside * (2.0 * radius - inside), 0))


def distance_mm(mask: np.ndarray, mm_per_px: float) -> np.ndarray:
    """Distance (mm) from each pixel of ``mask`` to the nearest pixel outside it; the image border
    does not count as outside. Without any outside pixel OpenCV returns FLT_MAX: capped at 10 m."""
    return np.minimum(cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5), 1e4 / mm_per_px) * mm_per_px


def local_radius(depth: np.ndarray, cap: float, mm_per_px: float) -> np.ndarray:
    """Half-width of the shape around each pixel (max inscribed depth nearby), capped at ``cap`` mm."""
    step = 4 if min(depth.shape) >= 16 else 1
    k = max(1, int(cap / mm_per_px / step))
    coarse = cv2.dilate(depth[::step, ::step], cv2.getStructuringElement(cv2.MORPH_RECT, (2 * k + 1, 2 * k + 1)))
    radius = cv2.resize(coarse, (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.maximum(radius, depth), 1e-3, cap)


def fill(shape: tuple[int, int], polys: list[np.ndarray], offset: np.ndarray, value: int = 255) -> np.ndarray:
    """Rasterise outlines (px) into a uint8 mask, with 2 bits of sub-pixel precision."""
    mask = np.zeros(shape, np.uint8)
    for poly in polys:  # one call per outline: fillPoly treats overlapping contours as holes (even-odd)
        cv2.fillPoly(mask, [np.round((poly - offset) * 4).astype(np.int32)], value, cv2.LINE_8, 2)
    return mask


def union(mask: np.ndarray, smooth_px: float) -> np.ndarray:
    """Round off the creases where overlapping shapes meet (a metaphysis flares, it has no corners)."""
    if smooth_px < 0.7:
        return mask > 127
    return cv2.GaussianBlur(mask, (0, 0), smooth_px) > 127


def ridged_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """A network of thin bright ridges (zero crossings of smooth noise): trabecular-looking texture."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    noise = cv2.resize(rng.standard_normal((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.exp(-((noise / 0.45) ** 2))


def render_bone(bone: Bone, canvas: Canvas, size: float, mm_per_px: float, trabeculae: np.ndarray,
                att: np.ndarray, bone_mask: np.ndarray, medulla: np.ndarray, tissue: TissuePriors = TISSUE) -> None:
    """Add one bone's projected attenuation to ``att`` (in place) and mark its masks.

    Args:
        bone: outlines and cross-section in mm; ``size`` scales every length (patient size).
        canvas: joint frame to working pixels, ``mm_per_px`` mm each.
        trabeculae: texture in 0..1 at working resolution.
        att, bone_mask, medulla: working maps, updated in place.
        tissue: attenuation per mm of cortex and marrow.
    """
    section, ws = bone.section, mm_per_px
    polys = [canvas.px(poly * size) for poly in bone.polys]
    every = np.vstack(polys)
    h, w = att.shape
    pad = int(3 * section.rounding_mm * size / ws) + 4
    x0, y0 = max(int(every[:, 0].min()) - pad, 0), max(int(every[:, 1].min()) - pad, 0)
    x1, y1 = min(int(every[:, 0].max()) + pad, w), min(int(every[:, 1].max()) + pad, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    off = np.array([x0, y0], np.float64)
    roi = (y1 - y0, x1 - x0)
    inside = union(fill(roi, polys, off), section.rounding_mm * size / ws)
    if bone.holes:
        inside &= fill(roi, [canvas.px(poly * size) for poly in bone.holes], off) == 0
    if not inside.any():
        return
    depth = distance_mm(inside, ws)
    cap = section.half_depth_mm * size
    radius = local_radius(depth, cap, ws)
    shaft = (section.shaft_radius_mm or section.half_depth_mm) * size
    cortex = np.maximum(1.0, section.cortex_mm * size * np.minimum(1.0, (shaft / radius) ** 2))
    outer = chord(depth, radius)
    inner = chord(depth - cortex, np.maximum(radius - cortex, 1e-3))
    base, gain = TRABECULAR_CONTRAST
    texture = base + gain * trabeculae[y0:y1, x0:x1]
    projected = tissue.cortex_per_mm * (outer - inner) + tissue.marrow_per_mm * inner * texture
    for poly, keep in bone.thin:  # fossae: the bone is thinner there
        fossa = fill(roi, [canvas.px(poly * size)], off).astype(np.float32) / 255
        projected *= 1.0 - (1.0 - keep) * cv2.GaussianBlur(fossa, (0, 0), FOSSA_EDGE_MM / ws)
    if bone.lines:  # sclerotic lines seen edge-on: physeal scars, acetabular roof, pelvic brim
        lines = np.zeros(roi, np.uint8)
        for line, width in bone.lines:
            pts = np.round((canvas.px(line * size) - off) * 4).astype(np.int32)
            cv2.polylines(lines, [pts], False, 255, max(1, int(width * size / ws)), cv2.LINE_AA, 2)
        drawn = cv2.GaussianBlur(lines, (0, 0), 0.8).astype(np.float32)
        projected += tissue.cortex_per_mm * SCLEROTIC_LINE_GAIN * drawn / 255 * inside
    att[y0:y1, x0:x1] += section.density * projected * inside
    bone_mask[y0:y1, x0:x1] |= inside
    medulla[y0:y1, x0:x1] |= depth > cortex + 1.0


def soft_tissue(plan: Plan, canvas: Canvas, size: float, mm_per_px: float, shape: tuple[int, int],
                rng: np.random.Generator, tissue: TissuePriors = TISSUE) -> tuple[np.ndarray, np.ndarray]:
    """Attenuation of the limb's soft tissue and the body mask; smooth, so made at half resolution."""
    h, w = shape
    h2, w2, ws2 = (h + 1) // 2, (w + 1) // 2, mm_per_px * 2
    half = canvas.halved()
    mask = union(fill((h2, w2), [half.px(poly * size) for poly in plan.body], np.zeros(2)), BODY_ROUNDING_MM / ws2)
    depth = distance_mm(mask, ws2)
    radius = local_radius(depth, plan.depth * size, ws2)
    fat = plan.fat * size
    total = chord(depth, radius)
    fat_path = total - chord(depth - fat, np.maximum(radius - fat, 1e-3))
    soft = tissue.soft_per_mm * total - (tissue.soft_per_mm - tissue.fat_per_mm) * fat_path
    soft *= 1.0 + SOFT_TEXTURE * (ridged_noise(rng, h2, w2, SOFT_TEXTURE_CELL_MM / ws2) - 0.3)
    for poly, air_mm in plan.lucent:  # air in lung or bowel replaces tissue along the ray
        air = fill((h2, w2), [half.px(poly * size)], np.zeros(2)).astype(np.float32) / 255
        soft -= tissue.soft_per_mm * air_mm * cv2.GaussianBlur(air, (0, 0), AIR_EDGE_MM / ws2)
    soft = np.maximum(soft, 0) * mask
    full = cv2.resize(soft.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    body = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR) > 0
    return full, body


def work_shape(height: int, width: int, spacing: float) -> tuple[int, int, float]:
    """Working-map size (h, w) and its mm per pixel for a film of ``height`` x ``width`` at ``spacing``."""
    ws = max(spacing, max(height, width) * spacing / WORK_MAX)
    return max(8, round(height * spacing / ws)), max(8, round(width * spacing / ws)), ws


def stamp(att: np.ndarray, local: np.ndarray, x0: int, y0: int, frac: float = 0.1) -> list[float] | None:
    """Add ``local`` to ``att`` at top-left (x0, y0), clipped; return the COCO box of its visible part."""
    h, w = att.shape
    lh, lw = local.shape
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + lw, w), min(y0 + lh, h)
    if xa >= xb or ya >= yb:
        return None
    part = local[ya - y0:yb - y0, xa - x0:xb - x0]
    att[ya:yb, xa:xb] += part
    ys, xs = np.nonzero(part > frac * float(local.max()))
    if len(xs) == 0:
        return None
    return [float(xa + xs.min()), float(ya + ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
