"""Read a COCO annotation file into a validated index, and split it by patient.

    from calcidet.data.coco import load_coco, patient_split
    index = load_coco("annotations.json")              # raises CocoFormatError listing every problem
    train, val = patient_split(index, val_fraction=0.2, seed=0)

Boxes come out as ``data.contract`` wants them: float32 ``[N, 4]`` xyxy in original-image pixels
(COCO stores ``[x, y, w, h]``), labels int64 1..K in sorted category-id order. Images without
annotations are kept: they are the negatives. Annotations with ``iscrowd=1`` are ignore regions
(``CocoImage.ignore_boxes``): not a lesion to find, and no false positive where a detection falls in
one. ``calcidet evaluate``, validation and the FCOS losses (``model.ignore_regions``) honour them.

An image may also list ``hard_negatives``: ``[[x, y, w, h], ...]`` regions where a model fired on
no lesion (``calcidet mine``). They are not annotations (COCO tools ignore the key) and change no
loss: crop training cuts more of its windows around them (``data.transforms``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

BOX_TOLERANCE_PX = 1.0  # annotation tools round to whole pixels; beyond this a box is wrong, not rounded
_IMAGE_KEYS = {"id", "file_name", "width", "height", "patient_id", "hard_negatives"}


class CocoFormatError(ValueError):
    """A COCO file that cannot be used as it is; ``problems`` lists every problem, one per line."""

    def __init__(self, json_path: str | Path, problems: list[str]) -> None:
        self.json_path = str(json_path)
        self.problems = list(problems)
        count = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
        super().__init__(f"{count} in {self.json_path}:\n" + "\n".join(self.problems))


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value, compare records by identity
class CocoImage:
    """One radiograph and its boxes (float32 xyxy, original pixels) and labels (int64, 1..K)."""

    id: int
    file_name: str
    path: Path
    width: int
    height: int
    patient_id: str | None
    boxes: np.ndarray
    labels: np.ndarray
    annotation_ids: list[int]
    extra: dict[str, Any] = field(default_factory=dict)
    # iscrowd=1 regions: float32 [M, 4] xyxy and their labels; scored as neither lesion nor background
    ignore_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    ignore_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # mined false-positive regions, float32 [K, 4] xyxy: background a model confuses, sampled more often
    hard_negatives: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))


@dataclass(frozen=True, eq=False)
class CocoIndex:
    """The validated content of one COCO file (or a subset of it), images sorted by id."""

    json_path: Path
    images: list[CocoImage]
    categories: list[dict[str, Any]]
    label_to_category: dict[int, int]
    category_to_label: dict[int, int]
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, ids: Iterable[int]) -> CocoIndex:
        """The images with these ids (order by id); categories and label mapping stay the same.

        Raises:
            KeyError: if an id is not in this index.
        """
        wanted = set(ids)
        unknown = wanted - {im.id for im in self.images}
        if unknown:
            raise KeyError(f"image ids not in {self.json_path}: {sorted(unknown)}")
        return replace(self, images=[im for im in self.images if im.id in wanted])

    def to_coco_dict(self) -> dict[str, Any]:
        """A valid COCO dict of exactly these images and their annotations, ignore regions as ``iscrowd: 1``.

        Used as pycocotools ground truth for a split: ``coco = COCO(); coco.dataset = d;
        coco.createIndex()``. Boxes are written back as ``[x, y, w, h]`` (after clipping).
        """
        images, annotations = [], []
        # ignore regions keep no id of their own: number them after every lesion's
        next_id = 1 + max((i for im in self.images for i in im.annotation_ids), default=0)
        for im in self.images:
            record = {"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
            if im.patient_id is not None:
                record["patient_id"] = im.patient_id
            if len(im.hard_negatives):
                record["hard_negatives"] = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in im.hard_negatives.tolist()]
            images.append(record | im.extra)
            rows = zip(im.annotation_ids, im.boxes.tolist(), im.labels.tolist(), strict=True)
            for ann_id, (x1, y1, x2, y2), label in rows:
                annotations.append({
                    "id": ann_id, "image_id": im.id, "category_id": self.label_to_category[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                })
            for (x1, y1, x2, y2), label in zip(im.ignore_boxes.tolist(), im.ignore_labels.tolist(), strict=True):
                annotations.append({
                    "id": next_id, "image_id": im.id, "category_id": self.label_to_category[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 1,
                })
                next_id += 1
        return {"images": images, "annotations": annotations,
                "categories": [dict(c) for c in self.categories]}


def _is_number(value: Any) -> bool:
    # bool is an int subclass, and NaN/inf would pass every comparison check silently
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


def _read_json(json_path: Path) -> dict[str, Any]:
    try:
        text = json_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CocoFormatError(json_path, [f"{json_path}: cannot read the file: {exc}"]) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CocoFormatError(json_path, [f"{json_path}: invalid JSON: {exc}"]) from exc
    if not isinstance(data, dict):
        raise CocoFormatError(json_path, [f"{json_path}: top level is a {type(data).__name__}, not an object"])
    missing = [f"{json_path}: top-level key '{key}' is missing or not a list"
               for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if missing:
        raise CocoFormatError(json_path, missing)
    return data


def _load_categories(data: dict, where: str, problems: list[str]) -> list[dict[str, Any]]:
    categories: dict[int, dict[str, Any]] = {}
    for i, cat in enumerate(data["categories"]):
        cat_id = cat.get("id") if isinstance(cat, dict) else None
        if not _is_integer(cat_id):
            problems.append(f"{where}: category #{i}: id {cat_id!r} is not an integer")
        elif int(cat_id) in categories:
            problems.append(f"{where}: category {int(cat_id)}: duplicate category id")
        else:
            categories[int(cat_id)] = dict(cat, id=int(cat_id))
    return [categories[k] for k in sorted(categories)]


def _load_image_records(data: dict, where: str, root: Path, check_files: bool,
                        problems: list[str]) -> dict[int, dict[str, Any]]:
    records: dict[int, dict[str, Any]] = {}
    for i, rec in enumerate(data["images"]):
        if not isinstance(rec, dict):
            problems.append(f"{where}: image #{i}: is a {type(rec).__name__}, not an object")
            continue
        file_name = rec.get("file_name")
        name = f"image {rec.get('id')!r} {file_name!r}"
        ok = True
        if not _is_integer(rec.get("id")):
            problems.append(f"{where}: {name}: id is not an integer")
            ok = False
        elif int(rec["id"]) in records:
            first = records[int(rec["id"])]["file_name"]
            problems.append(f"{where}: {name}: duplicate image id (also used by {first!r})")
            ok = False
        if not isinstance(file_name, str) or not file_name:
            problems.append(f"{where}: {name}: file_name is missing or not a string")
            ok = False
        elif check_files and not (root / file_name).is_file():
            problems.append(f"{where}: {name}: image file not found: {root / file_name}")
        for key in ("width", "height"):
            if key not in rec:
                problems.append(f"{where}: {name}: {key} is missing")
                ok = False
            elif not _is_integer(rec[key]) or rec[key] <= 0:
                problems.append(f"{where}: {name}: {key} {rec[key]!r} is not a positive integer")
                ok = False
        if ok:
            records[int(rec["id"])] = rec
    return records


def _check_box(bbox: Any, width: int, height: int) -> tuple[list[float] | None, str | None]:
    """(xyxy box clipped to the image, None) or (None, what is wrong with it)."""
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        return None, f"bbox {bbox!r} is not a list of 4 numbers"
    if not all(_is_number(v) for v in bbox):
        return None, f"bbox {list(bbox)!r} has a non-numeric value"
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None, f"box {list(bbox)!r} has zero or negative size"
    tol = BOX_TOLERANCE_PX
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        return None, f"box {list(bbox)!r} lies outside the {width}x{height} image"
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, float(width)), min(y + h, float(height))
    if x2 <= x1 or y2 <= y1:
        return None, f"box {list(bbox)!r} has zero size once clipped to the {width}x{height} image"
    return [x1, y1, x2, y2], None


def _load_hard_negatives(records: dict[int, dict[str, Any]], where: str, problems: list[str]) -> dict[int, np.ndarray]:
    """Image id -> float32 [K, 4] xyxy of its ``hard_negatives`` (checked like any box)."""
    found = {}
    for image_id, rec in records.items():
        regions = rec.get("hard_negatives", [])
        name = f"{where}: image {image_id!r} {rec['file_name']!r}: hard_negatives"
        if not isinstance(regions, list):
            problems.append(f"{name} is a {type(regions).__name__}, not a list of [x, y, w, h] boxes")
            continue
        boxes = []
        for bbox in regions:
            box, problem = _check_box(bbox, int(rec["width"]), int(rec["height"]))
            if problem:
                problems.append(f"{name}: {problem}")
            else:
                boxes.append(box)
        if boxes:
            found[image_id] = np.asarray(boxes, dtype=np.float32)
    return found


def _load_annotations(
    data: dict, where: str, records: dict[int, dict[str, Any]], broken_images: set[int],
    category_to_label: dict[int, int], problems: list[str],
) -> tuple[dict[int, list[tuple[int, list[float], int]]], dict[int, list[tuple[int, list[float], int]]]]:
    """Valid annotations as image id -> [(annotation id, xyxy box, label)]: lesions, then ignore regions.

    An ignore region (``iscrowd: 1``) is checked like a lesion: a region outside its film is as wrong.
    """
    found: dict[int, list[tuple[int, list[float], int]]] = defaultdict(list)
    crowd: dict[int, list[tuple[int, list[float], int]]] = defaultdict(list)
    seen_ids: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            problems.append(f"{where}: annotation #{i}: is a {type(ann).__name__}, not an object")
            continue
        ann_id, image_id, cat_id = ann.get("id"), ann.get("image_id"), ann.get("category_id")
        rec = records.get(int(image_id)) if _is_integer(image_id) else None
        image = f"image {image_id!r} {rec['file_name']!r}" if rec else f"image {image_id!r}"
        name = f"{where}: annotation {ann_id!r} ({image})"
        ok = _is_integer(ann_id) and int(ann_id) not in seen_ids
        if not _is_integer(ann_id):
            problems.append(f"{name}: id is not an integer")
        elif int(ann_id) in seen_ids:
            problems.append(f"{name}: duplicate annotation id")
        else:
            seen_ids.add(int(ann_id))
        if rec is None and not (_is_integer(image_id) and int(image_id) in broken_images):
            problems.append(f"{name}: refers to an unknown image id {image_id!r}")
        if not _is_integer(cat_id) or int(cat_id) not in category_to_label:
            problems.append(f"{name}: unknown category id {cat_id!r}")
            ok = False
        if rec is None:
            continue
        box, problem = _check_box(ann.get("bbox"), int(rec["width"]), int(rec["height"]))
        if problem:
            problems.append(f"{name}: {problem}")
        elif ok:
            into = crowd if ann.get("iscrowd", 0) == 1 else found
            into[int(image_id)].append((int(ann_id), box, category_to_label[int(cat_id)]))
    return found, crowd


def load_coco(json_path: str | Path, image_root: str | Path | None = None, *,
              check_files: bool = True) -> CocoIndex:
    """Load and validate a COCO detection file.

    Every problem is collected before raising, so one run shows all that needs fixing: unreadable
    or invalid JSON, missing top-level keys, non-numeric or missing ids/width/height/bbox values,
    duplicate image/annotation/category ids, annotations pointing to unknown images or categories,
    boxes of zero or negative size, boxes outside the image (beyond 1 pixel; within it they are
    clipped) and, with ``check_files``, image files that do not exist.

    Args:
        json_path: the COCO file.
        image_root: folder the ``file_name``s are relative to (default: the JSON's folder).
        check_files: also check that every image file exists.

    Returns:
        The index, images sorted by id, negatives included.

    Raises:
        CocoFormatError: listing every problem, one per line.
    """
    json_path = Path(json_path)
    root = Path(image_root) if image_root is not None else json_path.parent
    where = str(json_path)
    data = _read_json(json_path)
    problems: list[str] = []
    categories = _load_categories(data, where, problems)
    category_to_label = {c["id"]: label for label, c in enumerate(categories, start=1)}
    records = _load_image_records(data, where, root, check_files, problems)
    # image records already reported as broken: their annotations add no new problem
    broken_images = {int(r["id"]) for r in data["images"] if isinstance(r, dict)
                     and _is_integer(r.get("id")) and int(r["id"]) not in records}

    found, crowd = _load_annotations(data, where, records, broken_images, category_to_label, problems)
    hard = _load_hard_negatives(records, where, problems)
    if problems:
        raise CocoFormatError(json_path, problems)

    images = []
    for image_id in sorted(records):
        rec = records[image_id]
        anns = found.get(image_id, [])
        patient = rec.get("patient_id")
        images.append(CocoImage(
            id=image_id, file_name=rec["file_name"], path=root / rec["file_name"],
            width=int(rec["width"]), height=int(rec["height"]),
            patient_id=None if patient is None else str(patient),
            boxes=np.asarray([a[1] for a in anns], dtype=np.float32).reshape(-1, 4),
            labels=np.asarray([a[2] for a in anns], dtype=np.int64),
            annotation_ids=[a[0] for a in anns],
            extra={k: v for k, v in rec.items() if k not in _IMAGE_KEYS},
            ignore_boxes=np.asarray([a[1] for a in crowd.get(image_id, [])], dtype=np.float32).reshape(-1, 4),
            ignore_labels=np.asarray([a[2] for a in crowd.get(image_id, [])], dtype=np.int64),
            hard_negatives=hard.get(image_id, np.zeros((0, 4), np.float32)),
        ))
    return CocoIndex(
        json_path=json_path, images=images, categories=categories,
        label_to_category={label: cat for cat, label in category_to_label.items()},
        category_to_label=category_to_label,
        class_names=[str(c.get("name", c["id"])) for c in categories],
    )


def concat_indexes(indexes: list[CocoIndex]) -> CocoIndex:
    """One index of several COCO files (e.g. procedural films and real films with inserted masses).

    Every file must name the same classes in the same order. Image and annotation ids are renumbered
    1..N in file order (ids only need to be unique within the result); ``file_name`` becomes the
    image's path, so the merged index still says where each film is.

    Raises:
        ValueError: no index given, or files whose categories differ (both lists named).
    """
    if not indexes:
        raise ValueError("concat_indexes needs at least one COCO index")
    first = indexes[0]
    images: list[CocoImage] = []
    next_ann = 1
    for index in indexes:
        if index.class_names != first.class_names:
            raise ValueError(f"{index.json_path} has categories {index.class_names}, but {first.json_path} "
                             f"has {first.class_names}: files trained together need the same categories")
        for im in index.images:
            ann_ids = list(range(next_ann, next_ann + len(im.annotation_ids)))
            next_ann += len(ann_ids)
            images.append(replace(im, id=len(images) + 1, file_name=str(im.path), annotation_ids=ann_ids))
    return replace(first, images=images)


def read_class_names(json_path: str | Path) -> list[str]:
    """The class names of a COCO file, in sorted category-id order (label k is name k-1), without loading images.

    This is what sizes a detector's head: category ids may be anything (3 and 7, as labelling tools
    export them); labels are their rank.
    """
    json_path = Path(json_path)
    data = _read_json(json_path)
    problems: list[str] = []
    categories = _load_categories(data, str(json_path), problems)
    if not categories:
        problems.append(f"{json_path}: no categories: a detector needs at least one lesion class")
    if problems:
        raise CocoFormatError(json_path, problems)
    return [str(c.get("name", c["id"])) for c in categories]


def patient_split(index: CocoIndex, val_fraction: float = 0.2,
                  seed: int = 0) -> tuple[CocoIndex, CocoIndex]:
    """Split into (train, val) so that no patient is on both sides.

    Images without ``patient_id`` count as their own patient. Patients are stratified by whether
    any of their images has a lesion, and each stratum gives about ``val_fraction`` of its images
    to val, so both sides keep positives and negatives whenever a stratum has two patients or more.

    Args:
        index: the images to split.
        val_fraction: share of images (not patients) for validation, in (0, 1).
        seed: the same seed gives the same split.

    Returns:
        (train, val) indexes.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    patients: dict[tuple[str, str], list[CocoImage]] = defaultdict(list)
    for im in index.images:
        key = ("patient", im.patient_id) if im.patient_id is not None else ("image", str(im.id))
        patients[key].append(im)
    rng = np.random.default_rng(seed)
    val_ids: list[int] = []
    for positive in (True, False):
        stratum = sorted(k for k, ims in patients.items() if any(len(im.boxes) for im in ims) == positive)
        stratum = [stratum[i] for i in rng.permutation(len(stratum))]
        target = val_fraction * sum(len(patients[k]) for k in stratum)
        chosen, count = [], 0
        for key in stratum:
            if count + len(patients[key]) / 2 < target:  # take it if that brings val closer to target
                chosen.append(key)
                count += len(patients[key])
        if not chosen and len(stratum) >= 2:
            chosen = [min(stratum, key=lambda k: len(patients[k]))]
        elif len(chosen) == len(stratum) >= 2:
            chosen.pop()
        val_ids += [im.id for key in chosen for im in patients[key]]
    val_set = set(val_ids)
    return index.subset(im.id for im in index.images if im.id not in val_set), index.subset(val_set)
