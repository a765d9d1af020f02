"""What a real normal film shows, where a mass may go on it, and how to add one as a radiograph would.

    from data.synth_real import analyse_film, insert_into_film
    real = analyse_film(film, rng, joint="knee", view="frontal")
    out, lesions, distractors = insert_into_film(rng, film, real, n_lesions=1)

Used by ``calcidet synth --backgrounds`` (``data/synth.py``).

Intensity model. A processed film's display value d (0..1, bone bright) is taken as a monotone,
windowed, log-like function of the attenuation A along the ray, d = sigmoid((A - A0) / s): the
logistic is the film's H&D curve, or a CR look-up table's soft window. A mass adding dA turns d
into d' = sigmoid(logit(d) + dA / s), so it brightens by the local display slope d(1 - d) / s: most
in mid-greys, little in the dark toe and near white, where it saturates; over bone it adds to the
bone. ``s`` comes from the film: a typical bone (``BONE_STEP`` units, procedural scale) lifts
soft tissue's median to bone's median, s = BONE_STEP / (logit(d_bone) - logit(d_soft)).

Resolution and noise. A mass is drawn finer than the film, area-averaged onto its pixel grid and
blurred by the film's own blur (estimated from how much its strongest edges soften under a known
extra blur). Where the mass squeezes the film's own noise (d(1 - d) shrinks), noise of the film's
level (robust std of a high-pass residual in soft tissue) is added back, so texture matches.

Placement. Joints are guessed from the bone mask: ends of bones not cut by the film's edge, gaps
between bones, deep notches in a bone's outline. Masses sit in soft tissue beside bone, weighted
by distance to those joints; never where bone encloses the soft tissue (pelvic ring, between ribs),
far from bone (abdomen, lung), or outside the body.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from data.synth_anatomy import Anatomy, distance_mm, work_shape

BONE_STEP = 1.0  # attenuation units a typical bone adds over soft tissue (``data.synth_anatomy`` scale)
LOGIT_EPS = 1e-3  # display values are clipped to [eps, 1 - eps] before the logit
JOINT_SIGMA_MM = 30.0  # how far from a joint masses still sit, typically
JOINT_GAP_MM = 15.0  # two bones closer than this meet at a joint
NOTCH_MM = 6.0  # a notch in a bone's outline deeper than this is a joint (or a flare beside one)
ENCLOSED_REACH_MM, ENCLOSED_DIRECTIONS = 80.0, 7  # bone within reach in >= 7 of 8 directions: enclosed
CUT_BORDER_PX = 3  # a bone end this close to the film's edge is a cut shaft, not a joint
EXTRA_BLUR = 1.0  # px: the known blur used to measure the film's own blur
BONE_SCALE = 0.04  # of the film's long side: bone is brighter than its surroundings blurred this much
# A film's long side (mm) by the joint it shows: FracAtlas films are whole cassettes (35 x 43 cm,
# smaller for hands and elbows). Unknown joints: from the body's width (a limb is ~100 mm across).
FIELD_MM = {"hand": 320.0, "elbow": 380.0, "shoulder": 430.0, "hip": 430.0, "lower_limb": 430.0}
BIG_BONE = 0.01  # a bone covering this share of the film is a long bone or a girdle; smaller ones (vertebrae,
# ribs, carpals) count only half as joint evidence
SKIN_REACH_MM = 60.0
AIR_MAX = 0.12  # display value: direct exposure (air around the body) is darker than this
TRUNK_MM, TRUNK_SKIN_MM = 200.0, 25.0  # body this wide both ways is a trunk: only its outer 25 mm will do  # masses lie within this of the skin: no deeper into a trunk (abdomen, chest)


@dataclass
class RealFilm:
    """One real film, analysed: masks and sites (working resolution), scale, intensity, blur, noise."""

    anatomy: Anatomy
    spacing: float  # mm per film pixel (a guess from the body's width)
    slope: float  # s: attenuation units per logit unit of display
    blur_px: float  # Gaussian sigma of the film's own blur, film pixels
    noise: float  # std of the film's high-pass residual in soft tissue, display units
    joints: np.ndarray  # (k, 2) guessed joint points, working px
    weight: np.ndarray  # float32, working resolution: where masses go (0 = never)


def _keep_large(mask: np.ndarray, min_frac: float) -> np.ndarray:
    """Drop specks (burned-in text, markers, dust) smaller than ``min_frac`` of the image."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_frac * mask.size)
    return np.isin(labels, big[big > 0])


