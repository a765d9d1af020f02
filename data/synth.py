"""Synthetic plain films of joints with periarticular calcinosis, written as a COCO dataset.

    calcidet synth --out DIR --n 200 --seed 1 [--backgrounds FOLDER] [--preview sheet.png]

Each film is built in physical units: anatomy (``data.synth_anatomy``) and lesions/look-alikes
(``data.synth_lesions``) add attenuation, then an acquisition model turns it into pixels (exposure,
scatter blur, quantum noise, collimation, burned-in side marker, bit depth, file format). Every
image has its own RNG, ``default_rng([seed, index])``, so a parallel run writes the same bytes as a
serial one and the same seed always gives identical files.

Output: ``DIR/annotations.json`` (COCO; category 1 ``calcinosis``; ``images[].distractors`` lists the
unlabelled look-alikes) and ``DIR/images/`` (8/16-bit PNG, JPEG, 16-bit TIFF and DICOM).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from data.synth_anatomy import FIELD_OF_VIEW_MM, JOINT_WEIGHTS, JOINTS, Anatomy, render_anatomy
from data.synth_lesions import (
    DISTRACTORS,
    PATTERN_WEIGHTS,
    PATTERNS,
    render_calcinosis,
    render_metal,
    render_osteophyte,
    render_small_dense,
    render_vascular,
    tight_box,
)
from data.synth_writers import FORMAT_WEIGHTS, FORMATS, write_image

GENERATOR_VERSION = "1"
POSITIVE_SHARE = 0.62
BACKGROUND_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class SynthReport:
    out_dir: Path
    images: int
    lesions: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def _place(rng: np.random.Generator, anatomy: Anatomy, radius_px: float, near: float, far: float) -> tuple[float, float] | None:
    """A point in soft tissue, outside bone, between ``near`` and ``far`` pixels from bone."""
    h, w = anatomy.body_mask.shape
    step = float(max(1, int(max(h, w) / 400)))  # search on a coarse grid: fast at 2500 px
    istep = int(step)
    bone = anatomy.bone_mask[::istep, ::istep].astype(np.uint8)
    dist = cv2.distanceTransform(1 - bone, cv2.DIST_L2, 5) * step
    # A mask without zeros gives FLT_MAX distances: clip before scaling.
    body_dist = np.minimum(cv2.distanceTransform(anatomy.body_mask[::istep, ::istep].astype(np.uint8), cv2.DIST_L2, 5), 1e6) * step
    ok = (dist >= near) & (dist <= far) & (body_dist > radius_px * 0.8)
    # Periarticular: prefer the neighbourhood of the joint.
    yy, xx = np.nonzero(ok)
    if len(xx) == 0:
        return None
    jx, jy = anatomy.joint_centre
    d_joint = np.hypot(xx * step - jx, yy * step - jy)
    weights = np.exp(-d_joint / (0.25 * max(h, w)))
    k = rng.choice(len(xx), p=weights / weights.sum())
    return float(xx[k] * step + rng.uniform(0, step)), float(yy[k] * step + rng.uniform(0, step))


def _add_patch(canvas: np.ndarray, patch: np.ndarray, centre: tuple[float, float]) -> tuple[int, int]:
    """Add ``patch`` centred at ``centre``, clipped to the canvas; returns the patch's top-left."""
    ph, pw = patch.shape
    x0, y0 = int(centre[0] - pw / 2), int(centre[1] - ph / 2)
    h, w = canvas.shape
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + pw, w), min(y0 + ph, h)
    if xa < xb and ya < yb:
        canvas[ya:yb, xa:xb] += patch[ya - y0:yb - y0, xa - x0:xb - x0]
    return x0, y0


