"""Calcinosis masses and the look-alikes a detector must not flag, as attenuation added to a film.

    patch = render_calcinosis(rng, diameter_mm=45, spacing_mm=0.15, pattern="cloud")
    lesions, distractors = insert_findings(rng, attenuation, anatomy, spacing_mm=0.15, n_lesions=1)

Used by ``calcidet synth`` (``data/synth.py``). Units are those of ``data.synth_anatomy``: the line
integral of attenuation, so a lesion adds to whatever soft tissue or bone lies in front of it.

A calcinosis mass is amorphous and multilobulated ("cloud-like"): many clustered, rounded lobules of
varying density with lucent gaps, each a sphere in projection (chord length 2*sqrt(r^2 - rho^2)).
``cystic`` loculi have a dense calcified rim and a lucent centre; ``sedimentation`` loculi hold dense
calcium layered under a flat, horizontal fluid-calcium level. Masses lie in periarticular soft tissue,
beside the bone, and may overlap its margin a little.

Hard negatives, recorded but never labelled: vascular calcification (interrupted tram-track lines along
an artery), calcific tendinitis (a small homogeneous dense oval at a tendon insertion), osteophytes
(spurs continuous with a joint margin), bone islands (dense ovals in medullary bone) and metal
(clips, skin staples, marker beads and rings: very dense, sharp-edged).
"""

from __future__ import annotations

import cv2
import numpy as np

from calcidet.data.synth_anatomy import MU_CORTEX, Anatomy, distance_mm

PATTERNS = ("cloud", "cystic", "sedimentation")
PATTERN_WEIGHTS = (0.55, 0.25, 0.2)
DISTRACTORS = ("vascular", "tendinitis", "osteophyte", "bone_island", "metal")
DISTRACTOR_RATES = {"vascular": 0.35, "tendinitis": 0.3, "osteophyte": 0.35, "bone_island": 0.2, "metal": 0.15}
MU_CALCIUM = 0.075  # per mm above soft tissue: dense calcium-phosphate paste, close to cortical bone
RENDER_MAX = 200  # lesions are drawn on at most this many px across, then resized to the film's scale