def _masks(film: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Working-resolution grey film, body (not air), bone (bright within the body), glare bands."""
    h, w = film.shape
    hw, ww, _ = work_shape(h, w, 1.0)
    small = cv2.GaussianBlur(cv2.resize(film, (ww, hw), interpolation=cv2.INTER_AREA), (0, 0), 1.5)
    u8 = np.round(small * 255).astype(np.uint8)
    t_air, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    body = u8 > min(t_air * 0.75, AIR_MAX * 255)  # lungs and bowel gas are darker than tissue, not air-dark
    if body.mean() > 0.9:  # no air to speak of (pelvis, shoulder): everything but the darkest corners
        body = u8 > np.percentile(u8, 3)
    body = _keep_large(cv2.morphologyEx(body.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)) > 0, 0.02)
    # Bone is brighter than the tissue around it, at the scale of a bone's width: a trunk's broad
    # brightness (abdomen, mediastinum) is not bone, a rib or humerus over it is.
    local = small - cv2.GaussianBlur(small, (0, 0), BONE_SCALE * max(hw, ww))
    hp = np.clip(local * 4 + 0.5, 0, 1)
    hp8 = np.round(hp * 255).astype(np.uint8)
    inside = hp8[body] if body.any() else hp8.ravel()
    t_bone, _ = cv2.threshold(inside.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bone = body & (hp8 > max(t_bone, 128 + 4))
    bone = _keep_large(cv2.morphologyEx(bone.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0, 0.003)
    # Unexposed bands along the border (saturated white, as wide as the film) are neither bone nor a
    # place for a mass: keep clear of them.
    _, labels, stats, _ = cv2.connectedComponentsWithStats((u8 >= 245).astype(np.uint8))
    x, y, bw, bh = (stats[:, k] for k in range(4))
    band = ((bw > 0.5 * ww) & ((y == 0) | (y + bh == hw)) & (bh < 0.25 * hw)) | \
        ((bh > 0.5 * hw) & ((x == 0) | (x + bw == ww)) & (bw < 0.25 * ww))
    glare = cv2.dilate(np.isin(labels, np.flatnonzero(band[1:]) + 1).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    return small, body & ~glare, bone & ~glare, glare


def film_blur_px(film: np.ndarray) -> float:
    """Gaussian sigma (px) of the film's own blur, from its strongest edges.

    A step edge blurred by sigma0 has a peak slope ~ 1/sigma0; after a further blur of sigma1 the slope is
    ~ 1/sqrt(sigma0^2 + sigma1^2). The ratio r of the two gives sigma0 = sigma1 * r / sqrt(1 - r^2).
    """
    f = film if film.shape[0] * film.shape[1] <= 600_000 else film[::2, ::2]  # big films: a sub-grid is plenty
    def slope(x: np.ndarray) -> float:
        g = cv2.magnitude(cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3))
        return float(np.percentile(g, 99.7))
    r = slope(cv2.GaussianBlur(f, (0, 0), EXTRA_BLUR)) / max(slope(f), 1e-6)
    sigma = EXTRA_BLUR * r / np.sqrt(max(1 - r * r, 1e-3))
    return float(np.clip(sigma * (2.0 if f is not film else 1.0), 0.4, 3.0))


def _highpass(x: np.ndarray) -> np.ndarray:
    return x - cv2.GaussianBlur(x, (0, 0), 1.0)


def film_noise(film: np.ndarray, soft: np.ndarray) -> float:
    """Robust std (1.4826 * MAD) of the film's high-pass residual in flat soft tissue, display units."""
    r = _highpass(film)
    flat = soft & (np.abs(cv2.GaussianBlur(r, (0, 0), 2.0)) < 0.01)  # skip edges: they are not noise
    vals = r[flat] if flat.sum() > 200 else r.ravel()
    return float(1.4826 * np.median(np.abs(vals - np.median(vals))))


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


def placement_weight(body: np.ndarray, bone: np.ndarray, ws: float, keepout: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Where masses go (float32 weight, 0 = never) and the guessed joint points ((k, 2), x, y).

    Soft tissue inside the body, within ``SKIN_REACH_MM`` of the skin (only the outer ``TRUNK_SKIN_MM``
    of a trunk), not enclosed by bone, weighted by a Gaussian of the distance to the nearest joint
    (gaps and ends of big bones; notches and small bones count 0.3), zero beyond ~3 sigma.
    """
    strong, weak = _bone_ends_and_gaps(bone, ws)
    sigma = max(JOINT_SIGMA_MM / ws, 0.06 * min(body.shape))
    weight = np.exp(-0.5 * (_distance_to(strong, body.shape) / sigma) ** 2)
    weight += 0.3 * np.exp(-0.5 * (_distance_to(weak, body.shape) / sigma) ** 2)
    weight[weight < 0.01] = 0  # beyond ~3 sigma of any joint: not periarticular
    to_skin = distance_mm(body, ws)
    long = max(3, int(TRUNK_MM / ws)) | 1
    wide = cv2.morphologyEx(body.astype(np.uint8), cv2.MORPH_OPEN, np.ones((1, long), np.uint8)) > 0
    wide &= cv2.morphologyEx(body.astype(np.uint8), cv2.MORPH_OPEN, np.ones((long, 1), np.uint8)) > 0
    allowed = body & ~bone & ~enclosed_by_bone(bone, ws) & (to_skin <= SKIN_REACH_MM)
    allowed &= ~(wide & (to_skin > TRUNK_SKIN_MM))
    if keepout is not None:
        allowed &= ~keepout
    joints = np.array(strong + weak, np.float64).reshape(-1, 2)
    return (weight * allowed).astype(np.float32), joints


def _sites(rng: np.random.Generator, bone: np.ndarray, ws: float) -> tuple[list, list]:
    """Look-alike sites along the bone outline (x, y, outward dx, dy) and arterial courses beside bones."""
    hw, ww = bone.shape
    sites: list[tuple[float, float, float, float]] = []
    contours, _ = cv2.findContours(bone.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = np.vstack([c[:, 0] for c in contours]).astype(np.float64) if contours else np.zeros((0, 2))
    for i in rng.integers(0, len(outline), 40) if len(outline) > 10 else []:
        tangent = outline[(i + 3) % len(outline)] - outline[i - 3]
        normal = np.array([-tangent[1], tangent[0]]) / (np.linalg.norm(tangent) + 1e-9)
        px, py = np.clip(np.round(outline[i] + normal * 3).astype(int), 0, [ww - 1, hw - 1])
        normal = -normal if bone[py, px] else normal  # point out of the bone
        sites.append((float(outline[i][0]), float(outline[i][1]), float(normal[0]), float(normal[1])))
    vessels = []
    if bone.sum() > 50:  # arteries run along the limb: parallel to the bone's long axis, in soft tissue
        ys, xs = np.nonzero(bone)
        centre = np.array([xs.mean(), ys.mean()])
        _, _, axes = np.linalg.svd(np.stack([xs, ys], 1) - centre, full_matrices=False)
        along, normal = axes[0], np.array([-axes[0][1], axes[0][0]])
        half = np.percentile(np.abs((np.stack([xs, ys], 1) - centre) @ normal), 95)
        t = np.linspace(-1.5, 1.5, 12)[:, None] * max(hw, ww)
        for side in (-1, 1):
            offset = side * (half + rng.uniform(5, 25) / ws)
            vessels.append(centre + t * along + offset * normal + rng.normal(0, 3 / ws, (12, 2)))
    return sites, vessels


def analyse_film(film: np.ndarray, rng: np.random.Generator, joint: str = "unknown", view: str = "unknown") -> RealFilm:
    """Estimate a real film's anatomy, scale, intensity curve, blur, noise and where masses may go.

    Args:
        film: float32 H x W in 0..1, bone bright (``data.readers.read_radiograph``).
        rng: draws the look-alike sites along the bone outline.
        joint, view: from the film's manifest, recorded on the anatomy.

    Returns:
        The analysed film; masks and weight at working resolution (``Anatomy.spacing`` mm per px).
    """
    h, w = film.shape
    small, body, bone, glare = _masks(film)
    hw, ww = body.shape
    rows, cols = body.sum(1), body.sum(0)
    across = min(np.median(rows[rows > 0]) if rows.any() else ww, np.median(cols[cols > 0]) if cols.any() else hw)
    # A limb is ~100 mm across, a trunk film ~380 mm wide.
    fov = 380.0 if body.mean() > 0.8 else 100.0 * max(hw, ww) / max(across, 1.0)
    ws = FIELD_MM.get(joint, float(np.clip(fov, 150, 450))) / max(hw, ww)
    soft = body & ~bone
    logit = np.log(np.clip(small, LOGIT_EPS, 1 - LOGIT_EPS) / np.clip(1 - small, LOGIT_EPS, 1 - LOGIT_EPS))
    step = float(np.median(logit[bone]) - np.median(logit[soft])) if bone.any() and soft.any() else 1.5
    slope = BONE_STEP / float(np.clip(step, 0.5, 4.0))
    medulla = cv2.erode(bone.astype(np.uint8), np.ones((5, 5), np.uint8), iterations=max(1, int(2 / ws / 2))) > 0
    sites, vessels = _sites(rng, bone, ws)
    weight, joints = placement_weight(body, bone, ws, glare)
    anatomy = Anatomy(np.zeros((hw, ww), np.float32), body, bone, medulla, ws, joint, view, None,
                      sites[:20], sites[20:], vessels, keepout=glare)
    soft_full = cv2.resize(soft.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    return RealFilm(anatomy, ws * max(hw, ww) / max(h, w), slope, film_blur_px(film), film_noise(film, soft_full),
                    joints, weight)


def to_logit(film: np.ndarray) -> np.ndarray:
    """Display value -> logit units (attenuation / ``RealFilm.slope``, up to an offset)."""
    d = np.clip(film, LOGIT_EPS, 1 - LOGIT_EPS).astype(np.float32)
    return cv2.log(d / (1 - d))


def add_attenuation(film: np.ndarray, real: RealFilm, delta: np.ndarray, rng: np.random.Generator | None = None
                    ) -> np.ndarray:
    """The film with ``delta`` (attenuation units, film-sized) added; noise restored if ``rng`` is given.

    Only the bounding box of ``delta > 0`` changes; elsewhere the film is returned bit for bit.
    """
    out = film.astype(np.float32, copy=True)
    ys, xs = np.nonzero(delta > 0)
    if len(xs) == 0:
        return out
    sl = np.s_[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    d = np.clip(out[sl], LOGIT_EPS, 1 - LOGIT_EPS)
    new = 1.0 / (1.0 + cv2.exp(-(to_logit(d) + delta[sl] / real.slope)))
    out[sl] += np.where(delta[sl] > 0, new - d, 0)  # where nothing is added, not even rounding changes
    if rng is not None and real.noise > 0:
        # The curve squeezes the film's own noise by d'(1-d') / d(1-d): put back what it took.
        squeeze = (new * (1 - new)) / (d * (1 - d))
        grain = cv2.GaussianBlur(rng.standard_normal(d.shape).astype(np.float32), (0, 0), 0.5 * real.blur_px)
        grain /= max(float(_highpass(grain).std()), 1e-6)  # the same high-pass residual std as measured
        out[sl] += real.noise * np.sqrt(np.clip(1 - squeeze**2, 0, 1)) * grain * (delta[sl] > 0)
    return np.clip(out, 0, 1, out=out)
