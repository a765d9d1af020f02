"""A third held-out real-film test set, its masses drawn by a third, independently written drawing.

    python benchmarks/third_insertion.py --out runs/third_insertion
    python benchmarks/generalization.py --checkpoint CKPT --set third=runs/third_insertion

For testing only, never for training: nothing in calcidet trains on this drawing, now or later. A
model that scores well on calcidet's own held-out set and on ``second_insertion.py``'s but not here
has learned a drawing, not calcinosis. Films, masses per film and placement are the second set's
harness, so this set differs from calcidet's own only in how a mass is drawn and added; at each of
those steps it makes a choice that neither calcidet's drawing nor the second set's makes:

- **shape**: an amorphous, cloud-like mass. Band-limited noise (one white field filtered by
  log-Gaussian rings an octave apart, from 40 % of the diameter down to ~2.5 px, each octave at 0.55
  of the last) is thresholded inside an irregular envelope (an ellipse's falloff warped by coarse
  noise), so lobules merge at the centre and break into ragged fragments at the margin; the further
  the noise clears the threshold, and the deeper in the envelope, the denser. Whole lobules are
  denser or fainter and mottled by two more noise bands, lucent clefts (thin lines where another
  noise field nears zero, gated to a few stretches) split them, and a faint haze lies between.
  Variants (``VARIANTS``, ``VARIANT_WEIGHTS``): ``popcorn`` (60 %); ``cystic`` (25 %), 1-3 lucent
  loculi with a patchy eggshell rim (a band just inside a noisy blob's outline, its depth taken as
  the blob's field over the field's slope); ``level`` (15 %), 1-2 larger, rounder loculi whose lower
  part holds a calcium sediment with a sharp, straight, horizontal top (the film's rows);
- **compositing**: additive in a gamma-linearised domain: ``u = v ** (1 / g)`` with ``g`` drawn per
  film from ``GAMMA`` (0.7-1.4), ``u += a * path`` with the amplitude ``a`` log-uniform in
  ``AMPLITUDE``, ``v = u ** g``. The addition is plain while it uses under ``SHOULDER`` (60 %) of
  the room left to white (``1 - u``) and eases off exponentially beyond, so nothing is clipped to
  white; values stay in 0..1, monotone in the film and in the path;
- **blur**: Gaussian at the film's own edge blur (x 0.85-1.15), measured here: the film's sharpest
  0.5 % of gradients are blurred again by a known sigma, and how much they drop gives the film's;
- **noise**: Poisson-like: the mass brings grain whose variance grows in proportion to the
  brightness it adds (``noise**2 * lift / NOISE_REF_LIFT``, ``noise`` the film's own pixel noise from
  the median absolute deviation of diagonal neighbour differences), a little correlated at the
  film's blur;
- **size**: an equivalent diameter of 3-28 % of the film's short side, log-uniform; a share
  ``ELONGATED_SHARE`` (30 %) is elongated, aspect 1.3-2.5, the rest 1.0-1.3, at any angle;
- **label**: the COCO box [x, y, w, h] in film pixels is the extent of the pixels whose display
  lift (before the noise) is at least ``BOX_FRACTION`` (20 %) of the mass's peak lift, clipped to
  the film;
- **visibility floor**: the mean lift over the mass's dense part (its path at or above half its peak)
  must reach ``MIN_LIFT`` (0.04 display units, about 10 grey levels): a fainter draw is made denser,
  x ``DENSER`` a step up to ``MAX_AMPLITUDE``, and if it still cannot show it is not placed;
- **placement**: calcidet's own map of periarticular soft tissue (``second_insertion.calcidet_sites``
  over ``data.synth_real``), with half the mass's long axis as its radius, clear of earlier masses;
  a mass that finds no site there is drawn again (``SITE_TRIES`` shapes in all), so the sizes placed
  lean a little small on small films;
- no look-alikes and no burned-in markers are added (the films keep their own).

The films are the 268 ``heldout`` ones of ``real_film_split.csv``, read with calcidet's reader,
shrunk to at most 1600 px and written as 8-bit PNG; about a third stay negative, the others get 1-2
masses (``second_insertion.build``'s counts); seed ``SEED``, so every build is the same. Without
``../shared`` (a user's clone) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

# calcidet clips a patch to the film; the drawing, compositing, blur and noise are this module's own
from calcidet.data.synth_insert import on_film

ROOT = Path(__file__).resolve().parents[1]


def _harness():
    """``second_insertion.py`` (films, counts, placement, COCO writing): a script, so loaded by path."""
    spec = importlib.util.spec_from_file_location("second_insertion", ROOT / "benchmarks" / "second_insertion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = _harness()

SEED = 20261207
DESCRIPTION = "calcidet third-insertion held-out set"
DIAMETER_FRAC = (0.03, 0.28)  # equivalent diameter, of the short side, log-uniform
ELONGATED_SHARE = 0.3
ASPECT, ROUND_ASPECT = (1.3, 2.5), (1.0, 1.3)
VARIANTS, VARIANT_WEIGHTS = ("popcorn", "cystic", "level"), (0.6, 0.25, 0.15)
GAMMA = (0.7, 1.4)  # per film: u = v ** (1 / g)
SHOULDER = 0.6  # the addition is plain up to this share of the room left to white
AMPLITUDE = (0.05, 0.5)  # the peak added to u, log-uniform
MAX_AMPLITUDE = 0.9
DENSER = 1.25
MIN_LIFT = 0.04  # display units: mean lift over the dense part
DENSE_FRACTION = 0.5  # the dense part: path >= half its peak
BOX_FRACTION = 0.20  # the box holds every pixel lifted by >= 20 % of the peak lift
REBLUR = 2.0  # px: the known blur that measures the film's own
EDGE_SIGMA = (0.5, 2.5)  # the film's edge blur is taken inside this range
SOBEL_VARIANCE = 0.5  # px^2: the [1, 2, 1] / 4 smoothing inside a 3 x 3 Sobel
NOISE_REF_LIFT = 0.1  # a lift of 0.1 adds as much noise variance as the film has
SITE_TRIES = 3  # shapes drawn for one mass before it is given up


# --- shape -------------------------------------------------------------------------------------

def band_noise(rng: np.random.Generator, shape: tuple[int, int], wavelengths: list[float]) -> list[np.ndarray]:
    """One unit-variance field per wavelength (px), each holding about an octave around it.

    The bands filter one white field; they barely overlap in frequency, so they are near independent.
    """
    white = np.fft.rfft2(rng.standard_normal(shape))
    f = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.rfftfreq(shape[1])[None, :])
    f[0, 0] = 1e-9  # no mean: log2 of 0 otherwise
    fields = []
    for lam in wavelengths:
        ring = np.exp(-0.5 * (np.log2(f * lam) / 0.5) ** 2)
        field = np.fft.irfft2(white * ring, s=shape)
        fields.append((field / (field.std() + 1e-12)).astype(np.float32))
    return fields


def smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def ellipse_radius(side: int, major: float, minor: float, angle: float) -> np.ndarray:
    """Normalised elliptical radius over a square patch centred on the mass (1 on the nominal outline)."""
    c = (side - 1) / 2
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) - c
    along = xx * np.cos(angle) + yy * np.sin(angle)
    across = -xx * np.sin(angle) + yy * np.cos(angle)
    return np.hypot(along / (major / 2), across / (minor / 2))


def envelope_field(rng: np.random.Generator, rho: np.ndarray, diameter: float) -> np.ndarray:
    """Signed field, > 0 inside the mass: an ellipse's falloff warped by coarse noise into lobes and bays."""
    lobes, bays = band_noise(rng, rho.shape, [diameter / 2, diameter / 4.5])
    field = 1 - rho**2 + 0.35 * lobes + 0.2 * bays
    return field - 4 * np.maximum(rho - 1.25, 0)  # nothing strays to the patch's edge