def _lesions(rng: np.random.Generator, anatomy: Anatomy, spacing: float, lesion_map: np.ndarray) -> list[dict]:
    h, w = lesion_map.shape
    found = []
    if rng.random() >= POSITIVE_SHARE:
        return found
    count = int(rng.choice([1, 2, 3], p=[0.72, 0.2, 0.08]))
    for _ in range(count):
        diameter_mm = float(np.clip(rng.lognormal(np.log(38), 0.45), 15, 120))
        d_px = diameter_mm / spacing
        pattern = str(rng.choice(PATTERNS, p=PATTERN_WEIGHTS))
        faint = rng.random() < 0.25
        density = rng.uniform(0.3, 0.5) if faint else rng.uniform(0.55, 1.0)
        centre = _place(rng, anatomy, d_px / 2, d_px * 0.25, d_px * 1.2)
        if centre is None:
            continue
        patch = render_calcinosis(rng, d_px, pattern, density)
        box = tight_box(patch)
        x0, y0 = _add_patch(lesion_map, patch, centre)
        x1, y1, x2, y2 = box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if (x2 - x1) * (y2 - y1) < 0.5 * (box[2] - box[0]) * (box[3] - box[1]):
            continue  # mostly off the film: leave it out of the labels but it still shows; keep it rare
        found.append({"bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "pattern": pattern,
                      "diameter_mm": round(diameter_mm, 1)})
    return found


def _distractors(rng: np.random.Generator, anatomy: Anatomy, spacing: float, soft_add: np.ndarray,
                 bone_add: np.ndarray) -> list[dict]:
    h, w = soft_add.shape
    out = []
    for kind in DISTRACTORS:
        if rng.random() > {"vascular": 0.35, "tendinitis": 0.35, "osteophyte": 0.3, "bone_island": 0.25,
                           "metal": 0.2}[kind]:
            continue
        if kind == "vascular":
            layer = render_vascular(rng, h, w, spacing) * anatomy.body_mask
            soft_add += layer
        elif kind == "tendinitis":
            d_px = rng.uniform(3, 8) / spacing
            centre = _place(rng, anatomy, d_px, 0, d_px * 1.5)
            if centre is None:
                continue
            layer = render_small_dense(rng, h, w, centre, d_px, rng.uniform(0.6, 1.0))
            soft_add += layer
        elif kind == "bone_island":
            ys, xs = np.nonzero(anatomy.bone_mask[::8, ::8])
            if len(xs) == 0:
                continue
            k = rng.integers(len(xs))
            layer = render_small_dense(rng, h, w, (xs[k] * 8.0, ys[k] * 8.0), rng.uniform(4, 12) / spacing, 0.45)
            bone_add += layer
        elif kind == "osteophyte":
            centre = _place(rng, anatomy, 1, 0, 3 / spacing)
            if centre is None:
                continue
            direction = np.array(centre) - np.array(anatomy.joint_centre)
            layer = render_osteophyte(rng, h, w, centre, direction, rng.uniform(4, 10) / spacing)
            bone_add += layer
        else:
            centre = (rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h)
            layer = render_metal(rng, h, w, centre, spacing)
            soft_add += layer
        box = tight_box(layer, 0.2)
        if box is not None:
            out.append({"kind": kind, "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]),
                                               float(box[3] - box[1])]})
    return out


def _acquire(rng: np.random.Generator, attenuation: np.ndarray, spacing: float) -> np.ndarray:
    """Attenuation -> displayed film in 0..1 (bone bright): exposure, scatter, noise, collimation."""
    h, w = attenuation.shape
    k = rng.uniform(0.9, 1.3)
    transmitted = np.exp(-k * attenuation)
    scatter = cv2.GaussianBlur(transmitted, (0, 0), 25 / spacing / 10) * rng.uniform(0.05, 0.2)
    signal = cv2.GaussianBlur(transmitted, (0, 0), rng.uniform(0.5, 1.3)) + scatter
    photons = rng.uniform(300, 2000)
    signal = signal + rng.normal(0, 1, signal.shape).astype(np.float32) * np.sqrt(signal / photons)
    film = 1.0 - np.clip(signal / (1 + 0.2), 0, 1)  # bone (low transmission) bright
    film = np.clip(film, 0, 1) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.6:  # collimation: unexposed borders are bright
        mask = np.zeros((h, w), bool)
        x1, x2 = int(rng.uniform(0, 0.12) * w), int((1 - rng.uniform(0, 0.12)) * w)
        y1, y2 = int(rng.uniform(0, 0.1) * h), int((1 - rng.uniform(0, 0.1)) * h)
        mask[y1:y2, x1:x2] = True
        film = np.where(mask, film, 0.85 + 0.05 * film)
    if rng.random() < 0.85:  # burned-in lead side marker
        text = "L" if rng.random() < 0.5 else "R"
        scale = max(1.0, max(h, w) / 500)
        org = (int(rng.uniform(0.05, 0.8) * w), int(rng.uniform(0.1, 0.95) * h))
        mark = np.zeros((h, w), np.uint8)  # OpenCV draws text into 8-bit images only
        cv2.putText(mark, text, org, cv2.FONT_HERSHEY_DUPLEX, scale, 255, max(1, int(scale * 2)), cv2.LINE_AA)
        film = np.maximum(film, mark.astype(np.float32) / 255.0)
    return film.astype(np.float32)


