"""A calcinosis mass drawn as a 3D volume of loculi and projected along the beam.

    from calcidet.data.synth_mass_volume import render_mass_volume
    patch = render_mass_volume(rng, diameter_mm=20.0, spacing_mm=0.2, pattern="cystic")

A second, independently built drawing of the periarticular "cloud-like" mass, for domain
randomisation across drawings. The model is geometric, not painted: a capsule (a union of a few
random ellipsoids) is filled with random seeds; each seed's Voronoi cell, clipped to a ball around
it, is a loculus, so the outline is a cluster of bulges and neighbours meet at flat fibrous septa.
Each loculus holds one content: calcium slurry of its own density (cloud), fluid inside a calcified
wall (cystic), calcium settled under a horizontal fluid-calcium level (sedimentation; the plane is a
constant image row), or next to nothing (a lucent cleft). The volume (image rows = y, columns = x,
beam = z) is summed along z, so thickness, overlap and superimposition come out of the geometry;
a few small deposits lie just outside the capsule. Coordinates are in units of the mass radius R.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree

PATTERNS = ("cloud", "cystic", "sedimentation")
KINDS = ("slurry", "cyst", "sediment", "empty")
# Share of loculi of each kind (slurry, cyst, sediment, empty): the pattern sets the dominant one.
KIND_WEIGHTS = {
    "cloud": (0.76, 0.06, 0.04, 0.14),
    "cystic": (0.14, 0.66, 0.08, 0.12),
    "sedimentation": (0.12, 0.14, 0.62, 0.12),
}
FIELD = 1.3  # patch side / diameter
BORDER_PX = 2  # all-zero rim of the patch
EXTENT = 1.12  # nothing of the mass lies farther than this (x R) from the centre in the image plane
GRID_MAX, GRID_MIN = 48, 24  # voxels across the field (image plane): speed vs detail
VOXELS_PER_DIAMETER = 20  # at least this many voxels across the mass, however small the patch
Z_STEP = 1.6  # beam-axis voxel length / in-plane voxel: the sum along z hides the coarser step
LOBES = (2, 5)  # ellipsoids in the capsule (inclusive)
FILL = 0.55  # share of the capsule's volume the seeds' nominal balls take up (sets the seed count)
MAX_SEEDS = 260
BULGE = (0.75, 1.35)  # a loculus's ball radius / distance to its nearest neighbouring seed
SEPTUM = 0.025  # half-thickness of a septum (x R): fibrous, hardly calcified
LUMP = 0.12  # loculi are lumpy: their ball radius varies by this share per unit of coarse noise
LUMP_REACH = 1.0 + 2 * LUMP + 0.02  # the farthest a lumpy loculus reaches, x its radius
SEPTUM_DEPTH = 0.4  # how much of the content a septum lacks
SLURRY_SIGMA = 0.3  # log-sd of loculus densities: each loculus its own concentration
WALL = (0.1, 0.3)  # cyst wall thickness / loculus radius
WALL_DENSITY = 1.7  # calcified wall vs slurry
FLUID = (0.02, 0.1)  # fluid's added attenuation vs slurry (water is close to soft tissue)
SEDIMENT_DENSITY = 1.5  # settled calcium is denser than a suspension
LEVEL = (-0.55, 0.45)  # level's height below the seed, x loculus radius (positive = lower in the image)
EMPTY = (0.03, 0.2)  # an empty loculus's density vs slurry
TEXTURE = (0.3, 0.3)  # log-sd of the coarse (loculus-scale) and fine (clump) density texture
SATELLITES = 1.5  # mean count of small deposits just outside the capsule
SOFT_VOXELS = 0.35  # the mass's own edge softness, in voxels (the film's blur is the caller's)
# Densest ray at density 1: PEAK_20MM * (D / 20 mm) ** PEAK_EXPONENT, times a random spread. Big masses
# are more loculated and less solidly calcified, so the peak grows slower than the thickness.
PEAK_20MM, PEAK_EXPONENT, PEAK_SPREAD = 1.1, 0.78, (0.82, 1.12)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _capsule(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A few ellipsoids inside the unit ball: their centres, and rotations scaled by inverse semi-axes."""
    k = int(rng.integers(LOBES[0], LOBES[1] + 1))
    squash = np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.45, 1.0)])  # the mass's overall shape
    whole = _rotation(rng)
    centres, mats = [], []
    for j in range(k):
        a = rng.uniform(0.5, 0.95, 3) * (1.0 if j == 0 else 0.8)
        c = whole @ (squash * rng.normal(0, 0.22, 3)) if j else np.zeros(3)
        a = a * min(1.0, 0.98 / (np.linalg.norm(c) + a.max()))  # stay inside the unit ball
        centres.append(c)
        mats.append(_rotation(rng).T / a[:, None])
    return np.array(centres), np.array(mats)