def fractal(rng: np.random.Generator, shape: tuple[int, int], diameter: float) -> np.ndarray:
    """Multi-octave texture (unit std) from 40 % of the diameter down to ~2.5 px.

    The coarse octaves dominate (each finer one at 0.55 of the last): rounded lobules with rough rims,
    not a foam of equal small blobs.
    """
    lams = [0.4 * diameter / 2**k for k in range(6) if 0.4 * diameter / 2**k >= 2.5] or [2.5]
    octaves = band_noise(rng, shape, lams)
    texture = sum(0.55**k * o for k, o in enumerate(octaves))
    return texture / (texture.std() + 1e-12)


def popcorn(rng: np.random.Generator, env: np.ndarray, diameter: float) -> np.ndarray:
    """Density 0..1: clumps where texture plus envelope clears a threshold, mottled and split by clefts."""
    texture = fractal(rng, env.shape, diameter)
    # deep in the envelope most texture clears the threshold; near its edge only peaks do: ragged margins.
    # A wide ramp, not a plateau: the further the texture clears it, the thicker the clump
    clumps = smoothstep(texture + 2.6 * env - 0.9, 0.0, 1.6)
    thickness = 0.45 + 0.55 * smoothstep(env, 0.0, 0.8)  # a deeper chord through the middle of the mass
    # chalk of uneven density: whole lobules denser or fainter, and a finer mottle within them (not at
    # the pixel scale: a pixel-fine mottle reads as a sponge)
    lobe, fine = band_noise(rng, env.shape, [diameter / 3, max(diameter / 10, 3.0)])
    mottle = (0.55 + 0.45 * smoothstep(lobe, -1.2, 1.2)) * (0.75 + 0.25 * smoothstep(fine, -1.5, 1.5))
    # lucent clefts: near-zero lines of a coarse field, gated to a few stretches (at a fine scale they
    # would close into small rings: a foam, not clefts)
    crack, gate = band_noise(rng, env.shape, [max(diameter / 3, 12.0), diameter / 2])
    width = rng.uniform(0.08, 0.16)
    clefts = np.exp(-((crack / width) ** 2)) * smoothstep(gate, 0.2, 0.9)
    haze = rng.uniform(0.05, 0.2) * smoothstep(env, 0.0, 0.3)  # a thin cloud between the clumps
    density = clumps * thickness * mottle * (1 - 0.8 * clefts)
    return density + haze * (1 - density)


