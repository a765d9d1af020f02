"""Calcinosis masses, and where they and their look-alikes go on a film, as attenuation added to it.

    patch = render_calcinosis(rng, diameter_mm=45, spacing_mm=0.15, pattern="cloud")
    lesions, distractors = insert_findings(rng, attenuation, anatomy, spacing_mm=0.15, n_lesions=1)

Used by ``calcidet synth`` (``data/synth.py``). Units are those of ``data.synth_anatomy``: the line
integral of attenuation, so a lesion adds to whatever soft tissue or bone lies in front of it. The
knobs (sizes, densities, counts, rates) are ``FindingPriors`` in ``data/synth_lesion_priors.py``.

A calcinosis mass is amorphous and multilobulated ("cloud-like"): many clustered, rounded lobules of
varying density with lucent gaps, each a sphere in projection (chord length 2*sqrt(r^2 - rho^2)).
``cystic`` loculi have a dense calcified rim and a lucent centre; ``sedimentation`` loculi hold dense
calcium layered under a flat, horizontal fluid-calcium level. Masses lie in periarticular soft tissue,
beside the bone, and may overlap its margin a little. Look-alikes (``data/synth_lookalikes.py``) are
recorded but never labelled.
"""

from __future__ import annotations

import cv2
import numpy as np

from calcidet.data.synth_anatomy import Anatomy
from calcidet.data.synth_lesion_priors import FINDINGS, LESION, FindingPriors, LesionPriors
from calcidet.data.synth_lookalikes import (
    render_bone_island,
    render_metal,
    render_osteophyte,
    render_tendinitis,
    render_vascular,
)
from calcidet.data.synth_priors import TISSUE
from calcidet.data.synth_render import distance_mm, stamp

__all__ = ["DISTRACTORS", "PATTERNS", "PATTERN_WEIGHTS", "insert_findings", "render_calcinosis", "stamp"]

PATTERNS = ("cloud", "cystic", "sedimentation")
PATTERN_WEIGHTS = (0.55, 0.25, 0.2)  # most masses are solid clouds; rims and fluid levels are the rest
DISTRACTORS = ("vascular", "tendinitis", "osteophyte", "bone_island", "metal")


