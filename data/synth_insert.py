"""Calcinosis masses, look-alikes and burned-in markers inserted into a real normal film.

    from calcidet.data.synth_real import analyse_film
    from calcidet.data.synth_insert import insert_into_film
    out, lesions, distractors = insert_into_film(rng, film, analyse_film(film, rng), n_lesions=1)

Used by ``calcidet synth --backgrounds`` (``data/synth.py``); the film model (intensity curve, blur,
noise, where masses go) is ``data.synth_real``'s. Domain randomisation, per mass: diameter 3-30% of
the film's short side (log-uniform, so half are under 9.5%: small masses are the hard case),
density from barely visible to dense (log-uniform, with a floor: a mass must brighten the film by at
least ``MIN_CONTRAST`` where it is dense, else it is drawn denser, or left out where the film is
saturated and cannot show it; a positive label no reader could see teaches the model to fire on
plain soft tissue), lobule size (many small or a few big lobules),
pattern (cloud, cystic rims, fluid-calcium levels), and how far it tucks against or over the bone.

Each mass also records its ``conspicuity``: the display lift it causes over its dense region, divided by
the film's own structure there at the mass's scale (bone edges, trabeculae, noise). The ``contrast``
floor alone lets a smooth haze over the phalanges through, lifted 0.15 but lost among cortical edges;
conspicuity sorts such masses into ``visibility`` groups (``VISIBILITY_BUCKETS``) that
``calcidet evaluate --by attributes.visibility`` reports apart.

The label: a mass's COCO box is the extent of its own added attenuation at or above
``BOX_DENSITY_FRACTION`` of its peak, on the film's pixel grid, after resampling and blur.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calcidet.data.synth_anatomy import distance_mm
from calcidet.data.synth_lesions import (
    PATTERN_WEIGHTS,
    PATTERNS,
    _pick,
    insert_findings,
    render_calcinosis,
)
from calcidet.data.synth_markers import burn_markers
from calcidet.data.synth_mass_volume import render_mass_volume
from calcidet.data.synth_real import RealFilm, add_attenuation, to_logit

BOX_DENSITY_FRACTION = 0.15  # the box holds every pixel where the mass adds >= 15% of its peak attenuation
DIAMETER_FRAC = (0.03, 0.30)  # of the film's short side, log-uniform
DENSITY = (0.12, 1.6)  # multiplies ``render_calcinosis``'s density, log-uniform: barely visible to dense
LOBULE = (0.08, 0.3)  # typical lobule radius / mass radius, log-uniform
NEAR_BONE_MM = 20.0  # a mass's centre lies at most its radius plus this from bone
MIN_CONTRAST = 0.04  # display units (~10 of 255 grey levels) at the mass's 90th percentile: barely visible
MAX_BOOST = 6.0  # a faint draw is made at most this much denser to reach MIN_CONTRAST
OVERSAMPLE, MAX_RENDER_PX = 3, 200  # draw masses up to 3x finer than the film (at most 200 px across)
# Conspicuity (lift / clutter) groups: name, upper bound. Set by eye on contact sheets of the held-out
# films: under 1 the mass is lost in the bone's structure, over 2.5 it stands out at a glance.
VISIBILITY_BUCKETS: tuple[tuple[str, float], ...] = (("faint", 1.0), ("subtle", 2.5), ("clear", np.inf))
DRAWINGS = {"lobules": render_calcinosis, "volume": render_mass_volume}
RENDER_BLUR_PX = 0.35  # blur the drawing already has on the film grid (area averaging, drawing blur)


def render_mass(rng: np.random.Generator, real: RealFilm, diameter_px: float, pattern: str, density: float,
                lobule: float, drawing: str = "lobules") -> np.ndarray:
    """A mass's added attenuation at film resolution: drawn finer, area-averaged, blurred like the film.

    ``drawing``: "lobules" (``render_calcinosis``: 2D lobules packed in an outline) or "volume"
    (``render_mass_volume``: loculi of a 3D capsule, projected), two models written apart.
    """
    os_ = int(np.clip(MAX_RENDER_PX // max(1.3 * diameter_px, 1.0), 1, OVERSAMPLE))
    draw = DRAWINGS[drawing]
    patch = draw(rng, diameter_px * real.spacing, real.spacing / os_, pattern, density, lobule=lobule)
    if os_ > 1:  # area-average onto the film's grid, as the film itself was downsampled
        n = -(-patch.shape[0] // os_)
        patch = np.pad(patch, (0, n * os_ - patch.shape[0]))
        patch = cv2.resize(patch, (n, n), interpolation=cv2.INTER_AREA)
    extra = float(np.sqrt(max(real.blur_px**2 - RENDER_BLUR_PX**2, 0.0)))
    if extra > 0.1:
        pad = int(np.ceil(3 * extra)) + 1
        patch = cv2.GaussianBlur(np.pad(patch, pad), (0, 0), extra)
    return patch


def on_film(shape: tuple[int, int], patch: np.ndarray, x0: int, y0: int) -> tuple[tuple, np.ndarray] | None:
    """The film slices a patch at top-left (x0, y0) covers and the patch's part inside them, or None."""
    h, w = shape
    ph, pw = patch.shape
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + pw, w), min(y0 + ph, h)
    if xa >= xb or ya >= yb:
        return None
    return np.s_[ya:yb, xa:xb], patch[ya - y0:yb - y0, xa - x0:xb - x0]


