"""What a real normal film shows, where a mass may go on it, and how to add one as a radiograph would.

    from calcidet.data.synth_real import analyse_film, insert_into_film
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

Placement (``data.synth_placement``). Air is the dark region touching the film's edge, levelled
locally (mid-grey air, burned-in gradients); masses go in a limb's soft tissue near its joints, never
in air, the neck, or deep in a trunk (chest, abdomen, pelvis).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calcidet.data.synth_anatomy import Anatomy, work_shape
from calcidet.data.synth_placement import placement_weight

BONE_STEP = 1.0  # attenuation units a typical bone adds over soft tissue (``data.synth_anatomy`` scale)
LOGIT_EPS = 1e-3  # display values are clipped to [eps, 1 - eps] before the logit
EXTRA_BLUR = 1.0  # px: the known blur used to measure the film's own blur
BONE_SCALE = 0.04  # of the film's long side: bone is brighter than its surroundings blurred this much
# A film's long side (mm) by the joint it shows: FracAtlas films are whole cassettes (35 x 43 cm,
# smaller for hands and elbows). Unknown joints: from the body's width (a limb is ~100 mm across).
FIELD_MM = {"hand": 320.0, "elbow": 380.0, "shoulder": 430.0, "hip": 430.0, "lower_limb": 430.0}
AIR_MAX = 0.35  # display value: air darker than this on average (brighter: the darkest class is tissue)
AIR_MIN_SHARE = 0.03  # of the film: less border-connected dark than this is no air to speak of
AIR_SMOOTH = 0.08  # of the long side: the air level is interpolated at this scale (burned-in gradients)
AIR_SEED_K = 4.0  # air proper: within 4 spreads of the air peak
HWHM_PER_SIGMA = 1.177  # a Gaussian peak's half width at half maximum, in standard deviations
AIR_NOISE_K, AIR_MIN_STEP = 6.0, 0.03  # skin: this many air noise levels, and at least 0.03, above the air beside it
NECK_JOINTS = ("shoulder", "elbow", "unknown")  # films of these may show the chest and neck
AIR_ROUNDS = 2  # re-level the air from what the previous round found
UNEXPOSED_U8 = 245  # grey level (of 255) from which a film is unexposed, saturated white: not bone
# Soft tissue taken for air (a pelvis filling the film): its "noise" is anatomy, several times any real
# air's, and bone-bright structures (femurs, iliac wings) are left in it. Either alone is not enough: a
# noisy detector can have noisy air, and a marker or collimator edge puts bright specks in real air.
AIR_NOISE_MAX = 0.022  # display units; real air on the shipped films measures at most 0.026, tissue 0.027-0.1
AIR_BONE_MAX = 0.003  # of the film: bone-class pixels in what was taken for air


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


def _three_level_otsu(u8: np.ndarray) -> tuple[int, int]:
    """Two thresholds splitting a film's histogram into air, soft tissue and bone (most between-class variance)."""
    p = np.bincount(u8.ravel(), minlength=256).astype(np.float64)
    p /= p.sum()
    w, m = np.cumsum(p), np.cumsum(p * np.arange(256))
    best, pair = -1.0, (85, 170)
    for a in range(1, 252, 2):  # every other level: the film is blurred, a level either way changes nothing
        b = np.arange(a + 2, 255, 2)
        w0, w1, w2 = w[a], w[b] - w[a], 1 - w[b]
        m0, m1, m2 = m[a], m[b] - m[a], m[-1] - m[b]
        with np.errstate(divide="ignore", invalid="ignore"):
            var = m0**2 / max(w0, 1e-12) + m1**2 / np.maximum(w1, 1e-12) + m2**2 / np.maximum(w2, 1e-12)
        k = int(np.argmax(var))
        if var[k] > best:
            best, pair = float(var[k]), (a, int(b[k]))
    return pair


def _touching_border(mask: np.ndarray) -> np.ndarray:
    """The parts of ``mask`` connected to the film's edge."""
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, edge[edge > 0])


