"""A second held-out real-film test set, its masses drawn by a separately written model.

    python benchmarks/second_insertion.py --out runs/second_insertion [--placement calcidet|own]
    python benchmarks/generalization.py --checkpoint CKPT --set second=runs/second_insertion

calcidet trains on masses that ``data/synth_insert.py`` draws. The held-out set of
``real_film_testset.py`` draws them the same way into films never trained on, so a model that had
learned the drawing (its lobules, its blur, its intensity curve) rather than calcinosis would still
score well there. This set puts masses into the same 268 ``heldout`` films with a drawing written
apart from ``data/synth_*`` (it shares no drawing code) that makes a different choice at each step:

- **shape**: a mulberry of spherical granules (solid, or hollow shells for cystic masses) scattered
  in an elongated cluster, over a faint amorphous haze; some settle, denser at the bottom;
- **intensity**: the film is read as the fraction of light a viewer sees, and a mass removes a share
  ``1 - exp(-k * path)`` of the darkness left at each pixel (a lift that shrinks over white bone),
  not an attenuation added in calcidet's logit domain;
- **size**: 3.5-25 % of the short side, log-uniform (calcidet's: 3-30 %);
- **blur and noise**: a random Gaussian blur and the film's own high-pass noise level, measured here;
- **label**: the box holds every pixel that the mass lifts by at least 10 % of its peak lift (before
  the noise) (calcidet's: 15 % of its peak added attenuation); a mass whose mean lift over its
  densest part is under ``MIN_LIFT`` is drawn denser or left out;
- no look-alikes and no burned-in markers are added (the films keep their own).

Where masses go (``--placement``):

- ``calcidet`` (default): calcidet's own map of periarticular soft tissue (``data.synth_real``), so
  that the set differs from calcidet's own only in the drawing;
- ``own``: this module's tissue maps (body: well above the air's tone; bone: above an Otsu split of
  the body's tones), soft tissue within about one radius of bone, by a bone's end where one is found,
  not walled in by bone. A stress test of where calcidet looks, to be read with care: on hand, foot
  and pelvis films these crude maps put many masses over clusters of small bones, mid-shaft or in
  the pelvis, where calcidet's map (and the disease) does not put them.

Films are read with calcidet's reader, shrunk to at most ``MAX_SIDE`` px, and written as 8-bit PNG,
one per held-out film, seed ``SEED``; about a third stay negative. Without ``../shared`` (a user's
clone) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

# calcidet code clips a drawing to the film; the drawing itself is this module's own
from calcidet.data.synth_insert import on_film

ROOT = Path(__file__).resolve().parents[1]

SEED = 20261206
SPLIT = ROOT / "benchmarks" / "real_film_split.csv"
ROLE = "heldout"
MAX_SIDE = 1600  # detect sees 768 px; a smaller set on disk and faster reads
NEGATIVE_SHARE = 0.35
COUNTS, COUNT_WEIGHTS = (1, 2), (0.75, 0.25)
DIAMETER_FRAC = (0.035, 0.25)  # of the short side, log-uniform
OPACITY = (0.06, 0.6)  # share of the darkness removed at the mass's densest point, log-uniform
MAX_OPACITY = 0.85
MIN_LIFT = 0.04  # display units (about 10 of 255 grey levels): the mean lift over the mass's densest part
BOX_FRACTION = 0.10  # the box holds every pixel lifted by >= 10 % of the mass's peak lift
ANALYSIS_SHORT = 320  # tissue maps are found on the film shrunk to this short side


def tissue_maps(film: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(body, bone) masks at analysis scale and that scale: an air level, then Otsu within the body."""
    scale = ANALYSIS_SHORT / min(film.shape)
    small = cv2.resize(film, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    u8 = cv2.GaussianBlur((np.clip(small, 0, 1) * 255).astype(np.uint8), (0, 0), 2.0)
    # air is the darkest tone: body is anything well above it (one Otsu split over the whole film
    # puts the thighs of a pelvis film with the air)
    lo, hi = np.percentile(u8, (2, 98))
    body = u8 > lo + 0.15 * (hi - lo)
    if body.sum() < 50:  # a nearly blank film: treat all of it as body
        body[:] = True
    inside = u8[body].reshape(-1, 1)
    t_bone, _ = cv2.threshold(inside, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bone = (u8 > t_bone) & body
    bone = cv2.morphologyEx(bone.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    return body, bone, scale


def bone_ends(bone: np.ndarray) -> np.ndarray:
    """The last 15 % of each bone region along its long axis, where the film's edge does not cut it."""
    ends = np.zeros_like(bone)
    h, w = bone.shape
    n, lab = cv2.connectedComponents(bone.astype(np.uint8))
    for k in range(1, n):
        ys, xs = np.nonzero(lab == k)
        if len(xs) < 30:
            continue
        pts = np.stack([xs, ys], 1).astype(np.float32)
        axis = np.linalg.svd(pts - pts.mean(0), full_matrices=False)[2][0]
        t = (pts - pts.mean(0)) @ axis
        lo, hi = float(t.min()), float(t.max())
        for sel in (t <= lo + 0.15 * (hi - lo), t >= hi - 0.15 * (hi - lo)):
            cut = (xs[sel] == 0).any() or (ys[sel] == 0).any() or (xs[sel] == w - 1).any() or (ys[sel] == h - 1).any()
            if not cut:
                ends[ys[sel], xs[sel]] = True
    return ends


def outer_soft_tissue(body: np.ndarray, bone: np.ndarray) -> np.ndarray:
    """Soft tissue that reaches the skin or the film's edge without crossing bone.

    Soft tissue walled in by bone (the pelvic cavity and obturator foramen, the gaps between carpals)
    is not where periarticular calcinosis lies.
    """
    walls = cv2.dilate(bone.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    n, lab = cv2.connectedComponents((body & ~walls).astype(np.uint8))
    rim = ~body
    rim[0, :] = rim[-1, :] = rim[:, 0] = rim[:, -1] = True
    touching = np.unique(lab[cv2.dilate(rim.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)])
    outer = np.isin(lab, touching[touching > 0])
    # give back the soft tissue the dilation took from beside bone, where it borders outer tissue
    near = cv2.dilate(outer.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    return (outer | (near & ~bone)) & body


def _clear_of(ok: np.ndarray, radius: float, taken: list[tuple[float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the ``ok`` pixels where a mass of ``radius`` would not touch one already placed."""
    yy, xx = np.nonzero(ok)
    for x, y, r in taken:
        far = np.hypot(xx - x, yy - y) >= r + radius
        xx, yy = xx[far], yy[far]
    return xx, yy


def pick_site(rng: np.random.Generator, body: np.ndarray, bone: np.ndarray, radius: float,
              taken: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """A centre (analysis px) in soft tissue within a radius of bone, by its end if it can, clear of earlier masses."""
    to_bone = cv2.distanceTransform((~bone).astype(np.uint8), cv2.DIST_L2, 5)
    to_end = cv2.distanceTransform((~bone_ends(bone)).astype(np.uint8), cv2.DIST_L2, 5)
    # the film's edge counts as air: a mass cut off by the edge would have a box that is not its extent
    to_air = cv2.distanceTransform(np.pad(body, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    soft = outer_soft_tissue(body, bone)
    beside = soft & (to_bone >= 0.2 * radius) & (to_bone <= 1.0 * radius) & (to_air >= 0.5 * radius)
    # beside a bone end; else beside any bone (most bone regions are merged or cut by the film's edge)
    for ok in (beside & (to_end <= 1.5 * radius), beside):
        xx, yy = _clear_of(ok, radius, taken)
        if len(xx):
            i = int(rng.integers(len(xx)))
            return float(xx[i]), float(yy[i])
    return None


def _sphere(d2: np.ndarray, r: float) -> np.ndarray:
    """Path length through a sphere of radius r at squared distance d2 from its centre, over r."""
    return np.sqrt(np.clip(1.0 - d2 / (r * r), 0.0, None))


def draw_mulberry(rng: np.random.Generator, diameter: float) -> np.ndarray:
    """A mass's path length (0..1) on a square grid of film pixels, about ``diameter`` across."""
    sub = int(np.clip(round(160 / max(diameter, 1.0)), 1, 4))  # draw finer, then area-average
    n = int(np.ceil(diameter * 1.3 * sub)) | 1
    c = n / 2
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    half = diameter * sub / 2
    elong, angle = rng.uniform(1.0, 1.8), rng.uniform(0, np.pi)
    ca, sa = np.cos(angle), np.sin(angle)
    grain = half * float(np.exp(rng.uniform(np.log(0.07), np.log(0.3))))
    cystic = rng.random() < 0.3
    path = np.zeros((n, n), np.float32)
    for _ in range(int(rng.integers(6, 50))):
        # a granule centre inside the cluster's ellipse, its radius around the typical grain
        while True:
            u, v = rng.uniform(-1, 1, 2)
            if u * u + v * v <= 1:
                break
        r = float(np.clip(grain * np.exp(rng.normal(0, 0.35)), 0.8 * sub, 0.6 * half))
        span = half - r
        gx = c + span * (u * ca - v / elong * sa)
        gy = c + span * (u * sa + v / elong * ca)
        d2 = (xx - gx) ** 2 + (yy - gy) ** 2
        g = _sphere(d2, r)
        if cystic:
            g = g - 0.8 * _sphere(d2, 0.7 * r)
        path += rng.uniform(0.5, 1.0) * g
    path = 1.0 - np.exp(-1.5 * path)  # overlapping granules saturate
    # an amorphous haze over the cluster's ellipse
    u = ((xx - c) * ca + (yy - c) * sa) / half
    v = (-(xx - c) * sa + (yy - c) * ca) * elong / half
    noise = cv2.GaussianBlur(rng.random((n, n)).astype(np.float32), (0, 0), max(half / 4, 1.0))
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    path += rng.uniform(0.05, 0.3) * np.exp(-2.0 * (u * u + v * v)) * noise
    if rng.random() < 0.15:  # sedimented: denser towards the bottom of the film
        path *= np.clip(0.4 + 0.6 * (yy - (c - half)) / (2 * half), 0.4, 1.0)
    if sub > 1:
        m = n // sub * sub
        path = cv2.resize(path[:m, :m], (m // sub, m // sub), interpolation=cv2.INTER_AREA)
    return path / max(float(path.max()), 1e-6)


def film_noise(film: np.ndarray) -> float:
    """The film's pixel noise: a robust spread of its high-pass residual."""
    hp = film - cv2.GaussianBlur(film, (0, 0), 1.5)
    return float(1.4826 * np.median(np.abs(hp - np.median(hp))))


def insert_mass(rng: np.random.Generator, film: np.ndarray, path: np.ndarray, x0: int, y0: int,
                opacity: float, noise: float) -> tuple[list[float], float] | None:
    """Lift ``film`` in place under ``path`` (top-left at x0, y0); the COCO box and the peak lift.

    The lift at each pixel is ``(1 - v) * (1 - exp(-k * path))``, k set so the densest point removes
    ``opacity`` of the darkness there. None, and the film untouched, when the mass would not show.
    """
    covered = on_film(film.shape, path, x0, y0)
    if covered is None:
        return None
    where, part = covered
    under = film[where]
    xa, ya = where[1].start, where[0].start
    dense = part >= 0.5
    if not dense.any():
        return None
    while True:
        k = -np.log(1.0 - opacity)
        lift = (1.0 - under) * (1.0 - np.exp(-k * part))
        if lift[dense].mean() >= MIN_LIFT or opacity >= MAX_OPACITY:
            break
        opacity = min(opacity * 1.5, MAX_OPACITY)
    if lift[dense].mean() < MIN_LIFT:
        return None
    peak = float(lift.max())
    ys, xs = np.nonzero(lift >= BOX_FRACTION * peak)
    # quantum noise over the mass, a share of the film's own, where the mass is (not part of the label)
    lift = lift + rng.normal(0.0, 0.5 * noise, lift.shape).astype(np.float32) * np.sqrt(part)
    under += np.clip(lift, -under, 1.0 - under)  # under is a view into film
    box = [float(xa + xs.min()), float(ya + ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
    return box, peak


def calcidet_sites(film: np.ndarray, joint: str, view: str, seed: int):
    """A site picker over calcidet's own map of where masses go (``data.synth_real``): the default placement.

    With it, the set differs from calcidet's only in how a mass is drawn and added, not where it lies.
    """
    from calcidet.data.synth_anatomy import distance_mm
    from calcidet.data.synth_real import analyse_film

    real = analyse_film(film, np.random.default_rng(seed), joint, view)
    an = real.anatomy
    scale = an.spacing / real.spacing  # film px per working px
    to_bone, to_skin = distance_mm(~an.bone, an.spacing), distance_mm(an.body, an.spacing)
    to_edge = distance_mm(np.pad(np.ones(an.body.shape, bool), 1), an.spacing)[1:-1, 1:-1]

    def pick(rng, body, bone, radius, taken):  # radius in working px here
        r_mm = radius * an.spacing
        ok = (real.weight > 0) & (to_bone >= 0.3 * r_mm) & (to_bone <= r_mm + 20.0) & (to_skin >= 0.35 * r_mm)
        ok &= to_edge >= 0.6 * r_mm  # not cut off by the film's edge
        xx, yy = _clear_of(ok, radius, taken)
        if len(xx) == 0:
            return None
        w = real.weight[yy, xx].astype(np.float64)
        i = int(rng.choice(len(xx), p=w / w.sum()))
        return float(xx[i]), float(yy[i])

    return pick, 1.0 / scale


def insert_masses(rng: np.random.Generator, film: np.ndarray, n: int, sites=None) -> list[dict]:
    """Put up to ``n`` masses into ``film`` (0..1, modified in place); their COCO boxes and draws.

    ``sites``: ``(pick, scale)`` as ``calcidet_sites`` returns, to place masses where calcidet does;
    None places them by this module's own tissue maps.
    """
    if sites is None:
        body, bone, scale = tissue_maps(film)
        pick = pick_site
    else:  # calcidet's map: this module's tissue maps are not needed
        body = bone = None
        pick, scale = sites
    short = min(film.shape)
    noise = film_noise(film)
    taken: list[tuple[float, float, float]] = []
    masses = []
    for _ in range(n):
        frac = float(np.exp(rng.uniform(*np.log(DIAMETER_FRAC))))
        diameter = frac * short
        site = pick(rng, body, bone, diameter / 2 * scale, taken)
        if site is None:
            continue
        path = draw_mulberry(rng, diameter)
        blur = rng.uniform(0.5, 1.5) * max(1.0, short / 1200)
        path = cv2.GaussianBlur(np.pad(path, int(3 * blur) + 1), (0, 0), blur)
        cx, cy = site[0] / scale, site[1] / scale
        x0, y0 = int(round(cx - path.shape[1] / 2)), int(round(cy - path.shape[0] / 2))
        opacity = float(np.exp(rng.uniform(*np.log(OPACITY))))
        placed = insert_mass(rng, film, path, x0, y0, opacity, noise)
        if placed is None:
            continue
        box, peak = placed
        taken.append((site[0], site[1], diameter / 2 * scale))
        masses.append({"bbox": box, "attributes": {"diameter_frac": round(frac, 4), "peak_lift": round(peak, 4)}})
    return masses


def build(out: Path, shared: Path, seed: int = SEED, limit: int | None = None, placement: str = "calcidet",
          insert=insert_masses, description: str = "calcidet second-insertion held-out set") -> dict:
    """Write ``out/images/*.png`` and ``out/annotations.json``; the COCO dict.

    ``insert``: the ``insert_masses`` to draw with (another drawing, e.g. ``third_insertion.py``'s, reuses
    this harness: the same films, shrinking, counts and placement); ``description`` names the set.
    """
    from calcidet.data.readers import read_radiograph
    from calcidet.data.synth_backgrounds import list_backgrounds

    films = list_backgrounds(SPLIT, role=ROLE, root=shared)[:limit]
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i, bg in enumerate(films):
        rng = np.random.default_rng([seed, i])
        film = read_radiograph(bg.path).image.astype(np.float32)
        s = MAX_SIDE / max(film.shape)
        if s < 1:
            film = cv2.resize(film, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        n = 0 if rng.random() < NEGATIVE_SHARE else int(rng.choice(COUNTS, p=COUNT_WEIGHTS))
        sites = calcidet_sites(film, bg.joint, bg.view, seed + i) if placement == "calcidet" and n else None
        masses = insert(rng, film, n, sites)
        name = f"{i:04d}.png"
        cv2.imwrite(str(out / "images" / name), np.round(np.clip(film, 0, 1) * 255).astype(np.uint8))
        images.append({"id": i + 1, "file_name": name, "width": film.shape[1], "height": film.shape[0],
                       "joint": bg.joint, "view": bg.view, "source": bg.source})
        for m in masses:
            x, y, w, h = m["bbox"]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "bbox": m["bbox"],
                                "area": w * h, "iscrowd": 0, "attributes": m["attributes"]})
    coco = {"info": {"description": description, "seed": seed, "placement": placement},
            "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "calcinosis", "supercategory": "calcification"}]}
    (out / "annotations.json").write_text(json.dumps(coco))
    return coco


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "runs" / "second_insertion"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "radiographs" / "fracatlas"))
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--placement", choices=("calcidet", "own"), default="calcidet",
                    help="where masses go: calcidet's own site map (default: the sets then differ only in the "
                         "drawing), or this module's own tissue maps (a stress test)")
    args = ap.parse_args(argv)
    shared = Path(args.shared)
    if not shared.is_dir():
        print(f"skipped: {shared} is missing (the held-out films live outside the repository)")
        return 0
    coco = build(Path(args.out), shared, args.seed, placement=args.placement)
    negatives = len({im["id"] for im in coco["images"]} - {a["image_id"] for a in coco["annotations"]})
    print(f"second-insertion held-out set: {len(coco['images'])} films, {len(coco['annotations'])} masses, "
          f"{negatives} negatives -> {Path(args.out) / 'annotations.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
