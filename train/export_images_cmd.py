"""``calcidet export-images``: films as PNGs at full size, with a COCO skeleton, for labelling tools.

    calcidet export-images scans/ --output to_label/
    calcidet export-images a/ b/ x.dcm --output to_label/ --bits 16 --categories calcinosis,vascular

Each film is written as ``calcidet`` sees it (``data.readers.read_radiograph``: VOI LUT/window applied,
MONOCHROME1 inverted, bone bright) at its full size, so boxes drawn on the PNGs are in the film's own
pixels. ``DIR/annotations.json`` lists the images (``file_name`` relative to DIR, size, and from
DICOM tags ``patient_id`` and the study/series/SOP instance UIDs; pixel spacing where the file gives
it) with no annotations, for CVAT or Label Studio to import. ``calcidet convert`` brings the labels
back to COCO and carries these fields over.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
import pydicom

from calcidet.data.folders import collect_inputs
from calcidet.data.readers import IMAGE_EXTENSIONS, Radiograph, RadiographReadError, read_radiograph
from calcidet.train.output_files import atomic_write_text, safe_output_path

log = logging.getLogger("calcidet")
# DICOM keyword -> COCO image field; patient_id is what data.coco.patient_split groups by.
DICOM_FIELDS = {"PatientID": "patient_id", "StudyInstanceUID": "study_instance_uid",
                "SeriesInstanceUID": "series_instance_uid", "SOPInstanceUID": "sop_instance_uid"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="calcidet export-images", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="folders (searched recursively) or files")
    p.add_argument("--output", required=True, help="output folder DIR (PNGs and annotations.json)")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8,
                   help="PNG bit depth: 8 for any tool (default), 16 keeps calcidet's full precision")
    p.add_argument("--categories", default="calcinosis",
                   help="comma-separated class names, category ids 1..K in this order (default: calcinosis)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a DIR/annotations.json that already holds annotations")
    args = p.parse_args(argv)
    args.categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    if not args.categories or len(set(args.categories)) != len(args.categories):
        p.error("--categories needs one or more distinct names")
    return args


def quantize(image: np.ndarray, bits: int) -> np.ndarray:
    """A float 0..1 image as uint8 or uint16 (0..2**bits - 1), rounded to nearest."""
    top = 2**bits - 1
    return np.rint(image * top).astype(np.uint8 if bits == 8 else np.uint16)


def dicom_fields(path: str | Path) -> dict[str, str]:
    """``patient_id`` and the instance UIDs of a DICOM file, those that are present and non-empty."""
    try:  # read_radiograph accepted the file, so force is safe (a DICOM without preamble)
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=list(DICOM_FIELDS))
        values = {key: str(ds.get(tag) or "").strip() for tag, key in DICOM_FIELDS.items()}
    except Exception as exc:  # noqa: BLE001 - the film is already read; only its identifiers are lost
        log.warning("%s: cannot read patient and UID tags: %s", path, exc)
        return {}
    return {key: value for key, value in values.items() if value}


def png_path(out: Path, name: str, taken: set[Path]) -> Path:
    """Where film ``name`` goes: its relative path with ``.png`` for its image extension, inside ``out``.

    ``knee.png`` and ``knee.dcm`` in one folder would both become ``knee.png``: the later one keeps
    its extension (``knee.dcm.png``), so no film overwrites another.
    """
    suffix = PurePosixPath(name).suffix
    stem = name[: -len(suffix)] if suffix.lower() in IMAGE_EXTENSIONS else name
    candidates = itertools.chain((stem, name), (f"{name}-{k}" for k in itertools.count(2)))
    path = next(p for p in (safe_output_path(out, c, ".png") for c in candidates) if p not in taken)
    taken.add(path)
    return path


def image_record(image_id: int, file_name: str, film: Radiograph, source: str) -> dict[str, Any]:
    """The COCO image record of an exported film (``source``: its name among the inputs)."""
    height, width = film.original_size
    record: dict[str, Any] = {"id": image_id, "file_name": file_name, "width": width, "height": height}
    if film.source_format == "dicom":
        record |= dicom_fields(film.path)
    if film.pixel_spacing_mm is not None:
        record["pixel_spacing_mm"] = list(film.pixel_spacing_mm)
        record["spacing_source"] = film.spacing_source
    record["source"] = source
    return record


def _holds_annotations(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("annotations"))
    except (OSError, ValueError, AttributeError):
        return False  # missing or not ours: nothing labelled to protect


def main(argv: list[str] | None = None) -> int:
    """Run ``calcidet export-images``; 0 when any film was written, 1 when none could be, 2 bad arguments."""
    args = parse_args(argv)
    out = Path(args.output)
    try:
        files, names = collect_inputs(args.inputs, exclude=out)
    except FileNotFoundError as exc:
        print(f"calcidet export-images: {exc}", file=sys.stderr)
        return 2
    if not files:
        print(f"calcidet export-images: no radiographs found under {', '.join(args.inputs)}", file=sys.stderr)
        return 2
    coco_path = out / "annotations.json"
    if _holds_annotations(coco_path) and not args.overwrite:
        print(f"calcidet export-images: {coco_path} already holds annotations (labelled work?); "
              "choose another --output or pass --overwrite", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    images, taken, skipped = [], set(), 0
    for path, name in zip(files, names, strict=True):
        try:
            film = read_radiograph(path)
        except RadiographReadError as exc:
            log.warning("export-images: skipped %s: %s", name, exc.reason)
            skipped += 1
            continue
        target = png_path(out, name, taken)
        target.parent.mkdir(parents=True, exist_ok=True)
        ok, png = cv2.imencode(".png", quantize(film.image, args.bits))
        if not ok:
            raise OSError(f"OpenCV could not encode {name} as PNG")
        target.write_bytes(png.tobytes())
        images.append(image_record(len(images) + 1, target.relative_to(out).as_posix(), film, name))
    if not images:
        print(f"calcidet export-images: none of the {len(files)} files could be read; nothing written",
              file=sys.stderr)
        return 1
    coco = {"images": images, "annotations": [],
            "categories": [{"id": k, "name": n} for k, n in enumerate(args.categories, start=1)]}
    atomic_write_text(coco_path, json.dumps(coco, indent=1))
    print(f"calcidet export-images: {len(images)} films written as {args.bits}-bit PNGs to {out}"
          f"{f' ({skipped} skipped)' if skipped else ''}; COCO skeleton in {coco_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
