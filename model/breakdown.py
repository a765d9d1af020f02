"""Detection metrics broken down by ground-truth fields (joint, view, lesion size, ...) and by class.

    calcidet evaluate --gt test/annotations.json --pred results/detections.csv --out report/ --by joint size

A field is looked up first among the COCO ``images[]`` records, then among ``annotations[]`` and
their ``attributes`` (dotted paths reach into nested dicts: ``attributes.pattern``), then among the
derived fields below. A value missing from a record (or null) makes the group ``(missing)``.

- An *image field* splits the images: each group gets the whole of ``detection_metrics`` (AP, FROC,
  AUROC) on its own images. Derived: ``format`` (file extension of ``file_name``) and ``source``
  (``real`` when the image has a ``background`` key, as ``calcidet synth --backgrounds`` writes, else
  ``procedural``).
- A *lesion field* splits the lesions, not the images, so only the FROC splits cleanly: false
  positives belong to no lesion, so every group counts them over all images; a detection finds a
  lesion by the same rule as the main FROC (``match_lesions``), and a detection that finds another
  group's lesion is neither a hit nor a false positive. With one group this is the main FROC.
  Derived: ``size`` (``SIZE_BUCKETS``) and ``category`` (the class name).

``per_class_metrics`` scores each class alone: its lesions against its own detections only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any, Literal

import numpy as np

from calcidet.model.metrics import (
    FALSE_POSITIVE,
    FROC_RATES,
    ImageResult,
    detection_metrics,
    froc_from_hits,
    match_lesions,
)

# Lesion size as max(box w, h) / min(film W, H), the share of the film's short side: name, upper bound.
SIZE_BUCKETS: tuple[tuple[str, float], ...] = (("small", 0.08), ("medium", 0.15), ("large", math.inf))
MISSING = "(missing)"
IMAGE_DERIVED = ("format", "source")
LESION_DERIVED = ("size", "category")
DEFAULT_MAX_VALUES = 20  # more groups than this is an identifier, not a stratum
# Image keys that identify or measure a film rather than sort it into strata (background: its path).
_NOT_STRATA = {"id", "file_name", "width", "height", "patient_id", "license", "coco_url", "flickr_url",
               "date_captured", "background"}


@dataclass(frozen=True)
class GroundTruthFields:
    """The raw COCO records behind a list of ``ImageResult``s.

    ``lesions[image_id][j]`` is the annotation record of ``gt_boxes[j]`` of that image's result.
    """

    images: dict[int, dict[str, Any]]
    lesions: dict[int, list[dict[str, Any]]]
    class_names: list[str]


def field_value(record: dict[str, Any], path: str) -> str:
    """The group name of ``record``'s value at the dotted ``path`` (``MISSING`` if absent or null)."""
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return MISSING
        value = value[key]
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)  # numbers as JSON writes them; lists/dicts stay distinct


def _has(record: dict[str, Any], path: str) -> bool:
    return field_value(record, path) != MISSING


def _lesion_path(fields: GroundTruthFields, name: str) -> str | None:
    """Where annotation field ``name`` lives: itself, or inside ``attributes`` (``pattern``)."""
    records = [a for anns in fields.lesions.values() for a in anns]
    for path in (name, f"attributes.{name}"):
        if any(_has(a, path) for a in records):
            return path
    return None


def field_level(fields: GroundTruthFields, name: str) -> Literal["image", "lesion"] | None:
    """Whether ``name`` splits images or lesions; None if no record has it and it is not derived."""
    if any(_has(rec, name) for rec in fields.images.values()):
        return "image"
    if _lesion_path(fields, name) is not None:
        return "lesion"
    return "image" if name in IMAGE_DERIVED else "lesion" if name in LESION_DERIVED else None