def _inside(p: np.ndarray, centres: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """Whether points (n, 3) lie in the capsule."""
    q = np.full(len(p), np.inf)
    for c, m in zip(centres, mats):
        q = np.minimum(q, np.sum(((p - c) @ m.T) ** 2, axis=1))
    return q < 1.0


def _seeds(rng: np.random.Generator, caps: tuple[np.ndarray, np.ndarray], lobule: float) -> np.ndarray:
    """Uniform random seeds in the capsule, as many as loculi of radius ``lobule`` fill it."""
    cand = rng.uniform(-1, 1, (4000, 3))
    inside = cand[_inside(cand, *caps)]
    # Scale the capsule so that, with the outer loculi's bulges, the mass spans its diameter in the image.
    fit = (1.0 - 0.8 * lobule) / float(np.hypot(inside[:, 0], inside[:, 1]).max())
    inside, volume = inside * fit, 8.0 * fit**3 * len(inside) / len(cand)
    n = int(np.clip(round(FILL * volume / (4 / 3 * np.pi * lobule**3)), 3, MAX_SEEDS))
    return inside[rng.permutation(len(inside))[:n]]


def _noise(rng: np.random.Generator, p: np.ndarray, cell: float) -> np.ndarray:
    """Value noise (about unit variance) at points p, varying over ``cell`` (x R)."""
    size = int(np.ceil(2.8 / cell)) + 3
    lattice = rng.standard_normal((size, size, size))
    return map_coordinates(lattice, ((p + 1.4) / cell).T, order=1, mode="nearest") * 1.6


def _ramp(d: np.ndarray, width: float) -> np.ndarray:
    """Soft step (0..1) across a boundary at signed distance d, over ``width`` (sub-voxel anti-aliasing)."""
    return np.clip(0.5 + d / width, 0.0, 1.0)


def _loculi(rng: np.random.Generator, seeds: np.ndarray, pattern: str, lobule: float) -> dict[str, np.ndarray]:
    """Per loculus: ball radius, kind, density, wall thickness, fluid and level."""
    n = len(seeds)
    if n > 1:
        near, _ = cKDTree(seeds).query(seeds, k=2)
        gap = near[:, 1]
    else:
        gap = np.full(n, 2 * lobule)
    radius = np.clip(gap, 0.6 * lobule, 2.5 * lobule) * rng.uniform(*BULGE, n)
    # Keep each bulge inside the image-plane extent.
    radius = np.minimum(radius, np.maximum(EXTENT - np.hypot(seeds[:, 0], seeds[:, 1]), 0.02))
    return {
        "radius": radius,
        "kind": rng.choice(len(KINDS), n, p=KIND_WEIGHTS[pattern]),
        "density": np.exp(rng.normal(0, SLURRY_SIGMA, n)),
        "wall": rng.uniform(*WALL, n) * radius,
        "fluid": rng.uniform(*FLUID, n),
        "level": seeds[:, 0] + rng.uniform(*LEVEL, n) * radius,
        "empty": rng.uniform(*EMPTY, n),
    }


def _project(rng: np.random.Generator, seeds: np.ndarray, loc: dict, half: float, n: int,
             lobule: float) -> np.ndarray:
    """Sum the loculi's attenuation along z on an n x n grid spanning [-half, half]^2 (x R)."""
    h = 2 * half / n
    hz = Z_STEP * h
    axis = (np.arange(n) + 0.5) * h - half
    reach = np.max(np.abs(seeds) + LUMP_REACH * loc["radius"][:, None], axis=0) + 2 * h
    ys, xs = axis[np.abs(axis) <= reach[0]], axis[np.abs(axis) <= reach[1]]
    zs = np.arange(-reach[2], reach[2] + hz, hz)
    grid = np.stack(np.meshgrid(ys, xs, zs, indexing="ij"), -1).reshape(-1, 3)
    tree = cKDTree(seeds)
    k = 2 if len(seeds) > 1 else 1
    # Voxels beyond every bulge come back at infinite distance, cheaply: they stay empty.
    d, i = tree.query(grid, k=k, distance_upper_bound=LUMP_REACH * float(loc["radius"].max()) + 2 * h)
    d, i = d.reshape(len(grid), k), i.reshape(len(grid), k)
    keep = np.isfinite(d[:, 0])
    p, d, i = grid[keep], d[keep], i[keep]
    d1, i1 = d[:, 0], i[:, 0]
    if k == 2:
        far = ~np.isfinite(d[:, 1])  # no neighbour within reach: no septum either
        j = np.where(far, i1, i[:, 1])
        sep = np.linalg.norm(seeds[i1] - seeds[j], axis=1)
        face = np.where(far, np.inf, (np.where(far, d1, d[:, 1]) ** 2 - d1**2) / (2 * np.maximum(sep, 1e-6)))
    else:
        face = np.full(len(p), np.inf)
    coarse = _noise(rng, p, max(1.5 * lobule, 3 * h))
    fine = _noise(rng, p, 1.6 * h)
    radius = loc["radius"][i1] * (1.0 + LUMP * np.clip(coarse, -2, 2))  # loculi are lumpy, not spheres
    body = _ramp(radius - d1, h)
    wall_dist = np.minimum(face, radius - d1)  # to its own wall (septum or capsule)
    texture = np.exp(TEXTURE[0] * coarse + TEXTURE[1] * fine - 0.5 * (TEXTURE[0] ** 2 + TEXTURE[1] ** 2))
    kind, m = loc["kind"][i1], loc["density"][i1]
    wall = _ramp(loc["wall"][i1] - wall_dist, h)
    below = _ramp(p[:, 0] - loc["level"][i1], 0.5 * h)  # y (image row) below the fluid-calcium level
    depth = np.clip((p[:, 0] - loc["level"][i1]) / loc["radius"][i1], 0, 1)
    mu = np.select(
        [kind == 0, kind == 1, kind == 2],
        [
            texture * (1 - SEPTUM_DEPTH * np.exp(-((face / SEPTUM) ** 2))),
            WALL_DENSITY * wall * texture + loc["fluid"][i1] * (1 - wall),
            SEDIMENT_DENSITY * below * (0.8 + 0.4 * depth) * np.sqrt(texture)  # settled: more uniform
            + 0.5 * WALL_DENSITY * _ramp(0.4 * loc["wall"][i1] - wall_dist, h) * texture * (1 - below)
            + loc["fluid"][i1] * (1 - below),
        ],
        loc["empty"][i1] * texture,
    )
    vol = np.zeros(len(grid))
    vol[keep] = m * mu * body
    proj = vol.reshape(len(ys), len(xs), len(zs)).sum(axis=2) * hz
    out = np.zeros((n, n))
    y0, x0 = int(np.searchsorted(axis, ys[0])), int(np.searchsorted(axis, xs[0]))
    out[y0:y0 + len(ys), x0:x0 + len(xs)] = proj
    _satellites(rng, out, seeds, loc, axis)
    return out


def _satellites(rng: np.random.Generator, out: np.ndarray, seeds: np.ndarray, loc: dict, axis: np.ndarray
                ) -> None:
    """Add small calcified deposits just outside the capsule: exact projections of small balls."""
    reach = np.linalg.norm(seeds, axis=1) + loc["radius"]
    for _ in range(int(rng.poisson(SATELLITES))):
        j = int(np.argmax(reach * rng.uniform(0.6, 1.0, len(seeds))))  # beside an outer loculus
        direction = seeds[j] / max(float(np.linalg.norm(seeds[j])), 1e-6)
        r = rng.uniform(0.03, 0.08)
        c = seeds[j] + direction * (loc["radius"][j] + r + rng.uniform(0.02, 0.15)) + rng.normal(0, 0.05, 3)
        c[:2] *= min(1.0, (EXTENT - r) / max(float(np.hypot(c[0], c[1])), 1e-6))
        dist2 = (axis[:, None] - c[0]) ** 2 + (axis[None, :] - c[1]) ** 2
        out += rng.uniform(0.8, 1.6) * 2 * np.sqrt(np.maximum(r**2 - dist2, 0))


def render_mass_volume(rng: np.random.Generator, diameter_mm: float, spacing_mm: float, pattern: str = "cloud",
                       density: float = 1.0, lobule: float = 0.16) -> np.ndarray:
    """Square float32 patch (centred on the mass, zeros along its border) of added X-ray attenuation.

    Args:
        rng: the only source of randomness.
        diameter_mm: the mass's diameter.
        spacing_mm: mm per output pixel.
        pattern: "cloud", "cystic" or "sedimentation": the dominant content of the loculi.
        density: scales the whole patch (0.12 barely visible ... 1.6 dense).
        lobule: typical loculus radius / mass radius (0.08 many small ... 0.3 a few big).

    Returns:
        float32 P x P, P ~ 1.3 x diameter / spacing (more for tiny masses), in line-integral units
        of attenuation; at density 1 the densest ray is ``PEAK_20MM * (diameter / 20 mm) ** PEAK_EXPONENT``
        times 0.82-1.12 (0.037-0.050 per mm at 50 mm, 0.055-0.075 at 8 mm: small masses are denser per mm).
    """
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, not {pattern!r}")
    across = diameter_mm / spacing_mm
    size = max(int(round(FIELD * across)), int(np.ceil(across)) + 2 * BORDER_PX + 2)
    size += 1 - size % 2  # odd: the centre is a pixel
    half = size * spacing_mm / diameter_mm  # half the field, in mass radii
    n = int(np.clip(max(size, VOXELS_PER_DIAMETER * half), GRID_MIN, GRID_MAX))
    lobule = float(np.clip(lobule, 0.05, 0.45))
    caps = _capsule(rng)
    seeds = _seeds(rng, caps, lobule)
    loc = _loculi(rng, seeds, pattern, lobule)
    proj = _project(rng, seeds, loc, half, n, lobule).astype(np.float32)
    interp = cv2.INTER_LINEAR if size > n else cv2.INTER_AREA
    patch = cv2.resize(proj, (size, size), interpolation=interp)
    soft = SOFT_VOXELS * size / n
    if soft > 0.3:
        patch = cv2.GaussianBlur(patch, (0, 0), soft)
    patch[:BORDER_PX], patch[-BORDER_PX:], patch[:, :BORDER_PX], patch[:, -BORDER_PX:] = 0, 0, 0, 0
    patch = np.maximum(patch, 0)
    peak = float(patch.max())
    target = PEAK_20MM * (diameter_mm / 20.0) ** PEAK_EXPONENT * rng.uniform(*PEAK_SPREAD)
    scale = target / peak if peak > 0 else 0.0
    return (patch * np.float32(scale * density)).astype(np.float32)