def _nodule(patch: np.ndarray, x: float, y: float, r: float, value: float, level: float | None = None,
            edge: float = 0.35, aspect: float = 1.0, angle: float = 0.0) -> None:
    """Add a rounded nodule (value at its centre); ``edge`` < 1 flattens its top and firms its margin.

    ``level``: keep only the rows below it (a sediment's flat, horizontal upper surface).
    """
    if r <= 0.3:
        return
    h, w = patch.shape
    reach = r * max(aspect, 1 / aspect)
    x0, x1, y0, y1 = max(int(x - reach) - 1, 0), min(int(x + reach) + 2, w), max(int(y - reach) - 1, 0), min(int(y + reach) + 2, h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx - x, yy - y
    u, v = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
    t = np.maximum(1.0 - (u / aspect) ** 2 / (r * r) - (v * aspect) ** 2 / (r * r), 0) ** edge
    if level is not None:
        t *= np.clip(yy - level + 0.5, 0, 1)
    patch[y0:y1, x0:x1] += value * t


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    grid = rng.random((max(2, int(h / cell) + 2), max(2, int(w / cell) + 2))).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def render_calcinosis(rng: np.random.Generator, diameter_mm: float, spacing_mm: float, pattern: str = "cloud",
                      density: float = 1.0, lobule: float = 0.16) -> np.ndarray:
    """Draw one calcinosis mass as a square float32 patch of added attenuation (0 around it).

    Args:
        rng: random generator for the mass's outline, lobules and texture.
        diameter_mm: overall size of the mass.
        spacing_mm: film pixel spacing; the patch is about ``1.3 * diameter_mm / spacing_mm`` px across.
        pattern: "cloud" (solid lobules), "cystic" (rimmed loculi) or "sedimentation" (fluid-calcium levels).
        density: 1 for a typical dense mass; 0.2-0.4 for a faint one.
        lobule: typical lobule radius as a share of the mass's radius (0.08: many small, 0.3: a few big).

    Returns:
        The patch, centred on the mass.
    """
    native = int(np.ceil(diameter_mm / spacing_mm * 1.3)) + 6
    k = min(1.0, RENDER_MAX / native)  # draw big masses coarser, then upsample: they are smooth anyway
    n = max(12, int(round(native * k)))
    mm = spacing_mm / k  # mm per drawing pixel
    radius, c = diameter_mm / mm / 2, n / 2
    harmonics = [(j, rng.uniform(0, 0.16), rng.uniform(0, 2 * np.pi)) for j in (2, 3, 4, 5)]
    norm = 1 + sum(a for _, a, _ in harmonics)

    def envelope(theta: np.ndarray | float) -> np.ndarray | float:  # a multilobulated outline
        return radius * (1 + sum(a * np.cos(j * theta + p) for j, a, p in harmonics)) / norm

    # Nodules tile the outline in 2D; "profile" is how much of the ray through the mass is calcium.
    profile = np.zeros((n, n), np.float32)
    loculi = {"cloud": 0, "cystic": int(rng.integers(2, 7)), "sedimentation": int(rng.integers(2, 6))}[pattern]
    area, covered = np.pi * radius**2 * rng.uniform(0.75, 1.1), 0.0
    placed: list[tuple[float, float, float]] = []
    while covered < area and len(placed) < 120:
        first = len(placed) < loculi
        r = radius * (rng.uniform(0.22, 0.42) if first else float(np.clip(rng.lognormal(np.log(lobule), 0.4),
                                                                      min(0.06, 0.4 * lobule), max(0.35, 2 * lobule))))
        r = max(r, 0.8 / mm)
        for _ in range(8):  # nodules pack side by side: lucent clefts between them, not a pile
            theta = rng.uniform(0, 2 * np.pi)
            rho = np.sqrt(rng.random()) * max(envelope(theta) - 0.8 * r, 0)
            x, y = c + rho * np.cos(theta), c + rho * np.sin(theta)
            clear = all(np.hypot(x - px, y - py) > 0.75 * (r + pr) for px, py, pr in placed)
            if clear:
                break
        value = rng.uniform(0.45, 1.0) * (1.0 if clear else 0.5)  # a nodule behind others: fainter
        if first:
            wall = r * rng.uniform(0.12, 0.25)
            _nodule(profile, x, y, r, 1.1)
            _nodule(profile, x, y, r - wall, -1.1 * rng.uniform(0.8, 0.95))  # lucent centre, dense rim
            if pattern == "sedimentation":  # dependent dense layer under a flat, sharp fluid-calcium level
                _nodule(profile, x, y, r - wall, rng.uniform(0.8, 1.1), y + rng.uniform(-0.15, 0.5) * (r - wall))
        else:  # soft-edged puffs that merge: the cloud
            _nodule(profile, x, y, r, value, edge=0.8, aspect=rng.uniform(0.75, 1.3), angle=rng.uniform(0, np.pi))
        placed.append((x, y, r))
        covered += np.pi * r * r
    for _ in range(int(rng.integers(5, 25))):  # fine granules around the edge: an amorphous margin
        theta = rng.uniform(0, 2 * np.pi)
        rho = envelope(theta) * rng.uniform(0.75, 1.05)
        _nodule(profile, c + rho * np.cos(theta), c + rho * np.sin(theta), rng.uniform(0.5, 1.5) / mm, rng.uniform(0.3, 0.8))
    profile = 1.6 * (1 - np.exp(-np.maximum(profile, 0) / 1.6))  # overlaps thicken, they do not pile up
    profile *= 0.8 + 0.4 * _smooth_noise(rng, n, n, max(3.0, 2.5 / mm))  # chalky, uneven density
    # Depth of the mass along the ray: a big mass is thick, so it is dense as well as wide.
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) - c
    reach = 1.1 * envelope(np.arctan2(yy, xx))
    depth = np.maximum(2 * np.sqrt(np.maximum(reach**2 - xx**2 - yy**2, 0)), 0.7 * radius) * mm
    packing = rng.uniform(0.45, 0.65) * float(np.clip(40 / diameter_mm, 1.0, 1.6))  # small masses: compact
    patch = MU_CALCIUM * density * packing * depth * profile
    patch = cv2.GaussianBlur(patch.astype(np.float32), (0, 0), 0.6)
    if k < 1.0:
        patch = cv2.resize(patch, (native, native), interpolation=cv2.INTER_LINEAR)
    return np.maximum(patch, 0)


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