def _wide_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of tens of px, done on a 4x coarser grid: the result is smooth anyway, and 16x cheaper."""
    h, w = x.shape
    small = cv2.resize(x.astype(np.float32), (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / 4), (w, h), interpolation=cv2.INTER_LINEAR)


def _all_body(small: np.ndarray) -> np.ndarray:
    """A film with no air: all of it but the darkest few percent (gas, the gap between the thighs)."""
    return _keep_large(small > np.percentile(small, 3), 0.02)


def body_mask(small: np.ndarray) -> np.ndarray:
    """Not air: air is the dark region touching the film's edge; tissue is clearly brighter than the air beside it.

    Air is not one grey: a film's air can be mid-grey, noisy, or carry a burned-in gradient, so each pixel is
    compared with the air level around it (the air class, smoothly interpolated), not with one threshold.
    A film with no air (a pelvis filling it edge to edge) is all body, whether its darkest class is bright
    (``AIR_MAX``) or dark but shows itself to be soft tissue (``AIR_NOISE_MAX`` and ``AIR_BONE_MAX``).
    """
    u8 = np.round(small * 255).astype(np.uint8)
    t_air, t_bone = _three_level_otsu(u8)
    seed = _touching_border(cv2.morphologyEx((u8 <= t_air).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)))
    if seed.mean() < AIR_MIN_SHARE or np.median(small[seed]) > AIR_MAX:  # no air to speak of (pelvis, chest)
        return _all_body(small)
    # The dark class can hold a thin limb too (an arm beside a white chest): air proper is the dark
    # class's main peak and its spread, measured on the peak's dark side, which holds no tissue. Darker
    # air can lie there (thin strips beside a flat grey fill, knee pairs): it widens the 5th percentile,
    # not the peak, so the peak's half width bounds the spread.
    vals = small[seed]
    hist = cv2.GaussianBlur(np.bincount(np.round(vals * 255).astype(int), minlength=256).astype(np.float32).reshape(1, -1),
                            (0, 0), 2).ravel()
    peak = int(np.argmax(hist))
    mode = peak / 255
    spread = max(mode - float(np.percentile(vals, 5)), 2 / 255) / 1.65
    below_half = np.flatnonzero(hist[:peak] < hist[peak] / 2)
    if len(below_half):
        spread = min(spread, max((peak - below_half[-1]) / HWHM_PER_SIGMA, 2.0) / 255)
    seed &= small < mode + AIR_SEED_K * spread
    sigma = AIR_SMOOTH * max(small.shape)
    tissue_like = ~seed
    for round_ in range(AIR_ROUNDS):  # each round's air reaches further into a gradient: re-level from it
        num, den = _wide_blur(np.where(seed, small, 0).astype(np.float32), sigma), _wide_blur(seed, sigma)
        air = np.where(den > 1e-3, num / np.maximum(den, 1e-3), mode)
        residual = (small - air)[seed]
        noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
        if round_ == 0:  # the dark class as first found, before the air is re-levelled from itself
            first_noise = noise
        # Skin is a clear step above the air beside it: several noise levels (blurred), and at least a little.
        tissue_like = small > air + max(AIR_NOISE_K * noise, AIR_MIN_STEP)
        tissue_like = cv2.morphologyEx(tissue_like.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)) > 0
        seed = _touching_border(~tissue_like)
    body = _keep_large(~seed, 0.02)  # enclosed dark regions (lungs, gas, gaps in a fist) stay body
    bone_in_air = float(((u8 > t_bone) & (u8 < UNEXPOSED_U8) & ~body).mean())
    if first_noise > AIR_NOISE_MAX and bone_in_air > AIR_BONE_MAX:
        return _all_body(small)
    return body


def _masks(film: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Working-resolution grey film, body (not air), bone (bright within the body), glare bands."""
    h, w = film.shape
    hw, ww, _ = work_shape(h, w, 1.0)
    small = cv2.GaussianBlur(cv2.resize(film, (ww, hw), interpolation=cv2.INTER_AREA), (0, 0), 1.5)
    u8 = np.round(small * 255).astype(np.uint8)
    body = body_mask(small)
    # Bone is brighter than the tissue around it, at the scale of a bone's width: a trunk's broad
    # brightness (abdomen, mediastinum) is not bone, a rib or humerus over it is. The surroundings are
    # averaged over the body only: beside the skin, air would make plain soft tissue look bright.
    sig = BONE_SCALE * max(hw, ww)
    fb = body.astype(np.float32)
    around = cv2.GaussianBlur(small * fb, (0, 0), sig) / np.maximum(cv2.GaussianBlur(fb, (0, 0), sig), 1e-3)
    hp = np.clip((small - around) * 4 + 0.5, 0, 1)
    hp8 = np.round(hp * 255).astype(np.uint8)
    inside = hp8[body] if body.any() else hp8.ravel()
    t_bone, _ = cv2.threshold(inside.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bone = body & (hp8 > max(t_bone, 128 + 4))
    bone = _keep_large(cv2.morphologyEx(bone.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0, 0.003)
    # Unexposed bands along the border (saturated white, as wide as the film) are neither bone nor a
    # place for a mass: keep clear of them.
    _, labels, stats, _ = cv2.connectedComponentsWithStats((u8 >= UNEXPOSED_U8).astype(np.uint8))
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
    weight, joints = placement_weight(body, bone, ws, glare, small if joint in NECK_JOINTS else None,
                                      hip=joint == "hip")
    # Look-alikes of the bone's margin (osteophytes, tendinitis) follow a limb's bones, not the ribs.
    limb_bone = bone & (cv2.dilate((weight > 0).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0)
    sites, vessels = _sites(rng, limb_bone if limb_bone.sum() > 50 else bone, ws)
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
