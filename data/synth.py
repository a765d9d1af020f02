"""Synthetic plain films of joints with periarticular calcinosis, written as a COCO dataset.

    calcidet synth --out DIR --n 200 --seed 1 [--backgrounds FOLDER] [--preview sheet.png]
    python -c "from calcidet.data.synth import synthesize; synthesize('/tmp/s', n=20, seed=1)"

A film is made in physical units: anatomy (``data.synth_anatomy``) and lesions with their look-alikes
(``data.synth_lesions``) add up as attenuation, then an acquisition model turns the sum into pixels:
exposure, focal-spot/screen blur, scatter, quantum noise, log and windowing with CR-style edge
enhancement, collimation and a burned-in side marker. ``--backgrounds`` swaps the procedural anatomy
for real normal films (a folder, or a CSV/text list of files): ``data.synth_real`` models each film's
intensity curve, blur, noise and joints, ``data.synth_insert`` adds masses, look-alikes and markers.

Every film has its own RNG, ``default_rng([seed, index])`` (the patient's anatomy another,
``[seed, patient, 1]``), so a pool of workers writes the same bytes as a serial run.

Output: ``DIR/annotations.json`` (COCO, category 1 ``calcinosis``; ``images[]`` carry ``patient_id``,
``joint``, ``pixel_spacing_mm`` and the unlabelled ``distractors``) and ``DIR/images/`` (8/16-bit PNG,
JPEG, 16-bit TIFF, DICOM with MONOCHROME1/2, 10-16 stored bits and rescale).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calcidet.data.synth_anatomy import FIELD_OF_VIEW_MM, JOINT_WEIGHTS, render_anatomy
from calcidet.data.synth_backgrounds import Background, list_backgrounds
from calcidet.data.synth_edges import add_edges
from calcidet.data.synth_insert import MassOptions, insert_into_film
from calcidet.data.synth_lesions import insert_findings
from calcidet.data.synth_real import analyse_film
from calcidet.data.synth_writers import FORMAT_WEIGHTS, FORMATS, write_image

log = logging.getLogger("calcidet")
GENERATOR_VERSION = "2.0"
NEGATIVE_SHARE = 0.37  # films without calcinosis
LESION_COUNTS, LESION_COUNT_WEIGHTS = (1, 2, 3), (0.72, 0.2, 0.08)


@dataclass(frozen=True)
class FilmOptions:
    """What every film of one dataset shares (``synthesize`` gives each its meaning).

    One object passes them from ``synthesize`` down to the worker that draws a film, so an option is
    added in one place rather than in every signature on the way.
    """

    size_range: tuple[int, int] = (800, 2500)
    dicom_fraction: float = 0.15
    edge_share: float = 0.0
    masses: MassOptions = MassOptions()

    def __post_init__(self) -> None:
        if not 0 < self.size_range[0] <= self.size_range[1]:
            raise ValueError(f"size_range must be (min, max) with 0 < min <= max, got {self.size_range}")
        for name in ("dicom_fraction", "edge_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")


@dataclass
class SynthReport:
    """What ``synthesize`` wrote."""

    out_dir: Path
    images: int
    lesions: int
    negatives: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    @property
    def annotations(self) -> Path:
        return self.out_dir / "annotations.json"


def _expose(rng: np.random.Generator, att: np.ndarray, spacing: float) -> np.ndarray:
    """Attenuation -> processed film in 0..1 (bone bright): the detector and CR/DR processing."""
    h, w = att.shape  # float32 throughout, mostly in OpenCV: this runs on ~2 MP per film
    signal = cv2.exp(att * -rng.uniform(0.85, 1.15))  # beam energy: lower kVp, more contrast
    signal = cv2.GaussianBlur(signal, (0, 0), max(0.35, rng.uniform(0.08, 0.2) / spacing))  # focal spot, screen
    sw, sh = max(4, w // 16), max(4, h // 16)
    haze = cv2.GaussianBlur(cv2.resize(signal, (sw, sh), interpolation=cv2.INTER_AREA), (0, 0), 30 / spacing / 16)
    signal = cv2.scaleAdd(cv2.resize(haze, (w, h), interpolation=cv2.INTER_LINEAR), rng.uniform(0.02, 0.15), signal)
    photons = 10 ** rng.uniform(5.0, 6.0) * spacing**2  # per pixel: smaller pixels catch fewer photons
    noise = rng.standard_normal((h, w), dtype=np.float32)
    noise *= cv2.sqrt(signal * (1.0 / photons))  # quantum noise: variance follows the signal
    signal += noise
    log = cv2.log(np.maximum(signal, 1e-4, out=signal))
    log *= -1.0
    sample = log[::4, ::4]
    air, hi = (float(v) for v in np.percentile(sample, (0.5, 99.8)))
    # CR/DR windowing looks at the anatomy, not at the direct exposure: thin tissue stays a dark grey.
    body = sample[sample > 0.2 * hi]
    thin, typical = (float(v) for v in np.percentile(body, (2, 50))) if body.size else (air, air)
    grey = rng.uniform(0.3, 0.5)  # where the typical tissue lands, before the tone curve
    lo = float(np.clip((typical - grey * hi) / (1 - grey), air, air + 0.6 * max(thin - air, 0)))  # skin stays visible
    log -= lo
    log *= 1.0 / max(hi - lo, 1e-3)
    # CR/DR processing flattens large-scale density and sharpens detail (unsharp mask, big kernel).
    base = cv2.GaussianBlur(cv2.resize(log, (sw * 2, sh * 2), interpolation=cv2.INTER_AREA), (0, 0),
                            rng.uniform(5, 15) / spacing / 8)
    amount, gain = rng.uniform(0.2, 0.7), rng.uniform(0.95, 1.1)
    x = cv2.addWeighted(log, (1 + amount) * gain, cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR),
                        -amount * gain, -rng.uniform(0.0, 0.05))
    np.clip(x, 0, 1, out=x)
    tone = np.linspace(0, 1, 4096, dtype=np.float32) ** rng.uniform(0.8, 1.3)  # gamma as a lookup table
    return tone[(x * 4095 + 0.5).astype(np.uint16)]


def _collimator(rng: np.random.Generator, h: int, w: int) -> np.ndarray | None:
    """The exposed field's corners (film px), a slightly tilted rectangle; None: no visible collimation."""
    if rng.random() > 0.55:
        return None
    m = [rng.uniform(0.02, 0.12) if rng.random() < 0.75 else -0.05 for _ in range(4)]
    corners = np.array([[m[0] * w, m[1] * h], [(1 - m[2]) * w, m[1] * h], [(1 - m[2]) * w, (1 - m[3]) * h],
                        [m[0] * w, (1 - m[3]) * h]])
    t = np.radians(rng.uniform(-3, 3))
    mid = corners.mean(0)
    return (corners - mid) @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) + mid