def image_values(fields: GroundTruthFields, name: str) -> dict[int, str]:
    """Each image's group for ``name``: the field itself, or derived when no image has the field."""
    records = fields.images
    if name not in IMAGE_DERIVED or any(_has(rec, name) for rec in records.values()):
        return {i: field_value(rec, name) for i, rec in records.items()}
    if name == "format":
        return {i: PurePosixPath(str(rec["file_name"])).suffix.lower().lstrip(".") or MISSING
                for i, rec in records.items()}
    return {i: "real" if "background" in rec else "procedural" for i, rec in records.items()}


def size_bucket(box: np.ndarray, width: float, height: float) -> str:
    """``SIZE_BUCKETS`` name of an xyxy box on a ``width`` x ``height`` film."""
    share = max(box[2] - box[0], box[3] - box[1]) / min(width, height)
    return next(name for name, bound in SIZE_BUCKETS if share < bound)


def _lesion_values(result: ImageResult, fields: GroundTruthFields, name: str, path: str | None) -> list[str]:
    image = fields.images[result.image_id]
    if path is not None:
        return [field_value(a, path) for a in fields.lesions[result.image_id]]
    if name == "size":
        return [size_bucket(b, image["width"], image["height"]) for b in result.gt_boxes]
    labels = result.gt_labels if result.gt_labels is not None else np.ones(len(result.gt_boxes), np.int64)
    return [fields.class_names[int(k) - 1] for k in labels]


def _order(values: set[str], name: str) -> list[str]:
    if name == "size":
        return [b for b, _ in SIZE_BUCKETS if b in values]
    return sorted(values - {MISSING}) + ([MISSING] if MISSING in values else [])


def image_breakdown(results: list[ImageResult], fields: GroundTruthFields, name: str,
                    hit_iou: float = 0.3) -> dict[str, dict[str, float]]:
    """``detection_metrics`` of each group of images, plus ``n_images`` and ``n_lesions``."""
    values = image_values(fields, name)
    groups: dict[str, list[ImageResult]] = {}
    for r in results:
        groups.setdefault(values[r.image_id], []).append(r)
    return {value: {"n_images": len(groups[value]), "n_lesions": sum(len(r.gt_boxes) for r in groups[value]),
                    **detection_metrics(groups[value], hit_iou)}
            for value in _order(set(groups), name)}


def lesion_breakdown(results: list[ImageResult], fields: GroundTruthFields, name: str,
                     hit_iou: float = 0.3) -> dict[str, dict[str, float]]:
    """FROC sensitivities of each group of lesions, false positives counted over all images.

    Returns:
        ``{value: {"n_images", "n_lesions", "froc_sens@Xfp"..., "froc_cpm"}}``; ``n_images`` is the
        number of images holding a lesion of the group.
    """
    path = _lesion_path(fields, name)
    matched = [(*match_lesions(r, hit_iou), _lesion_values(r, fields, name, path)) for r in results]
    out = {}
    for value in _order({v for _, _, values in matched for v in values}, name):
        hits = []
        for scores, lesion, values in matched:
            mine = np.asarray([v == value for v in values], dtype=bool)
            finds_mine = np.zeros(len(lesion), dtype=bool)
            finds_mine[lesion >= 0] = mine[lesion[lesion >= 0]]
            # as _hits codes them: 1 hit, 0 false positive, -1 ignored (duplicate, ignore region, another group's lesion)
            kind = np.where(lesion == FALSE_POSITIVE, 0, np.where(finds_mine, 1, -1))
            hits.append((scores, kind.astype(np.int8), int(mine.sum())))
        curve = froc_from_hits(hits, FROC_RATES)
        out[value] = {"n_images": sum(n > 0 for _, _, n in hits), "n_lesions": curve.num_lesions,
                      **{f"froc_sens@{rate:g}fp": sens for rate, sens in curve.at_rates.items()},
                      "froc_cpm": curve.cpm}
    return out


