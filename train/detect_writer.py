"""The final files of ``calcidet detect``, written from its journal at the end of a run.

    calcidet detect INPUT... --checkpoint CKPT --output DIR

While it runs, ``calcidet detect`` appends results to a journal (``train.detect_journal``); at the
end the journal becomes the final files, each written to a temporary file and renamed over the old one
(``train.output_files``), so no reader ever sees half a file; ``run.json`` is removed first and written
last, so its presence means the other files are complete. Rows are sorted by image name, so a resumed
run writes the same files as an uninterrupted one. Every box down to the score floor is kept; the
operating threshold marks some of them:

- ``detections.csv``: one row per box, in original-image pixels (``data.contract``), with
  ``above_threshold`` (``true``/``false``: the box scores at least the operating threshold);
- ``images.csv``: one row per image found, failed ones included, with the reason, and its ``scope``
  (``in_scope``, ``out_of_scope`` or ``unknown``; see ``data.scope``) with ``scope_reason``;
  ``num_detections`` counts boxes at the operating threshold, ``max_confidence`` is over all boxes;
- ``detections.json`` and ``detections_coco.json``: COCO results and a COCO dataset
  (``train.detect_coco``).

A write that fails (a full disk) raises ``OutputWriteError`` naming the file; no partial file is left.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from calcidet.train.detect_coco import CocoIds, coco_dataset, results_list
from calcidet.train.output_files import OutputWriteError, atomic_write_text

FINAL_FILES = ("detections.csv", "images.csv", "detections.json", "detections_coco.json", "run.json")
DETECTION_COLUMNS = ["image", "x_min", "y_min", "x_max", "y_max", "confidence", "label", "width_mm", "height_mm",
                     "above_threshold"]
IMAGE_COLUMNS = ["image", "status", "reason", "width", "height", "pixel_spacing_row_mm", "pixel_spacing_col_mm",
                 "spacing_source", "format", "num_detections", "max_confidence", "scope", "scope_reason"]


def package_versions() -> dict[str, str]:
    """Versions that shape the results, for run.json."""
    out = {"python": sys.version.split()[0]}
    for pkg in ("calcidet", "torch", "torchvision", "pytorch-lightning"):
        try:
            out[pkg.replace("-", "_")] = version(pkg)
        except PackageNotFoundError:
            out[pkg.replace("-", "_")] = "unknown"
    return out


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_final_files(records: list[dict[str, Any]], out_dir: Path, threshold: float, ids: CocoIds) -> dict[str, int]:
    """Write ``detections.csv``, ``images.csv``, ``detections.json`` and ``detections_coco.json``.

    ``run.json`` is removed first (the caller writes it last). ``threshold`` is the operating
    threshold, ``ids`` the COCO ids (``train.detect_coco.assign_ids``).

    Returns:
        counts of images ``ok`` and ``error``, of ``out_of_scope`` images, of ``detections`` at the
        threshold and of all ``boxes`` kept.

    Raises:
        OutputWriteError: a file could not be written.
    """
    try:
        (out_dir / "run.json").unlink(missing_ok=True)  # its presence says the set is complete
    except OSError as exc:
        raise OutputWriteError(out_dir / "run.json", exc) from exc
    records = sorted(records, key=lambda r: r["image"])
    det_csv, img_csv = io.StringIO(), io.StringIO()
    det_rows, img_rows = csv.writer(det_csv, lineterminator="\n"), csv.writer(img_csv, lineterminator="\n")
    det_rows.writerow(DETECTION_COLUMNS)
    img_rows.writerow(IMAGE_COLUMNS)
    counts = {"ok": 0, "error": 0, "out_of_scope": 0, "detections": 0, "boxes": 0}
    for r in records:
        counts[r["status"]] += 1
        counts["out_of_scope"] += r["scope"] == "out_of_scope"
        above = [s >= threshold for s in r["scores"]]
        counts["detections"] += sum(above)
        counts["boxes"] += len(above)
        row_mm, col_mm = r["pixel_spacing_mm"] or (None, None)
        for (x1, y1, x2, y2), score, label, hit in zip(r["boxes"], r["scores"], r["labels"], above, strict=True):
            w_mm = (x2 - x1) * col_mm if col_mm else None
            h_mm = (y2 - y1) * row_mm if row_mm else None
            det_rows.writerow([r["image"], _fmt(x1, 2), _fmt(y1, 2), _fmt(x2, 2), _fmt(y2, 2), _fmt(score, 4),
                               label, _fmt(w_mm, 2), _fmt(h_mm, 2), "true" if hit else "false"])
        img_rows.writerow([
            r["image"], r["status"], r["reason"], r["width"] or "", r["height"] or "",
            _fmt(row_mm, 6), _fmt(col_mm, 6), r["spacing_source"] or "", r["format"] or "",
            sum(above), _fmt(max(r["scores"]) if r["scores"] else None, 4),
            r["scope"], r["scope_reason"],
        ])
    atomic_write_text(out_dir / "detections.csv", det_csv.getvalue())
    atomic_write_text(out_dir / "images.csv", img_csv.getvalue())
    atomic_write_text(out_dir / "detections.json", json.dumps(results_list(records, ids, threshold)))
    atomic_write_text(out_dir / "detections_coco.json", json.dumps(coco_dataset(records, ids, threshold)))
    return counts