def loculus(rng: np.random.Generator, shape: tuple[int, int], cx: float, cy: float, radius: float,
            wobble: float) -> tuple[np.ndarray, np.ndarray]:
    """(rim, lumen) of a ragged loculus: its rim is a band just inside the outline of a noisy blob.

    The depth into the blob is its field over the field's slope (a first-order distance to the
    outline): smooth to a fraction of a pixel, where a distance map of the thresholded blob would step.
    """
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    bumps, patchy = band_noise(rng, shape, [max(radius, 4.0), max(radius / 2, 3.0)])
    field = 1 - ((xx - cx) ** 2 + (yy - cy) ** 2) / radius**2 + wobble * bumps
    gy, gx = np.gradient(field)
    inner = field / (np.hypot(gx, gy) + 1e-6)
    wall = max(1.2, rng.uniform(0.07, 0.15) * radius)
    lumen = smoothstep(inner, wall, 1.6 * wall)
    # an eggshell rim, thicker and thinner along its course, here and there nearly gone
    rim = smoothstep(inner, 0.0, 0.6) * (1 - lumen) * (0.25 + 0.75 * smoothstep(patchy, -1.2, 0.8))
    return rim, lumen


def _centre_inside(rng: np.random.Generator, env: np.ndarray, depth: float) -> tuple[float, float]:
    """A random pixel at least ``depth`` into the envelope (its deepest pixel if none is)."""
    ys, xs = np.nonzero(env >= depth)
    if len(xs) == 0:
        y, x = np.unravel_index(int(np.argmax(env)), env.shape)
        return float(x), float(y)
    i = int(rng.integers(len(xs)))
    return float(xs[i]), float(ys[i])


def add_loculi(rng: np.random.Generator, density: np.ndarray, env: np.ndarray, minor: float, level: bool) -> np.ndarray:
    """Hollow out loculi with calcified rims; with ``level``, fill their lower part with a sediment."""
    count = int(rng.integers(1, 3)) if level else int(rng.integers(1, 4))
    size = (0.3, 0.55) if level else (0.2, 0.45)
    for _ in range(count):
        radius = max(3.0, rng.uniform(*size) * minor / 2)
        cx, cy = _centre_inside(rng, env, 0.5 if level else 0.3)
        rim, lumen = loculus(rng, density.shape, cx, cy, radius, wobble=0.15 if level else 0.3)
        density = density * (1 - rng.uniform(0.6, 0.9) * lumen)  # a loculus is lucent, not empty
        density = np.maximum(density, rim * rng.uniform(0.6, 1.0))
        if level:  # a sharp, straight level: calcium settles to the loculus's lower rows
            rows = np.nonzero(lumen.max(axis=1) > 0.5)[0]
            if len(rows):
                top = int(rows[0] + rng.uniform(0.3, 0.7) * (rows[-1] - rows[0]))
                settled = np.zeros_like(lumen)
                settled[top:] = lumen[top:]  # a hard top row; the sides follow the lumen's soft edge
                (grit,) = band_noise(rng, lumen.shape, [max(radius / 3, 3.0)])  # the sediment is not a flat plate
                sediment = rng.uniform(0.45, 0.85) * (0.85 + 0.15 * smoothstep(grit, -1.5, 1.5))
                density = np.maximum(density, settled * sediment)
    return density