def _draw(shape_px: float, draw, blur: float = 0.6) -> tuple[np.ndarray, int]:
    """Run ``draw(canvas, offset)`` on a blank 8-bit canvas big enough for a shape ``shape_px`` across."""
    half = int(shape_px) + 6
    canvas = np.zeros((2 * half, 2 * half), np.uint8)
    draw(canvas, half)
    out = canvas.astype(np.float32) / 255
    return (cv2.GaussianBlur(out, (0, 0), blur) if blur else out), half


def _pts(points: np.ndarray) -> list[np.ndarray]:
    return [np.round(np.asarray(points) * 4).astype(np.int32)]  # 2 bits of sub-pixel precision


def render_vascular(att: np.ndarray, rng: np.random.Generator, path: np.ndarray, spacing: float,
                    body: np.ndarray | None = None) -> list[float] | None:
    """Tram-track calcification: two thin, interrupted parallel lines along a curving artery.

    ``body``: optional mask (any resolution, same field of view): no plaque is drawn outside it.
    """
    step = 1.0 / spacing  # resample the course every millimetre
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    dist = np.concatenate([[0], np.cumsum(seg)])
    if dist[-1] < 20 * step:
        return None
    length = min(dist[-1], rng.uniform(40, 160) * step)
    start = rng.uniform(0, dist[-1] - length)
    s = np.arange(start, start + length, step)
    pts = np.stack([np.interp(s, dist, path[:, 0]), np.interp(s, dist, path[:, 1])], 1)
    pts += np.cumsum(rng.normal(0, 0.15 * step, pts.shape), 0) * np.linspace(0, 1, len(pts))[:, None]  # wander
    tangent = np.gradient(pts, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) / (np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9)
    half = rng.uniform(1.5, 3.5) / spacing  # lumen radius
    on, i = np.zeros(len(pts), bool), 0
    while i < len(pts):  # plaques come and go along the wall
        run = int(rng.uniform(3, 25))
        on[i:i + run] = rng.random() < 0.75
        i += run + int(rng.uniform(1, 6))
    if body is not None:
        f = body.shape[1] / att.shape[1]
        ix = np.clip((pts * f).astype(int), 0, [body.shape[1] - 1, body.shape[0] - 1])
        on &= body[ix[:, 1], ix[:, 0]]
    if on.sum() < 5:
        return None
    lo = pts.min(0) - half - 8
    canvas = np.zeros((int(np.ptp(pts[:, 1]) + 2 * half + 16), int(np.ptp(pts[:, 0]) + 2 * half + 16)), np.float32)
    thick = max(1, int(round(rng.uniform(0.4, 0.9) / spacing)))
    for side in (-1, 1):
        wall = pts + side * half * normal - lo
        layer = np.zeros(canvas.shape, np.uint8)
        for run in np.split(np.arange(len(pts)), np.flatnonzero(np.diff(on.astype(int))) + 1):
            if on[run[0]] and len(run) > 1:
                cv2.polylines(layer, _pts(wall[run]), False, 255, thick, cv2.LINE_AA, 2)
        canvas += layer.astype(np.float32) / 255 * rng.uniform(0.6, 1.0)
    local = cv2.GaussianBlur(canvas, (0, 0), 0.6) * rng.uniform(0.15, 0.4)
    return stamp(att, local, int(lo[0]), int(lo[1]), 0.2)


