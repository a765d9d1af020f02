"""COCO files of ``calcidet detect``: results pycocotools scores, and a dataset review tools import.

    calcidet detect images/ --checkpoint CKPT --output DIR [--gt annotations.json]

- ``detections.json``: COCO *results*, the list ``COCO.loadRes`` takes as it is:
  ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score", "above_threshold"}, ...]``, every box
  down to the score floor (COCOeval needs the low scores).
- ``detections_coco.json``: a COCO dataset (``images``, ``categories``, ``annotations`` with
  ``score``) holding the boxes at the operating threshold, for FiftyOne's and CVAT's COCO importers.

Ids: with ``--gt`` an image's id and ``file_name`` are the ground truth's (matched by path, else by
name as ``calcidet evaluate`` matches them) and category ids are the ground truth's, matched by name;
images not in the ground truth get ids above its largest and are left out of ``detections.json``
(``loadRes`` refuses ids the ground truth lacks). Without ``--gt`` an image's id is 1 + its position
in the sorted list of all names (failed images keep theirs) and categories are 1..K in class order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calcidet.data.coco import CocoFormatError, CocoIndex, load_coco

GroundTruth = tuple[CocoIndex, dict[str, int], list[str]]  # index, class name -> category id, notes


class GroundTruthError(ValueError):
    """A ``--gt`` file that cannot give ids to detect's results."""


@dataclass
class CocoIds:
    """Image and category ids (and names) the COCO files use."""

    images: dict[str, int]  # detect's image name -> image id
    file_names: dict[str, str]  # detect's image name -> file_name in detections_coco.json
    categories: list[dict[str, Any]]  # COCO categories
    category_of: dict[str, int]  # class name -> category id
    in_gt: set[str] | None = None  # names the ground truth has; None: no ground truth given
    notes: list[str] = field(default_factory=list)


def load_ground_truth(path: str | Path, class_names: list[str]) -> GroundTruth:
    """The ``--gt`` file and the category id of each class name, read before any work starts.

    Returns:
        (index, class name -> GT category id, notes).

    Raises:
        GroundTruthError: unreadable or invalid, or a class the ground truth has no category for.
    """
    try:
        index = load_coco(path, check_files=False)
    except (CocoFormatError, OSError) as exc:
        raise GroundTruthError(f"cannot use --gt {path}: {exc}") from exc
    by_name = {name: index.label_to_category[label] for label, name in enumerate(index.class_names, start=1)}
    if len(class_names) == 1 and len(by_name) == 1 and class_names[0] not in by_name:
        # one class each, named differently ("calcification" vs "calcinosis"): the pairing is obvious
        (gt_name, gt_id), = by_name.items()
        return index, {class_names[0]: gt_id}, [f"class {class_names[0]!r} written as the GT's only "
                                                f"category {gt_name!r} (id {gt_id})"]
    missing = [n for n in class_names if n not in by_name]
    if missing:
        raise GroundTruthError(f"--gt {path} has no category named {missing} (its categories: "
                               f"{index.class_names}; the checkpoint's classes: {class_names})")
    return index, {n: by_name[n] for n in class_names}, []


def _match_gt(paths: dict[str, Path], index: CocoIndex) -> tuple[dict[str, int], str]:
    """Detect's names -> GT image ids: the same file first, then by name (``calcidet evaluate``'s rule)."""
    by_path = {im.path.resolve(): im.id for im in index.images}
    ids = {n: by_path[p.resolve()] for n, p in paths.items() if p.resolve() in by_path}
    rule = "same file" if ids else ""
    taken = set(ids.values())
    gt_rest = [im.file_name for im in index.images if im.id not in taken]
    rest = [n for n in paths if n not in ids]
    if rest and gt_rest:
        from calcidet.train.evaluate_cmd import (
            match_names,  # one name-matching rule for detect and evaluate
        )

        by_name, name_rule = match_names(gt_rest, rest)
        id_of = {im.file_name: im.id for im in index.images}
        ids.update({n: id_of[g] for n, g in by_name.items()})
        rule = f"{rule}, then {name_rule}" if rule and by_name else rule or name_rule
    return ids, rule


def assign_ids(paths: dict[str, Path], class_names: list[str],
               ground_truth: GroundTruth | None = None) -> CocoIds:
    """The ids of every image detect saw (``paths``: name -> file), and of the classes.

    Args:
        paths: every image name of the run (failed ones included) and its file.
        class_names: the checkpoint's classes, labels 1..K.
        ground_truth: ``load_ground_truth``'s result, or None.
    """
    names = sorted(paths)
    if ground_truth is None:
        return CocoIds({n: i + 1 for i, n in enumerate(names)}, {n: n for n in names},
                       [{"id": i + 1, "name": n} for i, n in enumerate(class_names)],
                       {n: i + 1 for i, n in enumerate(class_names)})
    index, category_of, notes = ground_truth
    matched, rule = _match_gt(paths, index)
    file_name = {im.id: im.file_name for im in index.images}
    next_id = max(file_name, default=0) + 1
    ids: dict[str, int] = {}
    file_names: dict[str, str] = {}
    for n in names:
        if n in matched:
            ids[n], file_names[n] = matched[n], file_name[matched[n]]
        else:
            ids[n], file_names[n], next_id = next_id, n, next_id + 1
    categories = [{"id": category_of[n], "name": n} for n in class_names]
    notes = [*notes, f"{len(matched)} of {len(names)} images matched to --gt images ({rule or 'none matched'})"]
    missing = len(index.images) - len(set(matched.values()))
    if missing:
        notes.append(f"{missing} --gt images were not in this run")
    return CocoIds(ids, file_names, categories, category_of, set(matched), notes)


def _xywh(box: list[float]) -> list[float]:
    x1, y1, x2, y2 = box
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


def results_list(records: list[dict[str, Any]], ids: CocoIds, threshold: float) -> list[dict[str, Any]]:
    """COCO results of every kept box (``detections.json``); with a GT only of images it has."""
    results = []
    for r in records:
        if ids.in_gt is not None and r["image"] not in ids.in_gt:
            continue
        for box, score, label in zip(r["boxes"], r["scores"], r["labels"], strict=True):
            results.append({"image_id": ids.images[r["image"]], "category_id": ids.category_of[label],
                            "bbox": _xywh(box), "score": round(score, 4), "above_threshold": score >= threshold})
    return results


def coco_dataset(records: list[dict[str, Any]], ids: CocoIds, threshold: float) -> dict[str, Any]:
    """A COCO dataset of the readable images and their boxes at the operating threshold."""
    images, annotations = [], []
    for r in records:
        if r["status"] != "ok":
            continue  # no size known: not an image a viewer can show
        image_id = ids.images[r["image"]]
        images.append({"id": image_id, "file_name": ids.file_names[r["image"]], "width": r["width"],
                       "height": r["height"]})
        for box, score, label in zip(r["boxes"], r["scores"], r["labels"], strict=True):
            if score < threshold:
                continue
            bbox = _xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": ids.category_of[label], "bbox": bbox,
                                "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0, "segmentation": [],
                                "score": round(score, 4)})  # segmentation: importers (Datumaro) expect the key
    return {"info": {"description": f"calcidet detect: boxes scoring >= {threshold:g}"},
            "images": sorted(images, key=lambda im: im["id"]), "categories": ids.categories,
            "annotations": annotations}