def draw_mass(rng: np.random.Generator, diameter: float, aspect: float, angle: float, variant: str) -> np.ndarray:
    """The mass's path, 0..1 (1 at its densest), on a square patch centred on it."""
    major, minor = diameter * np.sqrt(aspect), diameter / np.sqrt(aspect)
    side = int(np.ceil(1.5 * major)) + 8
    env = envelope_field(rng, ellipse_radius(side, major, minor, angle), diameter)
    density = popcorn(rng, env, diameter)
    if variant != "popcorn":
        density = add_loculi(rng, density, env, minor, level=variant == "level")
    return (density / max(float(density.max()), 1e-6)).astype(np.float32)


# --- the film ----------------------------------------------------------------------------------

def _gradient(img: np.ndarray) -> np.ndarray:
    return np.hypot(cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3))


def edge_sigma(film: np.ndarray) -> float:
    """The film's edge blur (Gaussian sigma, px), from how much its sharpest edges drop when blurred again.

    A step blurred by s has a peak slope ~ 1 / s; blurred again by r, ~ 1 / hypot(s, r). So the ratio
    of the two slopes, q, gives s = r q / sqrt(1 - q^2); the Sobel's own smoothing (variance 1/2 px^2)
    is then taken off.
    """
    film = film.astype(np.float32)
    g0 = _gradient(film)
    sharpest = g0 >= np.percentile(g0, 99.5)
    g1 = _gradient(cv2.GaussianBlur(film, (0, 0), REBLUR))
    q = float(np.clip(g1[sharpest].sum() / max(float(g0[sharpest].sum()), 1e-9), 0.05, 0.95))
    measured = REBLUR * q / np.sqrt(1 - q * q)
    return float(np.clip(np.sqrt(max(measured**2 - SOBEL_VARIANCE, 0.0)), *EDGE_SIGMA))


def film_grain(film: np.ndarray) -> float:
    """The film's pixel noise (display units): a robust spread (MAD) of diagonal neighbour differences."""
    d = (film[1:, 1:] - film[:-1, :-1]).ravel() / np.sqrt(2)
    return max(1.4826 * float(np.median(np.abs(d - np.median(d)))), 0.002)


def composite(v: np.ndarray, add: np.ndarray, gamma: float) -> np.ndarray:
    """Film ``v`` (0..1) with ``add`` put in its gamma-linearised domain: plain addition, a shoulder near white.

    ``u = v ** (1 / gamma)``; of the room ``1 - u`` the addition uses ``h(add / room)``, with ``h(x) = x``
    up to ``SHOULDER`` and then easing towards 1 (never reaching it); ``v = u ** gamma``.
    """
    u = np.clip(v.astype(np.float64), 0, 1) ** (1 / gamma)
    room = np.maximum(1 - u, 1e-9)
    x = np.maximum(add, 0) / room
    c = SHOULDER
    eased = np.where(x <= c, x, c + (1 - c) * (1 - np.exp(-(x - c) / (1 - c))))
    return np.clip((u + room * eased) ** gamma, 0, 1).astype(np.float32)


def _amplitudes(start: float) -> Iterator[float]:
    """The drawn amplitude, then denser steps, the last one at ``MAX_AMPLITUDE``."""
    a = min(start, MAX_AMPLITUDE)
    while a < MAX_AMPLITUDE:
        yield a
        a *= DENSER
    yield MAX_AMPLITUDE


def grain(rng: np.random.Generator, lift: np.ndarray, noise: float, blur: float) -> np.ndarray:
    """Poisson-like grain: variance in proportion to the brightness the mass adds."""
    z = rng.standard_normal(lift.shape).astype(np.float32)
    if blur > 0.5:  # the film's grain is not pixel-white either: correlate it a little, keep unit variance
        z = cv2.GaussianBlur(z, (0, 0), 0.5 * blur)
        z /= z.std() + 1e-12
    return noise * np.sqrt(np.maximum(lift, 0) / NOISE_REF_LIFT) * z


