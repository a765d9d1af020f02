"""Contact sheet of a COCO dataset with its boxes drawn: see at a glance what the labels say.

    python -c "from calcidet.data.preview import write_contact_sheet; write_contact_sheet('synth/', 'sheet.png')"
    calcidet synth --out synth/ --n 48 --preview synth/preview.png

Labelled lesions are drawn as solid green boxes with their pattern; the synthetic generator's
unlabelled look-alikes (``images[].distractors``) as thin dashed orange boxes with their kind.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calcidet.data.readers import RadiographReadError, read_radiograph

log = logging.getLogger("calcidet")
LESION, LOOKALIKE, TEXT = (60, 220, 60), (0, 150, 255), (255, 255, 120)  # BGR


def _dashed_rect(img: np.ndarray, p1: tuple[int, int], p2: tuple[int, int], colour: tuple, dash: int = 4) -> None:
    (x1, y1), (x2, y2) = p1, p2
    for a, b in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(b[0] - a[0]), abs(b[1] - a[1]), 1)
        for t in range(0, length, 2 * dash):
            s, e = t / length, min(t + dash, length) / length
            cv2.line(img, (round(a[0] + (b[0] - a[0]) * s), round(a[1] + (b[1] - a[1]) * s)),
                     (round(a[0] + (b[0] - a[0]) * e), round(a[1] + (b[1] - a[1]) * e)), colour, 1)


def _items_from_coco(path: Path) -> list[dict[str, Any]]:
    json_path = path / "annotations.json" if path.is_dir() else path
    coco = json.loads(json_path.read_text())
    boxes: dict[int, list[dict]] = {}
    for ann in coco.get("annotations", []):
        boxes.setdefault(ann["image_id"], []).append(ann)
    return [{"path": json_path.parent / im["file_name"], "title": f"{im['id']} {im.get('joint', '')} {im.get('view', '')}",
             "boxes": [a["bbox"] for a in boxes.get(im["id"], [])],
             "labels": [a.get("attributes", {}).get("pattern", "") for a in boxes.get(im["id"], [])],
             "distractors": im.get("distractors", [])} for im in coco["images"]]


def _tile(item: dict[str, Any], tile: int, show_distractors: bool) -> np.ndarray:
    cell = np.full((tile, tile, 3), 24, np.uint8)
    try:
        film = item["image"] if "image" in item else read_radiograph(item["path"]).image
    except RadiographReadError as exc:
        cv2.putText(cell, "unreadable", (6, tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1, cv2.LINE_AA)
        log.warning("preview: %s", exc)
        return cell
    scale = tile / max(film.shape)
    small = cv2.resize(film, (max(1, round(film.shape[1] * scale)), max(1, round(film.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)
    oy, ox = (tile - small.shape[0]) // 2, (tile - small.shape[1]) // 2
    cell[oy:oy + small.shape[0], ox:ox + small.shape[1]] = cv2.cvtColor(
        np.round(np.clip(small, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)

    def corners(b: Sequence[float]) -> tuple[tuple[int, int], tuple[int, int]]:
        x, y, w, h = b
        return (round(x * scale) + ox, round(y * scale) + oy), (round((x + w) * scale) + ox, round((y + h) * scale) + oy)

    if show_distractors:
        for d in item.get("distractors", []):
            p1, p2 = corners(d["bbox"])
            _dashed_rect(cell, p1, p2, LOOKALIKE)
            cv2.putText(cell, d["kind"][:4], (p1[0], max(p1[1] - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, LOOKALIKE, 1,
                        cv2.LINE_AA)
    labels = item.get("labels") or [""] * len(item.get("boxes", []))
    for b, label in zip(item.get("boxes", []), labels):
        p1, p2 = corners(b)
        cv2.rectangle(cell, p1, p2, LESION, 2)
        cv2.putText(cell, label, (p1[0], max(p1[1] - 3, 9)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, LESION, 1, cv2.LINE_AA)
    title = item.get("title") or Path(str(item.get("path", ""))).name
    cv2.putText(cell, title, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, TEXT, 1, cv2.LINE_AA)
    return cell


def write_contact_sheet(dataset: str | Path | Sequence[dict[str, Any]], out_png: str | Path, max_images: int = 24,
                        columns: int = 6, tile: int = 320, show_distractors: bool = True) -> Path:
    """Draw films in a grid with their boxes and save it as a PNG.

    Args:
        dataset: a COCO dataset folder (``annotations.json`` inside), an annotations file, or items:
            dicts with ``path`` (or ``image``: float array 0..1), ``boxes`` (COCO xywh, original pixels),
            and optionally ``labels``, ``distractors`` (``{"kind", "bbox"}``) and ``title``.
        out_png: where to write the sheet.
        max_images: films drawn (the first ones).
        columns: tiles per row; tile: tile size in px.
        show_distractors: draw the unlabelled look-alikes too.

    Returns:
        ``out_png`` as a Path.
    """
    items = _items_from_coco(Path(dataset)) if isinstance(dataset, str | Path) else list(dataset)
    items = items[:max_images]
    rows = max(1, -(-len(items) // columns))
    legend = 26
    sheet = np.full((rows * tile + legend, columns * tile, 3), 16, np.uint8)
    for k, item in enumerate(items):
        r, c = divmod(k, columns)
        sheet[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = _tile(item, tile, show_distractors)
    y = rows * tile + legend // 2
    cv2.rectangle(sheet, (8, y - 6), (28, y + 6), LESION, 2)
    cv2.putText(sheet, "calcinosis (labelled)", (36, y + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, LESION, 1, cv2.LINE_AA)
    if show_distractors:
        _dashed_rect(sheet, (230, y - 6), (250, y + 6), LOOKALIKE, 3)
        cv2.putText(sheet, "look-alike, not labelled (vasc/tend/oste/bone/meta/mark/rule)", (258, y + 5), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, LOOKALIKE, 1, cv2.LINE_AA)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), sheet):
        raise OSError(f"could not write {out}")
    return out