def _nodule(patch: np.ndarray, x: float, y: float, r: float, value: float, level: float | None = None,
            edge: float = 0.35, aspect: float = 1.0, angle: float = 0.0) -> None:
    """Add a rounded nodule (value at its centre); ``edge`` < 1 flattens its top and firms its margin.

    ``level``: keep only the rows below it (a sediment's flat, horizontal upper surface).
    """
    if r <= 0.3:
        return
    h, w = patch.shape
    reach = r * max(aspect, 1 / aspect)
    x0, x1 = max(int(x - reach) - 1, 0), min(int(x + reach) + 2, w)
    y0, y1 = max(int(y - reach) - 1, 0), min(int(y + reach) + 2, h)
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
                      density: float = 1.0, lobule: float = 0.16, priors: LesionPriors = LESION) -> np.ndarray:
    """Draw one calcinosis mass as a square float32 patch of added attenuation (0 around it).

    Args:
        rng: random generator for the mass's outline, lobules and texture.
        diameter_mm: overall size of the mass.
        spacing_mm: film pixel spacing; the patch is about ``1.3 * diameter_mm / spacing_mm`` px across.
        pattern: "cloud" (solid lobules), "cystic" (rimmed loculi) or "sedimentation" (fluid-calcium levels).
        density: 1 for a typical dense mass; 0.2-0.4 for a faint one.
        lobule: typical lobule radius as a share of the mass's radius (0.08: many small, 0.3: a few big).
        priors: outline, lobule, loculus and texture knobs.

    Returns:
        The patch, centred on the mass.
    """
    native = int(np.ceil(diameter_mm / spacing_mm * priors.oversize)) + 6
    k = min(1.0, priors.render_max_px / native)  # draw big masses coarser, then upsample: they are smooth anyway
    n = max(12, int(round(native * k)))
    mm = spacing_mm / k  # mm per drawing pixel
    radius, c = diameter_mm / mm / 2, n / 2
    harmonics = [(j, rng.uniform(*priors.outline_amplitude), rng.uniform(0, 2 * np.pi))
                 for j in priors.outline_harmonics]
    norm = 1 + sum(amp for _, amp, _ in harmonics)

    def envelope(theta: np.ndarray | float) -> np.ndarray | float:  # a multilobulated outline
        return radius * (1 + sum(amp * np.cos(j * theta + phase) for j, amp, phase in harmonics)) / norm

    # Nodules tile the outline in 2D; "profile" is how much of the ray through the mass is calcium.
    profile = np.zeros((n, n), np.float32)
    loculi = {"cloud": 0, "cystic": int(rng.integers(*priors.cystic_loculi)),
              "sedimentation": int(rng.integers(*priors.sedimentation_loculi))}[pattern]
    area, covered = np.pi * radius**2 * rng.uniform(*priors.coverage), 0.0
    placed: list[tuple[float, float, float]] = []
    low = min(priors.lobule_clip[0], priors.lobule_clip_of_typical[0] * lobule)
    high = max(priors.lobule_clip[1], priors.lobule_clip_of_typical[1] * lobule)
    while covered < area and len(placed) < priors.max_nodules:
        first = len(placed) < loculi
        r = radius * (rng.uniform(*priors.loculus_radius) if first
                      else float(np.clip(rng.lognormal(np.log(lobule), priors.lobule_log_sd), low, high)))
        r = max(r, priors.min_nodule_mm / mm)
        for _ in range(priors.placement_tries):  # nodules pack side by side: lucent clefts between them, not a pile
            theta = rng.uniform(0, 2 * np.pi)
            rho = np.sqrt(rng.random()) * max(envelope(theta) - 0.8 * r, 0)
            x, y = c + rho * np.cos(theta), c + rho * np.sin(theta)
            clear = all(np.hypot(x - px, y - py) > priors.packing_gap * (r + pr) for px, py, pr in placed)
            if clear:
                break
        value = rng.uniform(*priors.nodule_density) * (1.0 if clear else priors.hidden_density)
        if first:
            wall = r * rng.uniform(*priors.wall_thickness)
            _nodule(profile, x, y, r, priors.rim_density)
            lucent = -priors.rim_density * rng.uniform(*priors.lucency)
            _nodule(profile, x, y, r - wall, lucent)  # lucent centre, dense rim
            if pattern == "sedimentation":  # dependent dense layer under a flat, sharp fluid-calcium level
                _nodule(profile, x, y, r - wall, rng.uniform(*priors.sediment_density),
                        y + rng.uniform(*priors.sediment_level) * (r - wall))
        else:  # soft-edged puffs that merge: the cloud
            _nodule(profile, x, y, r, value, edge=priors.cloud_edge, aspect=rng.uniform(*priors.cloud_aspect),
                    angle=rng.uniform(0, np.pi))
        placed.append((x, y, r))
        covered += np.pi * r * r
    for _ in range(int(rng.integers(*priors.granules))):  # fine granules around the edge: an amorphous margin
        theta = rng.uniform(0, 2 * np.pi)
        rho = envelope(theta) * rng.uniform(*priors.granule_reach)
        _nodule(profile, c + rho * np.cos(theta), c + rho * np.sin(theta),
                rng.uniform(*priors.granule_radius_mm) / mm, rng.uniform(*priors.granule_density))
    cap = priors.saturation
    profile = cap * (1 - np.exp(-np.maximum(profile, 0) / cap))  # overlaps thicken, they do not pile up
    chalk = _smooth_noise(rng, n, n, max(priors.chalk_min_cell_px, priors.chalk_cell_mm / mm))
    profile *= priors.chalk_base + priors.chalk_gain * chalk
    # Depth of the mass along the ray: a big mass is thick, so it is dense as well as wide.
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) - c
    reach = priors.thickness_reach * envelope(np.arctan2(yy, xx))
    depth = np.maximum(2 * np.sqrt(np.maximum(reach**2 - xx**2 - yy**2, 0)), priors.min_thickness * radius) * mm
    # Small masses are compact: packed up to max_compaction x denser.
    compaction = float(np.clip(priors.compact_below_mm / diameter_mm, 1.0, priors.max_compaction))
    packing = rng.uniform(*priors.packing) * compaction
    patch = TISSUE.calcium_per_mm * density * packing * depth * profile
    patch = cv2.GaussianBlur(patch.astype(np.float32), (0, 0), priors.blur_px)
    if k < 1.0:
        patch = cv2.resize(patch, (native, native), interpolation=cv2.INTER_LINEAR)
    return np.maximum(patch, 0)


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
    """A random point (working px) inside ``ok``, optionally weighted."""
    ys, xs = np.nonzero(ok)
    if len(xs) == 0:
        return None
    chance = weight[ys, xs].astype(np.float64) if weight is not None else np.ones(len(xs))
    k = rng.choice(len(xs), p=chance / chance.sum())
    return float(xs[k] + rng.random()), float(ys[k] + rng.random())