def insert_mass(rng: np.random.Generator, film: np.ndarray, path: np.ndarray, x0: int, y0: int,
                amplitude: float, gamma: float, noise: float, blur: float = 1.0) -> tuple[list[int], float, float] | None:
    """Add ``path`` (top-left at x0, y0) to ``film`` in place; (box, peak lift, amplitude used) or None.

    None, the film untouched, when the patch misses the film or cannot reach the visibility floor.
    """
    covered = on_film(film.shape, path, x0, y0)
    if covered is None:
        return None
    where, part = covered
    dense = part >= DENSE_FRACTION * float(path.max())
    if not dense.any():
        return None
    before = film[where].copy()
    for a in _amplitudes(amplitude):
        after = composite(before, a * part, gamma)
        if float((after - before)[dense].mean()) >= MIN_LIFT:
            break
    else:
        return None
    film[where] = after
    lift = film[where] - before
    peak = float(lift.max())
    ys, xs = np.nonzero(lift >= BOX_FRACTION * peak)
    x, y = where[1].start + int(xs.min()), where[0].start + int(ys.min())
    box = [x, y, int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1]
    if noise > 0:
        film[where] = np.clip(after + grain(rng, lift, noise, blur), 0, 1)
    return box, peak, a


# --- the set -----------------------------------------------------------------------------------

def draw_shape(rng: np.random.Generator) -> tuple[float, float, float, str]:
    """(diameter as a share of the short side, aspect, angle, variant) of one mass."""
    frac = float(np.exp(rng.uniform(*np.log(DIAMETER_FRAC))))
    aspect = float(rng.uniform(*(ASPECT if rng.random() < ELONGATED_SHARE else ROUND_ASPECT)))
    angle = float(rng.uniform(0, np.pi))
    variant = str(rng.choice(VARIANTS, p=VARIANT_WEIGHTS))
    return frac, aspect, angle, variant


def insert_masses(rng: np.random.Generator, film: np.ndarray, n: int,
                  sites: tuple[Callable, float] | None = None) -> list[dict]:
    """Up to ``n`` masses into ``film`` (0..1, in place) at calcidet's sites; their COCO boxes and attributes.

    ``sites``: ``(pick, scale)`` from ``second_insertion.calcidet_sites``; the harness's ``build`` calls this.
    """
    if n == 0:
        return []
    if sites is None:
        raise ValueError("the third set places masses by calcidet's own site map only (placement='calcidet')")
    pick, scale = sites
    short = min(film.shape)
    gamma = float(rng.uniform(*GAMMA))  # one imaging chain per film
    sharpness, noise = edge_sigma(film), film_grain(film)
    taken: list[tuple[float, float, float]] = []
    masses = []
    for _ in range(n):
        for _try in range(SITE_TRIES):  # a large mass may find no room by a small joint: draw it again
            frac, aspect, angle, variant = draw_shape(rng)
            reach = frac * short * np.sqrt(aspect) / 2  # half the long axis: kept clear of bone, skin and edge
            site = pick(rng, None, None, reach * scale, taken)
            if site is not None:
                break
        if site is None:
            continue
        blur = sharpness * rng.uniform(0.85, 1.15)
        path = cv2.GaussianBlur(draw_mass(rng, frac * short, aspect, angle, variant), (0, 0), blur)
        x0 = int(round(site[0] / scale - path.shape[1] / 2))
        y0 = int(round(site[1] / scale - path.shape[0] / 2))
        amplitude = float(np.exp(rng.uniform(*np.log(AMPLITUDE))))
        placed = insert_mass(rng, film, path, x0, y0, amplitude, gamma, noise, blur)
        if placed is None:
            continue
        box, peak, used = placed
        taken.append((site[0], site[1], reach * scale))
        masses.append({"bbox": box, "attributes": {
            "diameter_frac": round(frac, 4), "peak_lift": round(peak, 4), "variant": variant,
            "aspect": round(aspect, 3), "amplitude": round(used, 4), "gamma": round(gamma, 3)}})
    return masses


def build(out: Path, shared: Path, seed: int = SEED, limit: int | None = None) -> dict:
    """Write ``out/images/*.png`` and ``out/annotations.json`` with the harness; the COCO dict."""
    return harness.build(out, shared, seed, limit, placement="calcidet", insert=insert_masses, description=DESCRIPTION)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "runs" / "third_insertion"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "radiographs" / "fracatlas"))
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    shared, out = Path(args.shared), Path(args.out)
    if not shared.is_dir():
        print(f"skipped: {shared} is missing (the held-out films live outside the repository)")
        return 0
    coco = build(out, shared, args.seed)
    positive = {a["image_id"] for a in coco["annotations"]}
    print(f"third-insertion held-out set: {len(coco['images'])} films, {len(coco['annotations'])} masses, "
          f"{len(coco['images']) - len(positive)} negatives -> {out / 'annotations.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
