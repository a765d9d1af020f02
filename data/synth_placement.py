"""Where on a real film a periarticular mass may go: in a limb's soft tissue near a joint, never in the trunk.

    from calcidet.data.synth_placement import placement_weight
    weight, joints = placement_weight(body, bone, mm_per_px, keepout, small)

Used by ``data.synth_real.analyse_film`` (the body and bone masks are its). Rules:

1. Trunk or limb, by width. Body wide enough to hold a ``TRUNK_DISK_MM`` disc is trunk (chest,
   abdomen, pelvis with both thighs); the rest is limb. Limb bits smaller than ``LIMB_MIN_MM2`` are
   the trunk's outline, not a limb. A trunk's rim within ``TRUNK_SKIN_MM`` of the skin and within
   ``JUNCTION_MM`` of a limb is where the limb joins it (shoulder, hip): allowed; the rest is not.
2. The neck (films that may show a chest: pass ``small``): within ``NECK_MM`` of the spine, in the
   trunk's upper half. The spine is the trunk's brightest column by its median over the trunk's height.
3. Soft tissue only, within ``LIMB_REACH_MM`` of bone, not enclosed by bone (pelvic ring, ribs).
4. Hip films: the whole pelvis counts as trunk, yet the hip's periarticular soft tissue (around the
   greater trochanter, lateral to the joint) lies in it. There, the trunk's lateral ``HIP_LATERAL_SHARE``
   of each row, below the top ``HIP_TOP_SHARE`` of the body (the iliac crests and flanks), is allowed.
5. Weighted by a Gaussian of the distance to the nearest joint guessed from the bone mask: ends of
   bones not cut by the film's edge and gaps between bones (notches and small bones count 0.3).
"""

from __future__ import annotations

import cv2
import numpy as np

from calcidet.data.synth_anatomy import distance_mm

JOINT_SIGMA_MM = 30.0  # how far from a joint masses still sit, typically
JOINT_GAP_MM = 15.0  # two limb bones closer than this meet at a joint
CUT_BORDER_PX = 3  # a bone end this close to the film's edge is a cut shaft, not a joint
LIMB_REACH_MM = 40.0  # soft tissue farther than this from every bone is not periarticular
NOTCH_MM = 6.0  # a notch in a bone's outline deeper than this is a joint (or a flare beside one)
BIG_BONE = 0.01  # of the film: bigger bones are long bones or girdles; smaller ones (vertebrae, ribs,
# carpals) count only 0.3 as joint evidence
TRUNK_DISK_MM = 160.0  # body wide enough to hold a disc this wide is trunk (chest, abdomen, pelvis); less is limb
LIMB_MIN_MM2 = 40.0 * 40.0  # narrower bits of body smaller than this are trunk outline, not a limb
NECK_MM = 100.0  # this close to the spine, in the trunk's upper half: the neck and its root
JUNCTION_MM = 50.0  # trunk within this of a limb, and near the skin, is where the limb joins it
ENCLOSED_REACH_MM, ENCLOSED_DIRECTIONS = 80.0, 7  # bone within reach in >= 7 of 8 directions: enclosed
TRUNK_SKIN_MM = 25.0  # of the trunk, only this outer rim (and only beside a limb) will do
HIP_LATERAL_SHARE = 0.3  # of the body's width in a row, from each side: the trochanteric region on a pelvis film
HIP_TOP_SHARE = 0.5  # of the body's height: iliac crests, sacrum and flanks above it, not periarticular


