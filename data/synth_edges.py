"""Collimator and imaging-plate edges drawn onto a real film: straight hard negatives.

    from calcidet.data.synth_edges import add_edges
    film, changed = add_edges(rng, film, keep=[[x, y, w, h]])

Used by ``calcidet synth --backgrounds ... --edges SHARE`` (``data/synth.py``), after the masses are in.
On the held-out real films a third of the top false positives on no inserted look-alike sat at such an
edge, which the vendored training films seldom show: a plate's border scanned as a thin bright band
with black beyond it, an electronic shutter (black, sharp), an unexposed margin (near white, a blurred
penumbra) and the bright bar between two exposures on one plate. Each is drawn in the display domain,
as the film's processing leaves it, slightly tilted, and never over a mass: the changed pixels keep
clear of every ``keep`` box by ``CLEARANCE`` of its size, so an edge is always a negative.
"""

from __future__ import annotations

import numpy as np

STYLES, STYLE_WEIGHTS = ("rimmed_shutter", "shutter", "unexposed", "split"), (0.4, 0.2, 0.2, 0.2)
EDGE_COUNTS, EDGE_COUNT_WEIGHTS = (1, 2), (0.7, 0.3)
MARGIN = (0.015, 0.2)  # of the film's side: how far in from the border an edge lies
TILT_DEG = 2.5  # at most; most edges are square to the film (``SQUARE_SHARE`` within 0.3 degrees)
SQUARE_SHARE = 0.6
RIM = (0.002, 0.008)  # of the film's long side: a bright band or bar, 1.5-6 px at the demo's 768 px
RIM_MIN_PX = 2.0
CLEARANCE = 0.5  # of a kept box's larger side (and at least ``CLEARANCE_PX``): no pixel changes nearer
CLEARANCE_PX = 6
TRIES = 8  # margins tried per edge before it is left out


def _box_clear(changed: np.ndarray, keep: list[list[float]]) -> bool:
    """Whether no changed pixel lies within the clearance of a kept box (COCO xywh)."""
    h, w = changed.shape
    for x, y, bw, bh in keep:
        pad = max(CLEARANCE * max(bw, bh), CLEARANCE_PX)
        x0, y0 = max(int(x - pad), 0), max(int(y - pad), 0)
        x1, y1 = min(int(np.ceil(x + bw + pad)), w), min(int(np.ceil(y + bh + pad)), h)
        if x1 > x0 and y1 > y0 and changed[y0:y1, x0:x1].any():
            return False
    return True


def _signed_distance(rng: np.random.Generator, shape: tuple[int, int], side: int, at: float) -> np.ndarray:
    """Distance (px) from a straight line ``at`` px in from border ``side`` (0 top, 1 right, 2 bottom, 3 left),
    positive on the film's side of it; the line is tilted a little about its middle."""
    h, w = shape
    tilt = np.radians(rng.uniform(-0.3, 0.3) if rng.random() < SQUARE_SHARE else rng.uniform(-TILT_DEG, TILT_DEG))
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    if side in (0, 2):
        across = ys if side == 0 else (h - 1) - ys
        return (across - at) - np.float32(np.tan(tilt)) * (xs - w / 2)
    across = xs if side == 3 else (w - 1) - xs
    return (across - at) - np.float32(np.tan(tilt)) * (ys - h / 2)


def _ramp(d: np.ndarray, sigma: float) -> np.ndarray:
    """How much of the far side's fill a pixel gets: 1 beyond the line (d < 0), 0 inside, soft over ~sigma."""
    return 0.5 * (1 - np.tanh(d / (1.2 * max(sigma, 0.3))))


def _band(d: np.ndarray, lo: float, hi: float, sigma: float) -> np.ndarray:
    """A straight band between distances ``lo`` and ``hi`` (px), with soft sides."""
    return _ramp(d - hi, sigma) * (1 - _ramp(d - lo, sigma))


def _grain(rng: np.random.Generator, shape: tuple[int, int], level: float, std: float) -> np.ndarray:
    """A flat fill with the coarse grain of a scanned plate (2 x 2 px blocks)."""
    h, w = shape
    g = rng.normal(level, std, ((h + 1) // 2, (w + 1) // 2)).astype(np.float32)
    return np.repeat(np.repeat(g, 2, 0), 2, 1)[:h, :w]


def _draw_edge(rng: np.random.Generator, film: np.ndarray, style: str) -> tuple[np.ndarray, np.ndarray]:
    """One edge of ``style`` drawn over a copy of ``film``; also the weight of the change at each pixel."""
    h, w = film.shape
    side = int(rng.integers(4))
    length = h if side in (0, 2) else w
    rim = max(RIM_MIN_PX, rng.uniform(*RIM) * max(h, w))
    sharp = rng.uniform(0.4, 1.2)
    soft = min(sharp, rim / 3)  # a thin band keeps its peak
    if style == "split":  # the bar between two exposures on one plate, black on one side of it
        d = _signed_distance(rng, film.shape, side, rng.uniform(0.3, 0.7) * length)
        gap = rng.uniform(0, 0.03) * length if rng.random() < 0.6 else 0.0
        dark = _band(d, -gap, 0, sharp) if gap >= 1 else np.zeros_like(d)
        bar = _band(d, -gap - rim, -gap, soft)
        out = film * (1 - dark) + dark * _grain(rng, film.shape, rng.uniform(0, 0.06), rng.uniform(0.003, 0.015))
        out = out * (1 - bar) + bar * rng.uniform(0.55, 1.0)
        return out, np.maximum(dark, bar)
    d = _signed_distance(rng, film.shape, side, rng.uniform(*MARGIN) * length)
    if style == "unexposed":  # near white beyond a penumbra of a few px
        beyond = _ramp(d, rng.uniform(1.0, 5.0))
        fill = _grain(rng, film.shape, rng.uniform(0.75, 0.97), rng.uniform(0.003, 0.012))
        return film * (1 - beyond) + beyond * fill, beyond
    beyond = _ramp(d, sharp)
    out = film * (1 - beyond) + beyond * _grain(rng, film.shape, rng.uniform(0, 0.06), rng.uniform(0.003, 0.015))
    if style == "rimmed_shutter":  # the plate's border: a thin bright band just beyond the exposed field
        band = _band(d, -rim, 0, soft)
        out = out * (1 - band) + band * rng.uniform(0.5, 1.0)
    return out, beyond


def add_edges(rng: np.random.Generator, film: np.ndarray, keep: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Draw one or two straight edges onto a film, each clear of every box in ``keep``.

    Args:
        rng: random generator.
        film: float32 H x W display values in 0..1, bone bright.
        keep: COCO ``[x, y, w, h]`` boxes (the masses) that no edge may touch.

    Returns:
        ``(film, changed)``: a new film (0..1), and where it differs from the input by more than a
        trace (bool H x W); an edge that found no clear margin in ``TRIES`` draws is left out.
    """
    out = film.astype(np.float32, copy=True)
    changed = np.zeros(film.shape, bool)
    for _ in range(int(rng.choice(EDGE_COUNTS, p=EDGE_COUNT_WEIGHTS))):
        style = str(rng.choice(STYLES, p=STYLE_WEIGHTS))
        for _ in range(TRIES):
            drawn, weight = _draw_edge(rng, out, style)
            mask = weight > 0.01
            if _box_clear(mask, keep):
                out, changed = np.where(mask, drawn, out), changed | mask  # tails under 1 % leave pixels as they were
                break
    return np.clip(out, 0, 1, out=out), changed