def _field_mask(corners: np.ndarray | None, h: int, w: int, scale: float = 1.0) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    if corners is None:
        return np.ones((h, w), bool)
    cv2.fillPoly(mask, [np.round(corners * scale * 4).astype(np.int32)], 1, cv2.LINE_8, 2)
    return mask > 0


def _collimate(rng: np.random.Generator, film: np.ndarray, field: np.ndarray) -> None:
    """Outside the field: unexposed (bright) on a raw film, or blacked out by the shutter."""
    h, w = film.shape
    edge = cv2.GaussianBlur(field.astype(np.float32), (0, 0), 1.5)
    fill = rng.uniform(0.82, 0.97) if rng.random() < 0.5 else rng.uniform(0.0, 0.05)
    grain = cv2.resize(rng.normal(fill, 0.01, ((h + 1) // 2, (w + 1) // 2)).astype(np.float32), (w, h),
                       interpolation=cv2.INTER_NEAREST)
    film *= edge
    film += (1 - edge) * grain


def _side_marker(rng: np.random.Generator, film: np.ndarray, letter: str, spacing: float, avoid: list[list[float]],
                 field: np.ndarray) -> None:
    """Burn in a lead "L"/"R" marker as bright block letters, in a corner clear of lesions."""
    h, w = film.shape
    s = max(8, int(rng.uniform(8, 14) / spacing))  # letter height, px
    k = max(2, s // 5)  # stroke
    strokes = {"L": [[(0, 0), (k, 0), (k, s), (0, s)], [(0, s - k), (int(0.65 * s), s - k), (int(0.65 * s), s), (0, s)]],
               "R": [[(0, 0), (k, 0), (k, s), (0, s)], [(0, 0), (int(0.6 * s), 0), (int(0.6 * s), k), (0, k)],
                     [(int(0.6 * s) - k, 0), (int(0.6 * s), 0), (int(0.6 * s), s // 2), (int(0.6 * s) - k, s // 2)],
                     [(0, s // 2 - k // 2), (int(0.6 * s), s // 2 - k // 2), (int(0.6 * s), s // 2 + k // 2), (0, s // 2 + k // 2)],
                     [(k, s // 2), (2 * k, s // 2), (int(0.7 * s), s), (int(0.7 * s) - k, s)]]}[letter]
    pad = int(s * 0.35)
    for _ in range(8):
        x0 = int(rng.choice([rng.uniform(0.04, 0.2), rng.uniform(0.75, 0.92)]) * w)
        y0 = int(rng.choice([rng.uniform(0.04, 0.2), rng.uniform(0.72, 0.9)]) * h)
        box = (x0 - pad, y0 - pad, x0 + s + pad, y0 + s + pad)
        inside = 0 <= box[0] and box[2] < w and 0 <= box[1] and box[3] < h and field[y0, x0] and field[box[3], box[2]]
        if inside and all(box[2] < b[0] or box[0] > b[0] + b[2] or box[3] < b[1] or box[1] > b[1] + b[3] for b in avoid):
            break
    else:
        return
    mark = np.zeros((h, w), np.uint8)
    for poly in strokes:
        cv2.fillPoly(mark, [np.array(poly, np.int32) + (x0, y0)], 255, cv2.LINE_AA)
    if rng.random() < 0.5:  # the marker's plastic holder, faintly
        cv2.rectangle(mark, box[:2], box[2:], 90, max(1, k // 3), cv2.LINE_AA)
    np.maximum(film, mark.astype(np.float32) / 255 * rng.uniform(0.9, 1.0), out=film)


def make_image(seed: int, index: int, spec: dict[str, Any], options: FilmOptions = FilmOptions()) -> dict[str, Any]:
    """Render film ``index`` of a dataset: pixels (float32 0..1), lesions, distractors and metadata."""
    rng = np.random.default_rng([seed, index])
    if spec.get("background"):
        # Each mass's drawing is picked by its own generator: at volume_share 0 nothing is drawn from it.
        drawing_rng = np.random.default_rng([seed, index, 4])
        item = _real_image(rng, spec, options, drawing_rng)
        if options.edge_share > 0:
            # Edges draw from their own generator: the masses and look-alikes stay what they were without them.
            edge_rng = np.random.default_rng([seed, index, 3])
            item["edges"] = False
            if edge_rng.random() < options.edge_share:
                _add_edges(edge_rng, item)
        return item
    size_range, dicom_fraction = options.size_range, options.dicom_fraction
    longest = int(rng.integers(size_range[0], size_range[1] + 1))
    short = int(longest * rng.uniform(0.72, 0.9))
    portrait = rng.random() < (0.5 if spec["joint"] in ("hip", "shoulder") else 0.8)
    h, w = (longest, short) if portrait else (short, longest)
    spacing = float(np.clip(longest * rng.uniform(0.1, 0.2), *FIELD_OF_VIEW_MM[spec["joint"]])) / longest
    shape_rng = np.random.default_rng([seed, spec["patient"], 1])  # the patient's anatomy, shared by their films
    anatomy = render_anatomy(shape_rng, rng, spec["joint"], spec["view"], spec["side"], h, w, spacing)
    att = cv2.resize(anatomy.attenuation, (w, h), interpolation=cv2.INTER_LINEAR)
    corners = _collimator(rng, h, w)
    field = _field_mask(corners, *anatomy.body.shape, spacing / anatomy.spacing)  # at working resolution
    n_lesions = 0 if rng.random() < NEGATIVE_SHARE else int(rng.choice(LESION_COUNTS, p=LESION_COUNT_WEIGHTS))
    lesions, distractors = insert_findings(rng, att, anatomy, spacing, n_lesions, field)
    film = _expose(rng, att, spacing)
    if corners is not None:
        _collimate(rng, film, _field_mask(corners, h, w))
    side = spec.get("side") or str(rng.choice(["L", "R"]))
    if rng.random() < 0.85:
        letter = side if rng.random() < 0.9 else str(rng.choice(["L", "R"]))
        _side_marker(rng, film, letter, spacing, [les["bbox"] for les in lesions], _field_mask(corners, h, w))
    np.clip(film, 0, 1, out=film)  # the writers quantise 0..1; noise on a bright border must not wrap
    fmt = "dicom" if rng.random() < dicom_fraction else str(rng.choice(FORMATS, p=FORMAT_WEIGHTS))
    return {"film": film, "lesions": lesions, "distractors": distractors, "joint": spec["joint"],
            "view": spec["view"], "side": side, "spacing": spacing, "format": fmt}


def _real_image(rng: np.random.Generator, spec: dict[str, Any], options: FilmOptions,
                drawing_rng: np.random.Generator) -> dict[str, Any]:
    """A real normal film with masses (or none), look-alikes and markers inserted; keeps its size."""
    from calcidet.data.readers import read_radiograph

    source = read_radiograph(spec["background"]).image
    real = analyse_film(source, rng, spec["joint"], spec["view"])
    n_lesions = 0 if rng.random() < NEGATIVE_SHARE else int(rng.choice(LESION_COUNTS, p=LESION_COUNT_WEIGHTS))
    film, lesions, distractors = insert_into_film(rng, source, real, n_lesions, options=options.masses,
                                                  drawing_rng=drawing_rng)
    fmt = "dicom" if rng.random() < options.dicom_fraction else str(rng.choice(FORMATS, p=FORMAT_WEIGHTS))
    return {"film": film, "lesions": lesions, "distractors": distractors, "joint": spec["joint"],
            "view": spec["view"], "side": "unknown", "spacing": real.spacing, "format": fmt}


def _add_edges(rng: np.random.Generator, item: dict[str, Any]) -> None:
    """Collimator and plate edges over a real film, clear of its masses; look-alikes they cover are dropped."""
    item["film"], changed = add_edges(rng, item["film"], [les["bbox"] for les in item["lesions"]])
    h, w = changed.shape
    kept = []
    for d in item["distractors"]:
        x, y, bw, bh = d["bbox"]
        cx, cy = min(max(int(x + bw / 2), 0), w - 1), min(max(int(y + bh / 2), 0), h - 1)
        if not changed[cy, cx]:
            kept.append(d)
    item["distractors"] = kept
    item["edges"] = bool(changed.any())


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one film per process: the pool is the parallelism


def _render_and_write(job: tuple) -> dict[str, Any]:
    seed, index, spec, options, out_dir = job
    item = make_image(seed, index, spec, options)
    name = write_image(out_dir, index, item, seed)
    h, w = item.pop("film").shape
    return {**item, "index": index, "file_name": name, "width": w, "height": h}


def _plan(seed: int, n: int, backgrounds: list[Background] | None) -> list[dict[str, Any]]:
    """Who and what each film shows; about a quarter of patients have two films (other side, follow-up).

    With backgrounds, film ``i`` is background ``order[i % len]`` of a seeded shuffle: each film once
    before any repeats.
    """
    rng = np.random.default_rng([seed, 2**32 - 1])
    if backgrounds:
        order = rng.permutation(len(backgrounds))
        picks = [backgrounds[order[i % len(order)]] for i in range(n)]
        return [{"background": str(b.path), "patient_id": "bg-" + str(Path(b.source).with_suffix("").as_posix()),
                 "source": b.source, "joint": b.joint, "view": b.view} for b in picks]
    kinds = list(JOINT_WEIGHTS)
    weights = np.array(list(JOINT_WEIGHTS.values()))
    specs: list[dict[str, Any]] = []
    patient = 0
    while len(specs) < n:
        patient += 1
        joint, view = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        side = str(rng.choice(["R", "L"]))
        specs.append({"patient": patient, "joint": joint, "view": view, "side": side})
        if rng.random() < 0.3:
            views = [v for j, v in kinds if j == joint]
            other = side if rng.random() < 0.5 else {"R": "L", "L": "R"}[side]
            specs.append({"patient": patient, "joint": joint, "view": str(rng.choice(views)), "side": other})
    for s in specs:
        s["patient_id"] = f"synth-{seed}-{s['patient']:05d}"
    return specs[:n]


def synthesize(out_dir: str | Path, n: int, seed: int = 0, *, backgrounds: str | Path | None = None,
               background_role: str | None = None, background_root: str | Path | None = None,
               workers: int | None = None, dicom_fraction: float = 0.15,
               size_range: tuple[int, int] = (800, 2500), min_conspicuity: float = 0.0,
               edge_share: float = 0.0, volume_share: float = 0.0, verbose: bool = True) -> SynthReport:
    """Write ``n`` synthetic films and their COCO annotations to ``out_dir``.

    Args:
        out_dir: output folder (created); ``annotations.json`` and ``images/`` go inside.
        n: number of films.
        seed: dataset seed; the same seed gives byte-identical files, whatever ``workers`` is.
        backgrounds: real normal radiographs to insert lesions into, instead of procedural anatomy
            (films keep their size): a folder (searched recursively), a CSV with a ``file`` column or a
            text list (``data.synth_backgrounds.list_backgrounds``). A ``manifest.csv`` in the root
            gives each film's joint and view.
        background_role: with a CSV list, only rows of this ``role`` (e.g. ``heldout``).
        background_root: where a list's relative paths resolve (default: the list's folder).
        workers: processes (default: CPU count).
        dicom_fraction: share of films written as DICOM.
        size_range: longest side of procedural films, px (min, max).
        min_conspicuity: with backgrounds, masses are drawn denser until they stand out of the film's
            own structure by this much (``data.synth_insert.conspicuity``), else left out; 0: only
            the contrast floor. Every mass records its conspicuity either way.
        edge_share: with backgrounds, the share of films that get collimator or plate edges drawn
            clear of their masses (``data.synth_edges``): hard negatives. 0 leaves every film as it was.
        volume_share: with backgrounds, the share of masses drawn by the volume model
            (``data.synth_mass_volume``: loculi of a 3D capsule, projected) instead of the 2D lobules
            (``data.synth_lesions.render_calcinosis``); each mass then records its ``drawing``. 0
            leaves every film as it was.
        verbose: log the throughput at the end (info level of the ``calcidet`` logger).

    Returns:
        Counts and timing of what was written.
    """
    start = time.perf_counter()
    options = FilmOptions(tuple(size_range), dicom_fraction, edge_share, MassOptions(min_conspicuity, volume_share))
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    bg_files = list_backgrounds(backgrounds, background_role, background_root) if backgrounds is not None else None
    specs = _plan(seed, n, bg_files)
    jobs = [(seed, i, specs[i], options, out) for i in range(n)]
    workers = min(workers or os.cpu_count() or 1, n)
    if workers > 1:
        # spawn, not fork: a forked child can inherit a locked OpenCV/BLAS thread pool and hang.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker) as pool:
            records = list(pool.map(_render_and_write, jobs, chunksize=1))
    else:
        records = [_render_and_write(j) for j in jobs]

    images, annotations = [], []
    for rec, spec in zip(records, specs):
        image_id = rec["index"] + 1
        image = {"id": image_id, "file_name": rec["file_name"], "width": rec["width"], "height": rec["height"],
                 "patient_id": spec["patient_id"], "joint": rec["joint"], "view": rec["view"], "side": rec["side"],
                 "pixel_spacing_mm": [round(rec["spacing"], 5)] * 2, "distractors": rec["distractors"]}
        if "source" in spec:
            image["background"] = spec["source"]
        if "edges" in rec:  # whether collimator or plate edges were drawn (``edge_share``)
            image["edges"] = rec["edges"]
        images.append(image)
        for les in rec["lesions"]:
            x, y, bw, bh = les["bbox"]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0,
                                "attributes": {k: v for k, v in les.items() if k != "bbox"}})
    coco = {"info": {"description": "calcidet synthetic radiographs with periarticular calcinosis",
                     "generator": "calcidet.data.synth", "version": GENERATOR_VERSION, "seed": seed,
                     "backgrounds": bool(bg_files), "min_conspicuity": min_conspicuity,
                     "edge_share": edge_share, **({"volume_share": volume_share} if volume_share else {})},
            "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "calcinosis", "supercategory": "calcification"}]}
    (out / "annotations.json").write_text(json.dumps(coco, indent=1, sort_keys=True) + "\n")
    negatives = sum(1 for r in records if not r["lesions"])
    report = SynthReport(out, n, len(annotations), negatives, time.perf_counter() - start)
    if verbose:
        log.info("%d images in %.1f s (%.2f images/s): %d lesions, %d negatives -> %s", n, report.seconds,
                 report.images_per_s, len(annotations), negatives, report.annotations)
    return report