def _background(rng: np.random.Generator, files: list[Path], index: int) -> tuple[np.ndarray, float, Anatomy]:
    """A real film as the attenuation base, with body/bone masks estimated from its intensities."""
    from data.readers import read_radiograph

    path = files[int(rng.integers(len(files)))]
    film = read_radiograph(path).image
    h, w = film.shape
    spacing = 300.0 / max(h, w)  # most limb films cover ~25-35 cm
    blur = cv2.GaussianBlur(film, (0, 0), 3)
    body_thr = max(0.08, float(np.percentile(blur, 20)) + 0.05)
    body = blur > body_thr
    inside = blur[body]
    bone_thr = float(np.percentile(inside, 75)) if inside.size else 0.8
    bone = blur > bone_thr
    attenuation = -np.log(np.clip(1.0 - film * 0.95, 1e-3, 1.0))  # invert the display back to attenuation
    ys, xs = np.nonzero(bone)
    centre = (float(xs.mean()), float(ys.mean())) if len(xs) else (w / 2, h / 2)
    anatomy = Anatomy(soft=attenuation, bone=np.zeros_like(attenuation), body_mask=body, bone_mask=bone,
                      joint="real", joint_centre=centre)
    anatomy.source = str(path)  # type: ignore[attr-defined]
    return attenuation, spacing, anatomy


def make_image(seed: int, index: int, size_range: tuple[int, int], backgrounds: list[Path] | None,
               dicom_fraction: float) -> dict[str, Any]:
    """Render film ``index`` of a dataset; returns its pixels, lesions, distractors and metadata."""
    rng = np.random.default_rng([seed, index])
    if backgrounds:
        attenuation, spacing, anatomy = _background(rng, backgrounds, index)
        h, w = attenuation.shape
        joint = "real"
    else:
        joint = str(rng.choice(JOINTS, p=JOINT_WEIGHTS))
        longest = int(rng.integers(size_range[0], size_range[1] + 1))
        aspect = rng.uniform(0.75, 0.95)
        h, w = (longest, int(longest * aspect)) if rng.random() < 0.7 else (int(longest * aspect), longest)
        spacing = FIELD_OF_VIEW_MM[joint] * rng.uniform(0.85, 1.15) / max(h, w)
        anatomy = render_anatomy(rng, h, w, spacing, joint)
        attenuation = anatomy.soft * rng.uniform(0.8, 1.2)
    lesion_map = np.zeros((h, w), np.float32)
    soft_add = np.zeros((h, w), np.float32)
    bone_add = np.zeros((h, w), np.float32)
    lesions = _lesions(rng, anatomy, spacing, lesion_map)
    distractors = _distractors(rng, anatomy, spacing, soft_add, bone_add)
    if backgrounds:
        film = np.clip(1 - np.exp(-(attenuation + 0.8 * (lesion_map + soft_add + bone_add))), 0, 1)
        film = np.clip(film + rng.normal(0, 0.01, film.shape).astype(np.float32), 0, 1)
    else:
        total = attenuation + anatomy.bone + bone_add * (anatomy.bone_mask | (bone_add > 0)) + lesion_map + soft_add
        film = _acquire(rng, total.astype(np.float32), spacing)
    fmt = "dicom" if rng.random() < dicom_fraction else str(rng.choice(FORMATS, p=FORMAT_WEIGHTS))
    return {"film": film.astype(np.float32), "lesions": lesions, "distractors": distractors, "joint": joint,
            "spacing": spacing, "format": fmt, "rng_state": int(rng.integers(2**31)),
            "background": getattr(anatomy, "source", None)}


