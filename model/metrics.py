"""Detection metrics shared by validation, test and ``calcidet evaluate``.

- COCO AP (IoU 0.50:0.95) and AP50, computed by pycocotools' COCOeval (not a hand-written AP).
- Lesion-level FROC: sensitivity at 1/8, 1/4, 1/2, 1, 2, 4, 8 false positives per image, counted
  over *all* images, negatives included; CPM is their mean. A detection hits a lesion when their IoU
  is at least ``hit_iou`` (0.3 by default: cloud-like masses have fuzzy edges, so a loose box around
  the right mass is a correct finding); each lesion is found once, and further detections of an
  already-found lesion are neither hits nor false positives (the LUNA16 convention).
- Image-level AUROC: an image's score is its highest detection score (0 without detections); it is
  positive when it holds at least one lesion.
- Ignore regions (COCO ``iscrowd: 1``): a detection that finds no lesion and lies at least half
  (``IGNORE_COVER``) inside an ignore region is neither a hit nor a false positive, and does not
  count towards its image's score; the region itself is no lesion to find. pycocotools treats the
  regions as its crowd annotations for AP.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics.functional.classification import binary_auroc
from torchvision.ops import box_iou

FROC_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# Share of a detection's area inside an ignore region that makes it ignored. pycocotools matches
# detections to crowd regions by this same intersection-over-detection-area, at its IoU threshold.
IGNORE_COVER = 0.5


@dataclass
class ImageResult:
    """Ground truth and detections of one image, boxes xyxy in the same pixels."""

    image_id: int
    gt_boxes: np.ndarray  # float [G, 4]
    boxes: np.ndarray  # float [D, 4]
    scores: np.ndarray  # float [D]
    gt_labels: np.ndarray | None = None  # int [G]; None = all 1
    labels: np.ndarray | None = None  # int [D]; None = all 1
    ignore_boxes: np.ndarray | None = None  # float [I, 4], iscrowd regions; None = none
    ignore_labels: np.ndarray | None = None  # int [I]; None = all 1


@dataclass
class FrocCurve:
    fp_per_image: np.ndarray  # increasing, one point per distinct score threshold
    sensitivity: np.ndarray
    thresholds: np.ndarray  # score at each point
    num_lesions: int
    num_images: int
    at_rates: dict[float, float] = field(default_factory=dict)

    @property
    def cpm(self) -> float:
        return float(np.mean(list(self.at_rates.values()))) if self.at_rates else math.nan


# ``match_lesions`` codes of detections that find no new lesion
FALSE_POSITIVE, DUPLICATE, IGNORED = -1, -2, -3


def in_ignore_region(result: ImageResult) -> np.ndarray:
    """Per detection (in ``result``'s order): does ``IGNORE_COVER`` of its area lie in one ignore region?"""
    inside = np.zeros(len(result.boxes), dtype=bool)
    if result.ignore_boxes is None or not len(result.ignore_boxes) or not len(result.boxes):
        return inside
    det = np.asarray(result.boxes, np.float64)[:, None, :]
    ign = np.asarray(result.ignore_boxes, np.float64)[None, :, :]
    w = np.clip(np.minimum(det[..., 2], ign[..., 2]) - np.maximum(det[..., 0], ign[..., 0]), 0, None)
    h = np.clip(np.minimum(det[..., 3], ign[..., 3]) - np.maximum(det[..., 1], ign[..., 1]), 0, None)
    area = np.clip((det[..., 2] - det[..., 0]) * (det[..., 3] - det[..., 1]), 1e-9, None)
    return (w * h / area >= IGNORE_COVER).any(axis=1)


def match_lesions(result: ImageResult, hit_iou: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Match one image's detections to its lesions by the FROC hit rule, highest score first.

    Args:
        result: one image; labels are ignored (the FROC is class-agnostic).
        hit_iou: IoU at which a detection finds a lesion.

    Returns:
        (scores sorted high to low, per detection in that order the index into ``gt_boxes`` of the
        lesion it finds, or ``FALSE_POSITIVE``, or ``DUPLICATE`` when it only overlaps found lesions,
        or ``IGNORED`` when it finds no lesion and lies in an ignore region).
    """
    order = np.argsort(-result.scores, kind="stable")
    lesion = np.where(in_ignore_region(result)[order], IGNORED, FALSE_POSITIVE).astype(np.int64)
    if len(result.gt_boxes) and len(order):
        iou = box_iou(torch.as_tensor(result.boxes[order], dtype=torch.float32),
                      torch.as_tensor(result.gt_boxes, dtype=torch.float32)).numpy()
        found = np.zeros(len(result.gt_boxes), dtype=bool)
        for i, row in enumerate(iou):
            candidates = np.where(row >= hit_iou)[0]
            if len(candidates) == 0:
                continue  # a false positive, or ignored
            fresh = candidates[~found[candidates]]
            if len(fresh):  # the best-overlapping lesion not found yet
                j = fresh[np.argmax(row[fresh])]
                found[j] = True
                lesion[i] = j
            else:
                lesion[i] = DUPLICATE
    return result.scores[order], lesion


def _hits(result: ImageResult, hit_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Label each detection: 1 = finds a new lesion, 0 = false positive, -1 = duplicate (ignored)."""
    scores, lesion = match_lesions(result, hit_iou)
    kind = np.where(lesion >= 0, 1, np.where(lesion == FALSE_POSITIVE, 0, -1)).astype(np.int8)
    return scores, kind


def froc_curve(results: list[ImageResult], hit_iou: float = 0.3, rates: tuple[float, ...] = FROC_RATES) -> FrocCurve:
    """Lesion-level FROC over ``results`` (all images, negatives included)."""
    return froc_from_hits([(*_hits(r, hit_iou), len(r.gt_boxes)) for r in results], rates)


def froc_from_hits(hits: list[tuple[np.ndarray, np.ndarray, int]], rates: tuple[float, ...] = FROC_RATES) -> FrocCurve:
    """FROC from each image's (scores, kinds, lesion count), kinds as ``_hits`` gives them.

    Images can be resampled (the bootstrap) and kinds recoded (``model.breakdown`` ignores hits on
    other groups' lesions) without matching boxes again.
    """
    scores_all = np.concatenate([s for s, _, _ in hits]) if hits else np.zeros(0)
    kinds_all = np.concatenate([k for _, k, _ in hits]) if hits else np.zeros(0, dtype=np.int8)
    keep = kinds_all >= 0
    scores_all, kinds_all = scores_all[keep], kinds_all[keep]
    order = np.argsort(-scores_all, kind="stable")
    scores_all, kinds_all = scores_all[order], kinds_all[order]
    num_lesions = int(sum(g for _, _, g in hits))
    num_images = max(len(hits), 1)
    tp = np.cumsum(kinds_all == 1)
    fp = np.cumsum(kinds_all == 0)
    # Keep the last point of each run of equal scores: a threshold admits all of them or none.
    last = np.r_[scores_all[1:] != scores_all[:-1], True] if len(scores_all) else np.zeros(0, bool)
    fppi = np.r_[0.0, fp[last] / num_images]
    sens = np.r_[0.0, tp[last] / max(num_lesions, 1)]
    thresholds = np.r_[np.inf, scores_all[last]]
    curve = FrocCurve(fppi, sens, thresholds, num_lesions, len(hits))
    for rate in rates:
        ok = fppi <= rate + 1e-12
        curve.at_rates[rate] = float(sens[ok].max()) if num_lesions else math.nan
    return curve


def threshold_at_fp_rate(curve: FrocCurve, rate: float) -> float:
    """The lowest score threshold whose false positives per image stay within ``rate``."""
    ok = np.where(curve.fp_per_image <= rate + 1e-12)[0]
    thr = float(curve.thresholds[ok[-1]])
    return thr if math.isfinite(thr) else 1.0


def image_score(result: ImageResult, hit_iou: float = 0.3) -> float:
    """An image's score: its highest detection that is not ignored, 0 without any."""
    scores = result.scores
    if result.ignore_boxes is not None and len(result.ignore_boxes):
        scores, lesion = match_lesions(result, hit_iou)
        scores = scores[lesion != IGNORED]
    return float(scores.max()) if len(scores) else 0.0


def _auroc(scores: list[float], labels: list[bool]) -> float:
    if not labels or all(labels) or not any(labels):
        return math.nan  # undefined with one class only
    return float(binary_auroc(torch.tensor(scores), torch.tensor(labels, dtype=torch.long)))


def image_auroc(results: list[ImageResult], hit_iou: float = 0.3) -> float:
    """AUROC of each image's score (``image_score``) for 'has at least one lesion'."""
    return _auroc([image_score(r, hit_iou) for r in results], [len(r.gt_boxes) > 0 for r in results])


def coco_eval(results: list[ImageResult]) -> Any:
    """pycocotools' ``COCOeval`` after ``evaluate``/``accumulate``/``summarize`` on ``results``.

    Returns None when there is no ground-truth box (AP undefined) and ``False`` when there are boxes
    but no detections (AP 0): pycocotools cannot evaluate an empty result set.
    """
    images, anns, dets = [], [], []
    for r in results:
        images.append({"id": int(r.image_id), "width": 1, "height": 1})
        gl = r.gt_labels if r.gt_labels is not None else np.ones(len(r.gt_boxes), dtype=int)
        ignore = r.ignore_boxes if r.ignore_boxes is not None else np.zeros((0, 4))
        il = r.ignore_labels if r.ignore_labels is not None else np.ones(len(ignore), dtype=int)
        for box, label, crowd in [*((b, c, 0) for b, c in zip(r.gt_boxes, gl)), *((b, c, 1) for b, c in zip(ignore, il))]:
            x1, y1, x2, y2 = map(float, box)
            anns.append({"id": len(anns) + 1, "image_id": int(r.image_id), "category_id": int(label),
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": crowd})
        dl = r.labels if r.labels is not None else np.ones(len(r.boxes), dtype=int)
        for box, score, label in zip(r.boxes, r.scores, dl):
            x1, y1, x2, y2 = map(float, box)
            dets.append({"image_id": int(r.image_id), "category_id": int(label),
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    if not any(a["iscrowd"] == 0 for a in anns):
        return None
    cat_ids = sorted({a["category_id"] for a in anns} | {d["category_id"] for d in dets})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in cat_ids]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
        gt.createIndex()
        if not dets:
            return False
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def coco_ap(results: list[ImageResult]) -> dict[str, float]:
    """COCO AP@[.5:.95] and AP50 by pycocotools (NaN when there is no ground-truth box)."""
    ev = coco_eval(results)
    if ev is None:
        return {"map": math.nan, "map_50": math.nan}
    if ev is False:
        return {"map": 0.0, "map_50": 0.0}
    return {"map": float(max(ev.stats[0], 0.0)), "map_50": float(max(ev.stats[1], 0.0))}


def detection_metrics(results: list[ImageResult], hit_iou: float = 0.3) -> dict[str, float]:
    """Every headline metric in one flat dict, keys as logged (``map_50``, ``froc_cpm``, ...)."""
    out = coco_ap(results)
    curve = froc_curve(results, hit_iou)
    for rate, sens in curve.at_rates.items():
        out[f"froc_sens@{rate:g}fp"] = sens
    out["froc_cpm"] = curve.cpm
    out["auroc"] = image_auroc(results, hit_iou)
    return out


def pr_curve(results: list[ImageResult], iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Precision at COCO's 101 recall points for boxes matched at ``iou`` (0.5: the AP50 curve).

    It is pycocotools' own interpolated curve, so its mean is ``coco_ap``'s AP at that IoU (averaged
    over classes with ground truth); precision is 0 beyond the highest recall reached.
    """
    recall = np.linspace(0.0, 1.0, 101)
    ev = coco_eval(results)
    if ev is None or ev is False:
        return recall, np.full(101, math.nan) if ev is None else np.zeros(101)
    t = int(np.argmin(np.abs(ev.params.iouThrs - iou)))
    prec = ev.eval["precision"][t, :, :, 0, -1]  # [R, K], all areas, most detections; -1: class without GT
    return recall, np.stack([prec[:, k] for k in range(prec.shape[1]) if (prec[:, k] >= 0).any()]).mean(0)


def bootstrap_ci(
    results: list[ImageResult],
    metric_fn: Callable[[list[ImageResult]], dict[str, float]] = detection_metrics,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals over images: resample images with replacement ``n`` times.

    Args:
        results: one entry per image (negatives included), as for ``detection_metrics``.
        metric_fn: maps a list of results to a flat dict of metrics.
        n: bootstrap samples.
        seed: the same seed gives the same intervals.
        level: coverage of the interval (0.95: 2.5th to 97.5th percentile).

    Returns:
        ``{metric: (low, high)}``; NaN bounds where a metric is undefined in most samples.
    """
    samples: dict[str, list[float]] = {}
    for picks in _resamples(len(results), n, seed):
        # fresh ids: an image drawn twice must count twice, not merge with itself
        sample = [replace(results[j], image_id=k + 1) for k, j in enumerate(picks)]
        for key, value in metric_fn(sample).items():
            samples.setdefault(key, []).append(value)
    return _percentile_intervals(samples, n, level)


def _resamples(size: int, n: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield rng.integers(0, size, size)


def _percentile_intervals(samples: dict[str, list[float]], n: int, level: float) -> dict[str, tuple[float, float]]:
    tail = (1.0 - level) / 2 * 100
    out = {}
    for key, values in samples.items():
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        out[key] = ((float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail)))
                    if len(v) >= n / 2 else (math.nan, math.nan))
    return out


def bootstrap_detection_metrics(results: list[ImageResult], hit_iou: float = 0.3, n: int = 1000, seed: int = 0,
                                level: float = 0.95) -> dict[str, tuple[float, float]]:
    """``bootstrap_ci`` of ``detection_metrics``, fast: boxes are matched once, not once per sample.

    Each image's FROC hits and pycocotools per-image evaluation do not depend on the other images, so
    a resample only re-runs the aggregation (``froc_from_hits``, ``COCOeval.accumulate``). Same
    resamples and the same numbers as ``bootstrap_ci(results, partial(detection_metrics, hit_iou=...))``
    up to the order of tied scores, at about a tenth of the cost.
    """
    hits = [(*_hits(r, hit_iou), len(r.gt_boxes)) for r in results]
    film_scores = [image_score(r, hit_iou) for r in results]
    ev = coco_eval(results)
    resampled = _ResampledCOCOeval(ev, [int(r.image_id) for r in results]) if ev else None
    samples: dict[str, list[float]] = {}
    for picks in _resamples(len(results), n, seed):
        out = {"map": math.nan, "map_50": math.nan}
        if sum(hits[j][2] for j in picks) == 0:
            pass  # no lesion drawn: AP undefined, as coco_ap says
        elif resampled is None:
            out = {"map": 0.0, "map_50": 0.0}
        else:
            prec = resampled.precision(picks)
            t50 = int(np.argmin(np.abs(resampled.params.iouThrs - 0.5)))
            out = {"map": float(max(prec[prec > -1].mean(), 0.0)) if (prec > -1).any() else 0.0,
                   "map_50": float(max(prec[t50][prec[t50] > -1].mean(), 0.0)) if (prec[t50] > -1).any() else 0.0}
        curve = froc_from_hits([hits[j] for j in picks], FROC_RATES)
        for rate, sens in curve.at_rates.items():
            out[f"froc_sens@{rate:g}fp"] = sens
        out["froc_cpm"] = curve.cpm
        out["auroc"] = _auroc([film_scores[j] for j in picks], [hits[j][2] > 0 for j in picks])
        for key, value in out.items():
            samples.setdefault(key, []).append(value)
    return _percentile_intervals(samples, n, level)


class _ResampledCOCOeval(COCOeval):
    """``COCOeval`` over a resample of the images that ``source`` has already evaluated.

    Public ``COCOeval`` API only: ``evaluate()`` does pycocotools' own bookkeeping over fresh image ids
    (one per draw, so an image drawn twice counts twice), and the two per-pair methods it calls,
    ``computeIoU`` and ``evaluateImg``, are overridden to hand back ``source``'s per-image results
    instead of matching boxes again; ``accumulate()`` is pycocotools' own. Area "all" and the most
    detections only: what ``map`` and ``map_50`` read. tests/test_library_shims.py checks that an
    unchanged resample reproduces ``source``'s precision, so a pycocotools that stops calling these
    methods fails there.
    """

    def __init__(self, source: COCOeval, image_ids: list[int]) -> None:
        super().__init__(source.cocoGt, source.cocoDt, "bbox")
        sp = source.params
        area, max_det = sp.areaRng[sp.areaRngLbl.index("all")], max(sp.maxDets)
        self.per_image = {(img, cat): source.evaluateImg(img, cat, area, max_det)
                          for img in image_ids for cat in sp.catIds}
        self.image_ids = image_ids
        # Draw ids above every real one: COCO holds no annotation for them to load.
        self.first_id = max([*image_ids, *source.cocoGt.getImgIds()]) + 1
        self.params.catIds, self.params.areaRng, self.params.areaRngLbl = list(sp.catIds), [area], ["all"]
        self.params.maxDets, self.params.iouThrs = [max_det], sp.iouThrs
        self.draws: dict[int, int] = {}

    def computeIoU(self, imgId: int, catId: int) -> None:  # pycocotools' method names
        return None  # evaluateImg below needs no IoU: the source matched these boxes already

    def evaluateImg(self, imgId: int, catId: int, aRng: list, maxDet: int) -> dict | None:
        return self.per_image[self.draws[int(imgId)], catId]

    def precision(self, picks: np.ndarray) -> np.ndarray:
        """pycocotools' interpolated precision ``[T, R, K]`` of the images at positions ``picks``."""
        self.draws = {self.first_id + k: self.image_ids[j] for k, j in enumerate(picks)}
        self.params.imgIds = list(self.draws)
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
            self.evaluate()
            self.accumulate()
        return self.eval["precision"][:, :, :, 0, 0]