def _bone_ends_and_gaps(bone: np.ndarray, ws: float) -> tuple[list, list]:
    """Joint points (x, y): ends of bones not cut by the film's edge and gaps between bones; notches."""
    h, w = bone.shape
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bone.astype(np.uint8), connectivity=8)
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:8] + 1  # the biggest bones
    keep = [int(i) for i in order if stats[i, cv2.CC_STAT_AREA] >= 0.002 * bone.size]
    strong, weak = [], []
    for i in keep:
        ys, xs = np.nonzero(labels == i)
        pts = np.stack([xs, ys], 1).astype(np.float64)
        centred = pts - pts.mean(0)
        axis = np.linalg.svd(centred[:: max(1, len(pts) // 2000)], full_matrices=False)[2][0]
        t = centred @ axis
        lo, hi = np.percentile(t, (3, 97))
        for end in (t <= lo, t >= hi):
            e = pts[end]
            cut = ((e[:, 0] < CUT_BORDER_PX) | (e[:, 0] >= w - CUT_BORDER_PX) | (e[:, 1] < CUT_BORDER_PX)
                   | (e[:, 1] >= h - CUT_BORDER_PX)).any()
            if not cut:
                (strong if stats[i, cv2.CC_STAT_AREA] >= BIG_BONE * bone.size else weak).append(e.mean(0))
        contours, _ = cv2.findContours((labels == i).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        c = max(contours, key=len)
        if len(c) >= 5:
            try:
                defects = cv2.convexityDefects(c, cv2.convexHull(c, returnPoints=False))
            except cv2.error:  # a self-touching outline: no notches from this bone
                defects = None
            for _, _, far, depth in (defects.reshape(-1, 4) if defects is not None else []):
                if depth / 256 * ws > NOTCH_MM:
                    weak.append(c[far, 0].astype(np.float64))
    dists = {i: cv2.distanceTransform((labels != i).astype(np.uint8), cv2.DIST_L2, 3) for i in keep}
    for a in keep:
        for b in keep:
            xa, ya, wa, ha = stats[a, :4]
            xb, yb, wb, hb = stats[b, :4]
            near = max(xa - xb - wb, xb - xa - wa, ya - yb - hb, yb - ya - ha) * ws < JOINT_GAP_MM
            if a < b and near:  # only bones whose boxes come close can meet
                on_b = labels == b
                d = np.where(on_b, dists[a], np.inf)
                k = int(np.argmin(d))
                if d.flat[k] * ws < JOINT_GAP_MM:
                    pb = np.array([k % w, k // w], np.float64)
                    k2 = int(np.argmin(np.where(labels == a, dists[b], np.inf)))
                    big = min(stats[a, cv2.CC_STAT_AREA], stats[b, cv2.CC_STAT_AREA]) >= BIG_BONE * bone.size
                    (strong if big else weak).append((pb + np.array([k2 % w, k2 // w])) / 2)
    return strong, weak


def enclosed_by_bone(bone: np.ndarray, ws: float) -> np.ndarray:
    """Soft tissue with bone within ``ENCLOSED_REACH_MM`` in at least 7 of 8 directions (pelvic ring, ribs)."""
    h, w = bone.shape
    f = max(1, int(round(max(h, w) / 160)))  # rays are cast on a coarse grid: a mask is smooth
    small = cv2.resize(bone.astype(np.uint8), (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA) > 0
    sh, sw = small.shape
    hits = np.zeros((sh, sw), np.uint8)
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
        steps = int(ENCLOSED_REACH_MM / (ws * f * np.hypot(dx, dy)))
        seen = np.zeros((sh, sw), bool)
        for k in range(1, steps + 1):
            ox, oy = k * dx, k * dy
            if abs(ox) >= sw or abs(oy) >= sh:
                break
            # seen[y, x] |= small[y + oy, x + ox]
            seen[max(0, -oy):sh - max(0, oy), max(0, -ox):sw - max(0, ox)] |= \
                small[max(0, oy):sh - max(0, -oy), max(0, ox):sw - max(0, -ox)]
        hits += seen
    out = cv2.resize((hits >= ENCLOSED_DIRECTIONS).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    return out & ~bone


def _distance_to(points: list, shape: tuple[int, int]) -> np.ndarray:
    """Distance (px) from each pixel to the nearest of ``points``; huge where there are none."""
    canvas = np.ones(shape, np.uint8)
    for x, y in points:
        canvas[min(max(int(y), 0), shape[0] - 1), min(max(int(x), 0), shape[1] - 1)] = 0
    return cv2.distanceTransform(canvas, cv2.DIST_L2, 3) if points else np.full(shape, 1e6, np.float32)


def limb_parts(body: np.ndarray, ws: float) -> tuple[np.ndarray, np.ndarray]:
    """Split the body into trunk (wide enough to hold a ``TRUNK_DISK_MM`` disc) and limbs (the rest)."""
    r = TRUNK_DISK_MM / 2 / ws  # px
    p = int(r) + 1
    # The body goes on past the film's edge: pad it so, or the disc leaves every corner as a "limb".
    padded = cv2.copyMakeBorder(body.astype(np.uint8), p, p, p, p, cv2.BORDER_REPLICATE)
    # Opening by a disc, with two distance transforms (a 150 px disc kernel is slow): the centres
    # where the disc fits, grown back by its radius.
    centres = cv2.distanceTransform(padded, cv2.DIST_L2, 5) >= r
    trunk = (cv2.distanceTransform((~centres).astype(np.uint8), cv2.DIST_L2, 5) <= r)[p:-p, p:-p] & body
    limb = body & ~trunk
    _, labels, stats, _ = cv2.connectedComponentsWithStats(limb.astype(np.uint8), connectivity=8)
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] * ws * ws >= LIMB_MIN_MM2)
    return np.isin(labels, big[big > 0]) & limb, trunk


def neck(limb: np.ndarray, trunk: np.ndarray, small: np.ndarray, ws: float) -> np.ndarray:
    """The neck and the root of the neck: within ``NECK_MM`` of the spine, in the trunk's upper half.

    The spine is the trunk's brightest column by its median over the trunk's height (vertebrae over the
    mediastinum, all the way down; a shoulder or humerus is bright over only part of it). An arm joins
    the trunk far out from it, the neck right over it.
    """
    rows = np.flatnonzero(trunk.any(1))
    if len(rows) == 0:
        return np.zeros_like(limb)
    counts = trunk.sum(0)
    cols = np.flatnonzero(counts >= 0.5 * counts.max())  # columns through most of the trunk's height
    profile = np.zeros(trunk.shape[1], np.float32)
    profile[cols] = np.nanmedian(np.where(trunk[:, cols], small[:, cols], np.nan), axis=0)
    spine_x = int(np.argmax(cv2.GaussianBlur(profile.reshape(1, -1).astype(np.float32), (0, 0), 10 / ws).ravel()))
    # Per pixel, not per limb part: the neck's outline often runs on into a shoulder's.
    xx = np.arange(limb.shape[1])[None, :]
    yy = np.arange(limb.shape[0])[:, None]
    return (np.abs(xx - spine_x) * ws < NECK_MM) & (yy < (rows[0] + rows[-1]) / 2)


def hip_sides(body: np.ndarray) -> np.ndarray:
    """The lateral ``HIP_LATERAL_SHARE`` of the body in each row, below its top ``HIP_TOP_SHARE``."""
    h, w = body.shape
    rows = body.any(1)
    if not rows.any():
        return np.zeros_like(body)
    left = np.where(rows, body.argmax(1), 0)
    right = np.where(rows, w - 1 - body[:, ::-1].argmax(1), 0)
    band = HIP_LATERAL_SHARE * (right - left)
    xx = np.arange(w)[None, :]
    sides = (xx <= (left + band)[:, None]) | (xx >= (right - band)[:, None])
    ys = np.flatnonzero(rows)
    below = np.arange(h)[:, None] >= ys[0] + HIP_TOP_SHARE * (ys[-1] - ys[0])
    return sides & below & body


def placement_weight(body: np.ndarray, bone: np.ndarray, ws: float, keepout: np.ndarray | None = None,
                     small: np.ndarray | None = None, hip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Where masses go, by the rules in the module docstring.

    Args:
        body, bone: working-resolution masks (``data.synth_real``).
        ws: mm per working pixel.
        keepout: pixels no mass may sit on (glare bands), or None.
        small: the working-resolution film, where it may show a chest and neck (shoulder, elbow films), or None.
        hip: a hip/pelvis film (rule 4).

    Returns:
        ``(weight, joints)``: float32 weight (0 = never) and the joint points ((k, 2), x, y), working resolution.
    """
    strong, weak = _bone_ends_and_gaps(bone, ws)
    sigma = max(JOINT_SIGMA_MM / ws, 0.06 * min(body.shape))
    weight = np.exp(-0.5 * (_distance_to(strong, body.shape) / sigma) ** 2)
    weight += 0.3 * np.exp(-0.5 * (_distance_to(weak, body.shape) / sigma) ** 2)
    weight[weight < 0.01] = 0  # beyond ~3 sigma of any joint: not periarticular
    limb, trunk = limb_parts(body, ws)
    if small is not None:
        in_neck = neck(limb, trunk, small, ws)
        limb, trunk = limb & ~in_neck, trunk & ~in_neck
    # The trunk's rim where a limb joins it (shoulder, hip) is periarticular; its inside is not.
    junction = trunk & (distance_mm(~limb, ws) <= JUNCTION_MM) & (distance_mm(body, ws) <= TRUNK_SKIN_MM)
    if hip:
        junction |= trunk & hip_sides(body)
    allowed = (limb | junction) & ~bone & ~enclosed_by_bone(bone, ws) & (distance_mm(~bone, ws) <= LIMB_REACH_MM)
    if keepout is not None:
        allowed &= ~keepout
    joints = np.array(strong + weak, np.float64).reshape(-1, 2)
    return (weight * allowed).astype(np.float32), joints