def _render_and_write(job: tuple) -> dict[str, Any]:
    seed, index, size_range, backgrounds, dicom_fraction, out_dir = job
    item = make_image(seed, index, size_range, backgrounds, dicom_fraction)
    name = write_image(out_dir, index, item, seed)
    h, w = item["film"].shape
    return {"index": index, "file_name": name, "width": w, "height": h, "joint": item["joint"],
            "spacing": item["spacing"], "lesions": item["lesions"], "distractors": item["distractors"],
            "background": item["background"]}


def _patient_ids(seed: int, n: int) -> list[str]:
    """About a third of patients have two films (both sides, or a follow-up)."""
    rng = np.random.default_rng([seed, 10**9])
    ids, patient = [], 0
    for i in range(n):
        if i == 0 or rng.random() > 0.3 or ids.count(ids[-1]) >= 2:
            patient += 1
        ids.append(f"S{seed:04d}-P{patient:05d}")
    return ids


def synthesize(out_dir: str | Path, n: int, seed: int = 0, *, backgrounds: str | Path | None = None,
               workers: int | None = None, dicom_fraction: float = 0.15,
               size_range: tuple[int, int] = (800, 2500)) -> SynthReport:
    """Write ``n`` synthetic films and their COCO annotations to ``out_dir``.

    Args:
        out_dir: output folder (created); ``annotations.json`` and ``images/`` go inside.
        n: number of films.
        seed: dataset seed; the same seed gives byte-identical files.
        backgrounds: folder of the user's normal radiographs to insert lesions into (recursive).
        workers: processes (default: CPU count); the output does not depend on it.
        dicom_fraction: share of films written as DICOM.
        size_range: longest image side in pixels, min and max.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    bg_files = None
    if backgrounds is not None:
        bg_files = sorted(p for p in Path(backgrounds).rglob("*") if p.suffix.lower() in BACKGROUND_EXTENSIONS)
        if not bg_files:
            raise FileNotFoundError(f"{backgrounds}: no .png/.jpg/.tif radiographs found")
    jobs = [(seed, i, tuple(size_range), bg_files, dicom_fraction, out) for i in range(n)]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and n > 1:
        with ProcessPoolExecutor(workers) as pool:
            records = list(pool.map(_render_and_write, jobs, chunksize=1))
    else:
        records = [_render_and_write(j) for j in jobs]

    patients = _patient_ids(seed, n)
    images, annotations = [], []
    for rec, patient in zip(records, patients):
        image_id = rec["index"] + 1
        images.append({"id": image_id, "file_name": rec["file_name"], "width": rec["width"], "height": rec["height"],
                       "patient_id": patient, "joint": rec["joint"],
                       "pixel_spacing_mm": [round(rec["spacing"], 5)] * 2, "distractors": rec["distractors"],
                       **({"background": rec["background"]} if rec["background"] else {})})
        for les in rec["lesions"]:
            x, y, bw, bh = les["bbox"]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0,
                                "attributes": {"pattern": les["pattern"], "diameter_mm": les["diameter_mm"]}})
    coco = {"info": {"description": "calcidet synthetic radiographs", "generator_version": GENERATOR_VERSION,
                     "seed": seed, "n": n},
            "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "calcinosis", "supercategory": "calcification"}]}
    (out / "annotations.json").write_text(json.dumps(coco, indent=1, sort_keys=True))
    return SynthReport(out, n, len(annotations), time.perf_counter() - start)
