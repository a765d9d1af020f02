"""Contact sheet of a COCO dataset with boxes drawn: a quick look at what the labels say.

Lesions (annotations) are drawn in green with their confidence or pattern; look-alikes recorded by the
synthetic generator (``images[].distractors``, never labels) in thin orange.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from data.readers import RadiographReadError, read_radiograph


def write_contact_sheet(dataset_dir: str | Path, out_png: str | Path, max_images: int = 24, columns: int = 6,
                        tile: int = 320, show_distractors: bool = True) -> Path:
    """Draw up to ``max_images`` films of ``dataset_dir/annotations.json`` in a grid and save a PNG."""
    root = Path(dataset_dir)
    coco = json.loads((root / "annotations.json").read_text())
    by_image: dict[int, list] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    images = coco["images"][:max_images]
    rows = max(1, (len(images) + columns - 1) // columns)
    sheet = np.full((rows * tile, columns * tile, 3), 32, np.uint8)
    for k, rec in enumerate(images):
        try:
            film = read_radiograph(root / rec["file_name"]).image
        except RadiographReadError:
            continue
        scale = tile / max(film.shape)
        small = cv2.resize(film, (max(1, int(film.shape[1] * scale)), max(1, int(film.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        cell = cv2.cvtColor((small * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        if show_distractors:
            for d in rec.get("distractors", []):
                x, y, w, h = (np.array(d["bbox"]) * scale).astype(int)
                cv2.rectangle(cell, (x, y), (x + w, y + h), (0, 140, 255), 1)
        for ann in by_image.get(rec["id"], []):
            x, y, w, h = (np.array(ann["bbox"]) * scale).astype(int)
            cv2.rectangle(cell, (x, y), (x + w, y + h), (0, 230, 0), 2)
            label = ann.get("attributes", {}).get("pattern", "")
            cv2.putText(cell, label, (x, max(10, y - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 230, 0), 1, cv2.LINE_AA)
        caption = f"{rec['id']} {rec.get('joint', '')} {Path(rec['file_name']).suffix}"
        cv2.putText(cell, caption, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        r, c = divmod(k, columns)
        sheet[r * tile:r * tile + cell.shape[0], c * tile:c * tile + cell.shape[1]] = cell
    legend = "green: calcinosis (labelled)   orange: look-alikes (not labelled)"
    cv2.putText(sheet, legend, (6, rows * tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), sheet)
    return out