def render_tendinitis(att: np.ndarray, rng: np.random.Generator, site: tuple, spacing: float) -> list[float] | None:
    """A small (3-8 mm) homogeneous dense oval deposit at a tendon insertion, just off the bone."""
    x, y, dx, dy = site
    size = rng.uniform(3, 8)
    cx, cy = x + dx * rng.uniform(1, 5) / spacing, y + dy * rng.uniform(1, 5) / spacing
    a, b = size / spacing / 2, size / spacing / 2 * rng.uniform(0.4, 0.8)
    ang = np.degrees(np.arctan2(dy, dx)) + 90 + rng.uniform(-40, 40)
    local, half = _draw(a, lambda cnv, o: cv2.ellipse(cnv, ((o, o), (2 * a, 2 * b), ang), 255, -1, cv2.LINE_AA), 0.8)
    local = np.sqrt(local) * MU_CALCIUM * size * rng.uniform(1.0, 1.6)  # near-flat profile: homogeneous
    return stamp(att, local, int(cx) - half, int(cy) - half)


def render_osteophyte(att: np.ndarray, rng: np.random.Generator, site: tuple, spacing: float) -> list[float] | None:
    """A bony spur (lip or beak) growing out of a joint margin: a cortical rim around a paler core, its
    broad base buried in the bone's cortex so that it is continuous with it."""
    x, y, dx, dy = site
    d, n = np.array([dx, dy]), np.array([-dy, dx])
    length = rng.uniform(2.5, 8) / spacing
    width = length * rng.uniform(0.6, 1.1)
    bend = rng.choice([-1, 1]) * rng.uniform(0.1, 0.6) * length  # lips curl along the joint margin
    base = 2.0 / spacing
    ctrl = np.array([-base * d - n * width * 0.8, 0.3 * length * d - n * width * 0.45,
                     0.75 * length * d - n * width * 0.15 + 0.5 * bend * n, length * d + bend * n,
                     0.7 * length * d + n * width * 0.2 + 0.4 * bend * n, 0.2 * length * d + n * width * 0.5,
                     -base * d + n * width * 0.8])
    for _ in range(2):  # round the outline: bone has no straight facets
        a, b = ctrl[:-1], ctrl[1:]
        ctrl = np.vstack([ctrl[:1], np.stack([0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b], 1).reshape(-1, 2), ctrl[-1:]])
    rim = max(1, int(round(0.8 / spacing)))

    def draw(cnv: np.ndarray, o: int) -> None:
        cv2.fillPoly(cnv, _pts(ctrl + o), 190, cv2.LINE_AA, 2)
        cv2.polylines(cnv, _pts(ctrl[1:-1] + o), False, 255, rim, cv2.LINE_AA, 2)  # cortex, open at the base

    local, half = _draw(length + width + base, draw)
    local *= MU_CORTEX * rng.uniform(5, 9)
    return stamp(att, local, int(x) - half, int(y) - half, 0.3)


def render_bone_island(att: np.ndarray, rng: np.random.Generator, centre: tuple[float, float],
                       spacing: float) -> list[float] | None:
    """An enostosis: a dense oval in medullary bone with short radiating spicules (brush border)."""
    size = rng.uniform(4, 14) / spacing
    a, b, ang = size / 2, size / 2 * rng.uniform(0.55, 1.0), rng.uniform(0, 180)

    def draw(cnv: np.ndarray, o: int) -> None:
        cv2.ellipse(cnv, ((o, o), (2 * a, 2 * b), ang), 255, -1, cv2.LINE_AA)
        for t in rng.uniform(0, 2 * np.pi, int(rng.integers(3, 9))):
            r0 = min(a, b) * 0.9
            r1 = r0 + rng.uniform(0.6, 1.8) / spacing
            p = np.array([[o + r0 * np.cos(t), o + r0 * np.sin(t)], [o + r1 * np.cos(t), o + r1 * np.sin(t)]])
            cv2.polylines(cnv, _pts(p), False, 255, max(1, int(0.4 / spacing)), cv2.LINE_AA, 2)

    local, half = _draw(a + 3 / spacing, draw, 0.8)
    local *= MU_CORTEX * size * spacing * rng.uniform(0.5, 0.8)
    return stamp(att, local, int(centre[0]) - half, int(centre[1]) - half)