def breakdown(results: list[ImageResult], fields: GroundTruthFields, names: list[str],
              hit_iou: float = 0.3) -> dict[str, dict[str, dict[str, float]]]:
    """``{field: {value: metrics}}`` for each of ``names``, image or lesion fields alike.

    Raises:
        KeyError: naming the fields that no record has and that are not derived.
    """
    levels = {name: field_level(fields, name) for name in names}
    unknown = [name for name, level in levels.items() if level is None]
    if unknown:
        raise KeyError(f"no image or annotation in the ground truth has the field(s) {unknown}")
    return {name: (image_breakdown if levels[name] == "image" else lesion_breakdown)(results, fields, name, hit_iou)
            for name in names}


def default_fields(fields: GroundTruthFields) -> list[str]:
    """``size`` (when there are lesions) and every image field that sorts the images into 2..20 strata.

    Identifiers and measurements (``_NOT_STRATA``, ``*_id``, ``*spacing*``) and list values are left out,
    and so is a field whose every image has its own value.
    """
    records = list(fields.images.values())
    names = ["size"] if any(fields.lesions.values()) else []
    candidates = dict.fromkeys(p for rec in records for p in _scalar_paths(rec)) | dict.fromkeys(IMAGE_DERIVED)
    for path in candidates:
        if path in _NOT_STRATA or path.endswith("_id") or "spacing" in path:
            continue
        values = set(image_values(fields, path).values())
        if 2 <= len(values) <= min(DEFAULT_MAX_VALUES, len(records) - 1):
            names.append(path)
    return names


def _scalar_paths(record: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in record.items():
        if isinstance(value, dict):
            paths += _scalar_paths(value, f"{prefix}{key}.")
        elif not isinstance(value, list):
            paths.append(prefix + key)
    return paths


def per_class_metrics(results: list[ImageResult], class_names: list[str],
                      hit_iou: float = 0.3) -> dict[str, dict[str, float]]:
    """Each class scored alone: its lesions against detections of that class only.

    Returns:
        ``{class name: {"n_lesions", "map", "map_50", "froc_sens@Xfp"..., "froc_cpm"}}``, the FROC
        counting that class's false positives over all images.
    """
    out = {}
    for label, name in enumerate(class_names, start=1):
        only = [_only_label(r, label) for r in results]
        metrics = detection_metrics(only, hit_iou)
        out[name] = {"n_lesions": sum(len(r.gt_boxes) for r in only),
                     **{k: v for k, v in metrics.items() if k != "auroc"}}
    return out


def _only_label(result: ImageResult, label: int) -> ImageResult:
    gt = result.gt_labels if result.gt_labels is not None else np.ones(len(result.gt_boxes), np.int64)
    det = result.labels if result.labels is not None else np.ones(len(result.boxes), np.int64)
    only = replace(result, gt_boxes=result.gt_boxes[gt == label], gt_labels=gt[gt == label],
                   boxes=result.boxes[det == label], scores=result.scores[det == label], labels=det[det == label])
    if result.ignore_boxes is None:
        return only
    ign = result.ignore_labels if result.ignore_labels is not None else np.ones(len(result.ignore_boxes), np.int64)
    return replace(only, ignore_boxes=result.ignore_boxes[ign == label], ignore_labels=ign[ign == label])


def ground_truth_fields(coco: dict[str, Any], image_ids: list[int], annotation_ids: dict[int, list[int]],
                        class_names: list[str]) -> GroundTruthFields:
    """``GroundTruthFields`` from a parsed (already validated) COCO dict.

    Args:
        coco: the COCO JSON as parsed.
        image_ids: the images to keep.
        annotation_ids: per image, the annotation ids in the order of its ``gt_boxes``.
        class_names: label k is ``class_names[k - 1]``.
    """
    images = {int(rec["id"]): rec for rec in coco["images"]}
    anns = {int(a["id"]): a for a in coco["annotations"]}
    return GroundTruthFields(images={i: images[i] for i in image_ids},
                             lesions={i: [anns[a] for a in annotation_ids.get(i, [])] for i in image_ids},
                             class_names=list(class_names))