def insert_findings(rng: np.random.Generator, att: np.ndarray, anatomy: Anatomy, spacing: float, n_lesions: int,
                    field: np.ndarray | None = None, priors: FindingPriors = FINDINGS) -> tuple[list[dict], list[dict]]:
    """Place calcinosis masses and look-alikes on a film's attenuation map (in place).

    Args:
        rng: random generator.
        att: float32 attenuation at film resolution; lesions are added to it.
        anatomy: the film's masks and sites at working resolution (``Anatomy.spacing`` mm per px).
        spacing: mm per film pixel.
        n_lesions: masses to place (fewer if the film has no room for them).
        field: bool mask (working resolution) of the exposed field; findings stay inside it.
        priors: masses, their placement and the look-alikes (``data.synth_lesion_priors``).

    Returns:
        ``lesions`` (``bbox`` in COCO xywh film pixels, ``pattern``, ``diameter_mm``) and
        ``distractors`` (``kind``, ``bbox``), never labelled.
    """
    place = priors.placement
    ws, scale = anatomy.spacing, anatomy.spacing / spacing
    h, w = anatomy.body.shape
    field = np.ones((h, w), bool) if field is None else field
    to_bone, to_skin = distance_mm(~anatomy.bone, ws), distance_mm(anatomy.body, ws)
    to_edge = distance_mm(np.pad(field, 1), ws)[1:-1, 1:-1]  # the film's edge counts here
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    weight = None
    if anatomy.centre is not None:  # periarticular: most masses sit within a few cm of the joint
        from_joint = np.hypot(xx - anatomy.centre[0], yy - anatomy.centre[1]) * ws
        weight = np.exp(-0.5 * (from_joint / place.periarticular_sd_mm) ** 2) + place.far_weight
    soft = anatomy.body & ~anatomy.bone & field & (True if anatomy.keepout is None else ~anatomy.keepout)
    busy = np.zeros((h, w), bool)
    lesions: list[dict] = []
    typical = dict(place.typical_diameter_mm).get(anatomy.joint, place.other_diameter_mm)  # masses fit the limb
    if anatomy.centre is None:  # a real film: size masses to the limb, keep them near the skin (not in a chest)
        typical = place.real_fallback_mm
        if anatomy.body.any():
            limb = place.real_limb_fraction * np.percentile(to_skin[anatomy.body], 99)
            typical = float(np.clip(limb, *place.real_diameter_mm))
        soft &= to_skin <= place.real_skin_depth_mm
    smallest = place.diameter_mm[0]
    for _ in range(n_lesions):
        diameter = float(np.clip(rng.lognormal(np.log(typical), place.diameter_log_sd), *place.diameter_mm))
        for attempt in range(place.fit_tries):  # beside the bone if there is room; else smaller; else bulging more
            r, snug = diameter / 2, 1.0 if attempt < place.snug_tries else place.bulge
            ok = soft & ~busy & (to_bone >= place.bone_gap * snug * r) & (to_bone <= r + place.bone_reach_mm)
            ok &= to_skin >= place.skin_gap * snug * r
            ok &= to_edge >= place.edge_gap * r
            if ok.any():
                break
            diameter = max(smallest, diameter * place.shrink)
        centre = _pick(rng, ok, weight)
        if centre is None:
            continue
        faint = rng.random() < place.faint_rate
        pattern = str(rng.choice(PATTERNS, p=PATTERN_WEIGHTS))
        density = rng.uniform(*place.faint_density) if faint else rng.uniform(*place.density)
        patch = render_calcinosis(rng, diameter, spacing, pattern, density, priors=priors.lesion)
        x0, y0 = int(centre[0] * scale) - patch.shape[1] // 2, int(centre[1] * scale) - patch.shape[0] // 2
        box = stamp(att, patch, x0, y0, place.box_fraction)
        if box is None:
            continue
        busy |= np.hypot(xx - centre[0], yy - centre[1]) * ws < r * place.clearance + place.clearance_mm
        lesions.append({"bbox": box, "pattern": pattern, "diameter_mm": round(diameter, 1)})
    return lesions, _insert_lookalikes(rng, att, anatomy, spacing, field & ~busy, to_edge, priors)