def place_patch(delta: np.ndarray, patch: np.ndarray, x0: int, y0: int) -> tuple[list[float], tuple] | None:
    """Add ``patch`` to ``delta`` at top-left (x0, y0), clipped to the film.

    Returns:
        The COCO box of the patch's pixels at or above ``BOX_DENSITY_FRACTION`` of its peak (the
        whole patch's peak, even if part of it falls off the film), and the (rows, cols) slices
        of ``delta`` that the clipped patch covers; None if nothing of it is on the film.
    """
    covered = on_film(delta.shape, patch, x0, y0)
    if covered is None:
        return None
    where, part = covered
    ys, xs = np.nonzero(part >= BOX_DENSITY_FRACTION * float(patch.max()))
    if len(xs) == 0:
        return None
    delta[where] += part
    xa, ya = where[1].start, where[0].start
    box = [float(xa + xs.min()), float(ya + ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
    return box, where


def _lift(film: np.ndarray, real: RealFilm, part: np.ndarray, where: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The film under the mass (clipped off 0 and 1), the display lift the mass alone causes, its dense pixels."""
    d = np.clip(film[where], 1e-3, 1 - 1e-3)
    lifted = 1.0 / (1.0 + np.exp(-(to_logit(d) + part / real.slope))) - d
    return d, lifted, part >= BOX_DENSITY_FRACTION * float(part.max())


def _contrast(film: np.ndarray, real: RealFilm, part: np.ndarray, where: tuple) -> float:
    """90th percentile of the display brightening the mass alone causes, over its boxed density."""
    _, lifted, dense = _lift(film, real, part, where)
    return round(float(np.percentile(lifted[dense], 90)), 4) if dense.any() else 0.0


def conspicuity(film: np.ndarray, real: RealFilm, part: np.ndarray, where: tuple) -> float:
    """The mass's mean display lift over its dense region / the film's clutter there (both display units).

    Clutter is the film's structure at the mass's own scale: the region with detail coarser than the
    mass removed (a Gaussian high-pass at a quarter of its extent), its robust spread over the dense
    pixels, never below the film's noise. Large, smooth exposure gradients do not hide a mass; edges do.
    """
    d, lifted, dense = _lift(film, real, part, where)
    if not dense.any():
        return 0.0
    ys, xs = np.nonzero(dense)
    sigma = max(1.0, 0.25 * float(max(np.ptp(ys), np.ptp(xs))))
    detail = d - cv2.GaussianBlur(d, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    # Robust spread (1.4826 MAD): a collimator edge crossing a corner of the box is not clutter over the mass.
    spread = detail[dense]
    clutter = max(1.4826 * float(np.median(np.abs(spread - np.median(spread)))), real.noise, 1e-3)
    return round(float(lifted[dense].mean()) / clutter, 3)


def visibility(value: float) -> str:
    """The ``VISIBILITY_BUCKETS`` name of a conspicuity."""
    return next(name for name, upper in VISIBILITY_BUCKETS if value < upper)


def boost_to_visible(film: np.ndarray, real: RealFilm, patch: np.ndarray, x0: int, y0: int,
                     min_conspicuity: float = 0.0) -> float | None:
    """The factor (>= 1) that makes the patch reach ``MIN_CONTRAST`` (and ``min_conspicuity``) at (x0, y0).

    None where even ``MAX_BOOST`` does not show it (saturated film, bone structure that hides it, or
    the patch off the film): such a mass is not placed. Attenuation is linear in density, the display
    is not, so iterate.
    """
    covered = on_film(film.shape, patch, x0, y0)
    if covered is None:
        return None
    where, part = covered

    def shortfall(boost: float) -> float:  # how many times too faint the mass is, by the stricter rule
        lack = MIN_CONTRAST / max(_contrast(film, real, boost * part, where), 1e-4)
        if min_conspicuity > 0:
            lack = max(lack, min_conspicuity / max(conspicuity(film, real, boost * part, where), 1e-4))
        return lack

    boost = 1.0
    for _ in range(4):
        lack = shortfall(boost)
        if lack <= 1.0:
            return boost
        if boost >= MAX_BOOST:
            return None
        boost = min(MAX_BOOST, boost * 1.15 * lack)
    return boost if shortfall(boost) <= 1.0 else None


@dataclass(frozen=True)
class MassOptions:
    """How masses are drawn into real films. The defaults draw them as calcidet always has.

    Args:
        min_conspicuity: draw each mass denser until its ``conspicuity`` reaches this (within
            ``MAX_BOOST``), else leave it out; 0 keeps the ``MIN_CONTRAST`` floor alone.
        volume_share: share of masses drawn by ``render_mass_volume`` instead of ``render_calcinosis``
            (each mass then records its ``drawing``).
    """

    min_conspicuity: float = 0.0
    volume_share: float = 0.0

    def __post_init__(self) -> None:
        if self.min_conspicuity < 0:
            raise ValueError(f"min_conspicuity must be at least 0, got {self.min_conspicuity}")
        if not 0.0 <= self.volume_share <= 1.0:
            raise ValueError(f"volume_share must be between 0 and 1, got {self.volume_share}")


def _place_masses(rng: np.random.Generator, film: np.ndarray, real: RealFilm, n_lesions: int,
                  delta: np.ndarray, options: MassOptions,
                  drawing_rng: np.random.Generator | None) -> tuple[list[dict], np.ndarray]:
    """Masses into ``delta`` (in place); returns their records and the working-resolution busy mask.

    ``options.volume_share`` of the masses are drawn by the volume model, chosen with ``drawing_rng`` so
    that ``rng``'s draws, and the films, stay as they were at share 0.
    """
    volume_share = options.volume_share
    an = real.anatomy
    ws, scale = an.spacing, an.spacing / real.spacing
    hw, ww = an.body.shape
    to_bone, to_skin = distance_mm(~an.bone, ws), distance_mm(an.body, ws)
    to_edge = distance_mm(np.pad(np.ones((hw, ww), bool), 1), ws)[1:-1, 1:-1]
    yy, xx = np.mgrid[0:hw, 0:ww].astype(np.float32)
    busy = np.zeros((hw, ww), bool)
    short = min(film.shape)
    lesions: list[dict] = []
    for _ in range(n_lesions):
        frac = float(np.exp(rng.uniform(*np.log(DIAMETER_FRAC))))
        snug = rng.uniform(0.15, 1.0)  # 0.15: tucked well over the bone's edge; 1: just clear of it
        for _attempt in range(5):  # no room: smaller, and closer in over the bone
            r = frac * short * real.spacing / 2  # mm
            ok = (real.weight > 0) & ~busy & (to_bone >= snug * r) & (to_bone <= r + NEAR_BONE_MM)
            ok &= (to_skin >= 0.35 * r) & (to_edge >= 0.6 * r)
            if ok.any():
                break
            frac, snug = max(DIAMETER_FRAC[0], 0.75 * frac), 0.5 * snug
        centre = _pick(rng, ok, real.weight)
        if centre is None:
            continue
        pattern = str(rng.choice(PATTERNS, p=PATTERN_WEIGHTS))
        density = float(np.exp(rng.uniform(*np.log(DENSITY))))
        drawing = "lobules"
        if volume_share > 0 and drawing_rng.random() < volume_share:
            drawing = "volume"
        patch = render_mass(rng, real, frac * short, pattern, density, float(np.exp(rng.uniform(*np.log(LOBULE)))),
                            drawing)
        x0 = int(round(centre[0] * scale)) - patch.shape[1] // 2
        y0 = int(round(centre[1] * scale)) - patch.shape[0] // 2
        boost = boost_to_visible(film, real, patch, x0, y0, options.min_conspicuity)
        if boost is None:
            continue
        patch, density = patch * boost, density * boost
        placed = place_patch(delta, patch, x0, y0)
        if placed is None:
            continue
        box, where = placed
        _, part = on_film(film.shape, patch, x0, y0)
        busy |= np.hypot(xx - centre[0], yy - centre[1]) * ws < 1.1 * r + 5
        seen = conspicuity(film, real, part, where)
        lesions.append({"bbox": box, "pattern": pattern, "diameter_mm": round(2 * r, 1),
                        "diameter_frac": round(frac, 4), "density": round(density, 3),
                        "contrast": _contrast(film, real, part, where), "conspicuity": seen,
                        "visibility": visibility(seen)})
        if volume_share > 0:  # recorded only when mixing: films made without it keep their bytes
            lesions[-1]["drawing"] = drawing
    return lesions, busy


def insert_into_film(rng: np.random.Generator, film: np.ndarray, real: RealFilm, n_lesions: int,
                     markers: bool = True, options: MassOptions = MassOptions(),
                     drawing_rng: np.random.Generator | None = None) -> tuple[np.ndarray, list[dict], list[dict]]:
    """Insert masses, look-alikes and markers into a real film.

    Args:
        rng: random generator.
        film: float32 H x W display values in 0..1, bone bright.
        real: ``data.synth_real.analyse_film(film, ...)``.
        n_lesions: masses to place (fewer if the film has no room for them).
        markers: burn in side letters, text and rulers (hard negatives).
        options: how the masses are drawn (``MassOptions``: conspicuity floor, volume-model share).
        drawing_rng: the generator that picks each mass's drawing model (needed when
            ``options.volume_share`` > 0), so that ``rng``'s draws stay as they were at share 0.

    Returns:
        ``(film, lesions, distractors)``: the new film (float32 0..1); lesions with ``bbox`` (COCO xywh,
        film px), ``pattern``, ``diameter_mm``, ``diameter_frac``, ``density``, ``contrast`` (display
        units), ``conspicuity`` and ``visibility``; distractors with ``kind`` and ``bbox``, never labelled.
    """
    if options.volume_share > 0 and drawing_rng is None:
        raise ValueError("volume_share > 0 needs a drawing_rng to pick each mass's drawing")
    delta = np.zeros(film.shape, np.float32)
    lesions, busy = _place_masses(rng, film, real, n_lesions, delta, options, drawing_rng)
    # Look-alikes are drawn on the film's grid; blur them as the film is blurred.
    extra = np.zeros(film.shape, np.float32)
    clear = ~cv2.dilate(busy.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if real.anatomy.keepout is not None:
        clear &= ~real.anatomy.keepout
    _, distractors = insert_findings(rng, extra, real.anatomy, real.spacing, 0, clear)
    sigma = float(np.sqrt(max(real.blur_px**2 - 0.6**2, 0.0)))
    delta += cv2.GaussianBlur(extra, (0, 0), sigma) if sigma > 0.1 else extra
    out = add_attenuation(film, real, delta, rng)
    if markers:
        distractors += burn_markers(rng, out, real.spacing, real.blur_px, [les["bbox"] for les in lesions])
    return out, lesions, distractors