def render_metal(att: np.ndarray, rng: np.random.Generator, centre: tuple[float, float],
                 spacing: float) -> list[float] | None:
    """A surgical clip, a skin staple, a marker bead or ring: very dense with sharp edges."""
    kind = int(rng.integers(4))
    size = rng.uniform(5, 10) / spacing
    thick = max(1, int(round(rng.uniform(0.6, 1.0) / spacing)))
    rot = rng.uniform(0, 2 * np.pi)
    turn = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    shapes = {0: np.array([[-0.1, 0.5], [-0.05, -0.5], [0.05, -0.5], [0.1, 0.5]]),  # clip: two joined legs
              1: np.array([[-0.5, 0.25], [-0.5, -0.2], [0.5, -0.2], [0.5, 0.25]])}  # staple: squared U

    def draw(cnv: np.ndarray, o: int) -> None:
        if kind in shapes:
            cv2.polylines(cnv, _pts(shapes[kind] @ turn.T * size + o), False, 255, thick, cv2.LINE_AA, 2)
        elif kind == 2:  # marker bead
            cv2.circle(cnv, (o, o), max(1, int(size * 0.2)), 255, -1, cv2.LINE_AA)
        else:  # ring marker
            cv2.circle(cnv, (o, o), max(2, int(size * 0.5)), 255, thick, cv2.LINE_AA)

    local, half = _draw(size, draw, 0.4)
    local *= rng.uniform(2.5, 5.0)
    return stamp(att, local, int(centre[0]) - half, int(centre[1]) - half, 0.3)


def _snap(bone: np.ndarray, site: tuple, reach: float) -> tuple[float, float, float, float] | None:
    """Move a margin ``site`` (x, y, dx, dy; working px) along its direction onto the bone's edge."""
    x, y, dx, dy = site
    t = np.arange(-reach, reach, 0.5)
    xs = np.clip(np.round(x + t * dx).astype(int), 0, bone.shape[1] - 1)
    ys = np.clip(np.round(y + t * dy).astype(int), 0, bone.shape[0] - 1)
    inside = bone[ys, xs]
    edges = np.flatnonzero(inside[:-1] & ~inside[1:])  # leaving the bone, going outwards
    if len(edges) == 0:
        return None
    e = edges[np.argmin(np.abs(t[edges]))]
    return float(x + t[e] * dx), float(y + t[e] * dy), dx, dy


def _pick(rng: np.random.Generator, ok: np.ndarray, weight: np.ndarray | None = None) -> tuple[float, float] | None:
    ys, xs = np.nonzero(ok)
    if len(xs) == 0:
        return None
    p = weight[ys, xs].astype(np.float64) if weight is not None else np.ones(len(xs))
    k = rng.choice(len(xs), p=p / p.sum())
    return float(xs[k] + rng.random()), float(ys[k] + rng.random())