def _insert_lookalikes(rng: np.random.Generator, att: np.ndarray, anatomy: Anatomy, spacing: float,
                       clear: np.ndarray, to_edge: np.ndarray, priors: FindingPriors) -> list[dict]:
    """Draw each look-alike kind once at its rate, and again at a third of it, where ``clear`` allows."""
    ws, scale = anatomy.spacing, anatomy.spacing / spacing
    h, w = anatomy.body.shape
    distractors: list[dict] = []
    for kind in DISTRACTORS:
        kind_priors = getattr(priors, kind)
        rate = kind_priors.rate
        for _ in range(int(rng.random() < rate) + int(rng.random() < rate / 3)):
            box = None
            if kind == "vascular" and anatomy.vessels:
                artery = anatomy.vessels[int(rng.integers(len(anatomy.vessels)))]
                path = artery + rng.normal(0, kind_priors.course_jitter_mm / ws, 2)
                box = render_vascular(att, rng, path * scale, spacing, anatomy.body, kind_priors)
            elif kind in ("tendinitis", "osteophyte"):
                sites = anatomy.insertions if kind == "tendinitis" else anatomy.margins
                reach = priors.placement.site_snap_mm / ws
                site = _snap(anatomy.bone, sites[int(rng.integers(len(sites)))], reach) if sites else None
                if site and clear[min(int(site[1]), h - 1), min(int(site[0]), w - 1)]:
                    full = (site[0] * scale, site[1] * scale, site[2], site[3])
                    render = render_tendinitis if kind == "tendinitis" else render_osteophyte
                    box = render(att, rng, full, spacing, kind_priors)
            else:  # bone island or metal; so is a "vascular" draw on a film without arteries (a real film)
                island = kind == "bone_island"
                shape = priors.bone_island if island else priors.metal
                spot = _pick(rng, (anatomy.medulla if island else anatomy.body) & clear & (to_edge > shape.edge_gap_mm))
                if spot:
                    render = render_bone_island if island else render_metal
                    box = render(att, rng, (spot[0] * scale, spot[1] * scale), spacing, shape)
            if box:
                distractors.append({"kind": kind, "bbox": box})
    return distractors
