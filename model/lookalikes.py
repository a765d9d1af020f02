"""Which recorded look-alikes a detector flags, and what its false positives lie on.

    calcidet evaluate --gt test/annotations.json --pred results/detections.csv --out report/

calcidet must not flag vascular calcification, calcific tendinitis, osteophytes, bone islands, metal
or burned-in markers. ``calcidet synth`` records each look-alike it inserts, unlabelled, as
``images[].distractors``: ``{"kind": "tendinitis", "bbox": [x, y, w, h]}`` in the film's pixels.
Where the ground truth has them, this module scores them at a few score thresholds:

- per kind: how many look-alikes a false positive lies on ("flagged"), of how many recorded;
- per threshold: the false positives split by the kind they lie on, ``none`` for those on no
  recorded look-alike (on a real film: normal anatomy, or a real finding no one recorded).

A false positive is what the FROC counts as one (``match_lesions``: no lesion found, not a duplicate,
not in an ignore region). It lies on a look-alike when their intersection covers at least
``ON_COVER`` of the smaller of the two boxes: a speck of tendinitis inside a wide box counts, and so
does a tight box on one end of a long vascular track. Each false positive lies on at most one
look-alike, the one it overlaps most by that measure; a look-alike is flagged if any does.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from calcidet.model.metrics import FALSE_POSITIVE, ImageResult, match_lesions

ON_COVER = 0.3  # intersection / smaller box's area at which a false positive lies on a look-alike
NONE = "none"  # false positives on no recorded look-alike


def recorded_lookalikes(coco: dict[str, Any]) -> dict[int, list[tuple[str, np.ndarray]]]:
    """Image id -> its recorded look-alikes as (kind, xyxy box); images without any are left out."""
    found: dict[int, list[tuple[str, np.ndarray]]] = {}
    for im in coco.get("images", []):
        items = []
        for d in im.get("distractors") or []:
            x, y, w, h = (float(v) for v in d["bbox"])
            items.append((str(d.get("kind", "unknown")), np.array([x, y, x + w, y + h])))
        if items:
            found[int(im["id"])] = items
    return found


def _cover_of_smaller(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] intersection over the smaller box's area, boxes xyxy."""
    a, b = np.asarray(a, np.float64)[:, None, :], np.asarray(b, np.float64)[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return w * h / np.clip(np.minimum(area_a, area_b), 1e-9, None)


def lies_on(boxes: np.ndarray, items: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """For each xyxy box, the index into ``items`` of the look-alike it lies on, or -1 for none.

    A box lies on the look-alike it covers most (``_cover_of_smaller``) if that cover reaches ``ON_COVER``.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not items or not len(boxes):
        return np.full(len(boxes), -1)
    cover = _cover_of_smaller(boxes, np.stack([box for _, box in items]))
    best = cover.argmax(axis=1)
    return np.where(cover[np.arange(len(best)), best] >= ON_COVER, best, -1)


def lookalike_report(results: list[ImageResult], lookalikes: dict[int, list[tuple[str, np.ndarray]]],
                     thresholds: dict[str, float], hit_iou: float = 0.3) -> dict[str, Any]:
    """Look-alikes flagged and false positives by what they lie on, at each named score threshold.

    Args:
        results: the evaluated images.
        lookalikes: ``recorded_lookalikes`` of the ground truth (images not in ``results`` are skipped).
        thresholds: name -> score; a detection counts at a threshold when its score is at least it.
        hit_iou: the FROC's hit IoU.

    Returns:
        ``{"thresholds": {...}, "recorded": {kind: n}, "flagged": {name: {kind: n}},
        "false_positives_on": {name: {kind or "none": n}}}``, kinds in order of how many were recorded.
    """
    recorded: Counter[str] = Counter()
    flagged = {name: Counter() for name in thresholds}
    on = {name: Counter() for name in thresholds}
    for r in results:
        items = lookalikes.get(r.image_id, [])
        recorded.update(kind for kind, _ in items)
        scores, lesion = match_lesions(r, hit_iou)
        order = np.argsort(-r.scores, kind="stable")  # match_lesions' order
        fp = lesion == FALSE_POSITIVE
        fp_boxes, fp_scores = np.asarray(r.boxes)[order][fp].reshape(-1, 4), scores[fp]
        on_item = lies_on(fp_boxes, items)
        for name, threshold in thresholds.items():
            counted = on_item[fp_scores >= threshold]
            on[name].update(items[i][0] if i >= 0 else NONE for i in counted)
            flagged[name].update(items[i][0] for i in set(counted.tolist()) - {-1})
    kinds = [kind for kind, _ in recorded.most_common()]
    return {
        "thresholds": dict(thresholds),
        "recorded": {kind: recorded[kind] for kind in kinds},
        "flagged": {name: {kind: flagged[name][kind] for kind in kinds} for name in thresholds},
        "false_positives_on": {name: dict(on[name].most_common()) for name in thresholds},
    }