def insert_findings(rng: np.random.Generator, att: np.ndarray, anatomy: Anatomy, spacing: float, n_lesions: int,
                    field: np.ndarray | None = None) -> tuple[list[dict], list[dict]]:
    """Place calcinosis masses and look-alikes on a film's attenuation map (in place).

    Args:
        rng: random generator.
        att: float32 attenuation at film resolution; lesions are added to it.
        anatomy: the film's masks and sites at working resolution (``Anatomy.spacing`` mm per px).
        spacing: mm per film pixel.
        n_lesions: masses to place (fewer if the film has no room for them).
        field: bool mask (working resolution) of the exposed field; findings stay inside it.

    Returns:
        ``lesions`` (``bbox`` in COCO xywh film pixels, ``pattern``, ``diameter_mm``) and
        ``distractors`` (``kind``, ``bbox``), never labelled.
    """
    ws, scale = anatomy.spacing, anatomy.spacing / spacing
    h, w = anatomy.body.shape
    field = np.ones((h, w), bool) if field is None else field
    to_bone, to_skin = distance_mm(~anatomy.bone, ws), distance_mm(anatomy.body, ws)
    to_edge = distance_mm(np.pad(field, 1), ws)[1:-1, 1:-1]  # the film's edge counts here
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    weight = None
    if anatomy.centre is not None:  # periarticular: most masses sit within a few cm of the joint
        weight = np.exp(-0.5 * (np.hypot(xx - anatomy.centre[0], yy - anatomy.centre[1]) * ws / 45) ** 2) + 0.02
    soft = anatomy.body & ~anatomy.bone & field & (True if anatomy.keepout is None else ~anatomy.keepout)
    busy = np.zeros((h, w), bool)
    lesions: list[dict] = []
    typical = {"hand": 24.0, "foot": 28.0, "elbow": 36.0}.get(anatomy.joint, 44.0)  # mm; masses fit the limb
    if anatomy.centre is None:  # a real film: size masses to the limb, keep them near the skin (not in a chest)
        typical = float(np.clip(0.8 * np.percentile(to_skin[anatomy.body], 99), 20, 44)) if anatomy.body.any() else 30.0
        soft &= to_skin <= 60
    for _ in range(n_lesions):
        diameter = float(np.clip(rng.lognormal(np.log(typical), 0.42), 15, 120))
        for attempt in range(6):  # beside the bone if there is room; else smaller; else bulging more
            r, snug = diameter / 2, 1.0 if attempt < 4 else 0.5
            ok = soft & ~busy & (to_bone >= 0.55 * snug * r) & (to_bone <= r + 25) & (to_skin >= 0.45 * snug * r)
            ok &= to_edge >= 0.7 * r
            if ok.any():
                break
            diameter = max(15.0, diameter * 0.75)
        centre = _pick(rng, ok, weight)
        if centre is None:
            continue
        faint = rng.random() < 0.15  # a minority are faint: early, or thin along the ray
        pattern = str(rng.choice(PATTERNS, p=PATTERN_WEIGHTS))
        patch = render_calcinosis(rng, diameter, spacing, pattern, rng.uniform(0.35, 0.55) if faint else rng.uniform(0.8, 1.4))
        x0, y0 = int(centre[0] * scale) - patch.shape[1] // 2, int(centre[1] * scale) - patch.shape[0] // 2
        box = stamp(att, patch, x0, y0, 0.12)
        if box is None:
            continue
        busy |= np.hypot(xx - centre[0], yy - centre[1]) * ws < r * 1.1 + 8
        lesions.append({"bbox": box, "pattern": pattern, "diameter_mm": round(diameter, 1)})

    distractors: list[dict] = []
    clear = field & ~busy
    for kind in DISTRACTORS:
        for _ in range(int(rng.random() < DISTRACTOR_RATES[kind]) + int(rng.random() < DISTRACTOR_RATES[kind] / 3)):
            box = None
            if kind == "vascular" and anatomy.vessels:
                path = anatomy.vessels[int(rng.integers(len(anatomy.vessels)))] + rng.normal(0, 4 / ws, 2)
                box = render_vascular(att, rng, path * scale, spacing, anatomy.body)
            elif kind in ("tendinitis", "osteophyte"):
                sites = anatomy.insertions if kind == "tendinitis" else anatomy.margins
                site = _snap(anatomy.bone, sites[int(rng.integers(len(sites)))], 15 / ws) if sites else None
                if site and clear[min(int(site[1]), h - 1), min(int(site[0]), w - 1)]:
                    full = (site[0] * scale, site[1] * scale, site[2], site[3])
                    box = (render_tendinitis if kind == "tendinitis" else render_osteophyte)(att, rng, full, spacing)
            else:
                where = (anatomy.medulla if kind == "bone_island" else anatomy.body) & clear & (to_edge > 10)
                spot = _pick(rng, where)
                if spot:
                    render = render_bone_island if kind == "bone_island" else render_metal
                    box = render(att, rng, (spot[0] * scale, spot[1] * scale), spacing)
            if box:
                distractors.append({"kind": kind, "bbox": box})
    return lesions, distractors
