"""Metrics shared by validation and `calcidet evaluate`: COCO AP, FROC/CPM, image AUROC."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from calcidet.model.metrics import (
    ImageResult,
    bootstrap_ci,
    bootstrap_detection_metrics,
    detection_metrics,
    froc_curve,
    image_auroc,
    in_ignore_region,
    threshold_at_fp_rate,
)


def _r(i, gt, boxes=(), scores=()):
    return ImageResult(i, np.asarray(gt, np.float32).reshape(-1, 4), np.asarray(boxes, np.float32).reshape(-1, 4),
                       np.asarray(scores, np.float32))


def test_perfect_detector_scores_one_everywhere() -> None:
    results = [_r(1, [[10, 10, 50, 50]], [[10, 10, 50, 50]], [0.9]), _r(2, []), _r(3, [[0, 0, 20, 30]], [[0, 0, 20, 30]], [0.8])]
    m = detection_metrics(results)
    assert m["map_50"] == pytest.approx(1.0) and m["map"] == pytest.approx(1.0)
    assert m["froc_cpm"] == pytest.approx(1.0) and m["auroc"] == pytest.approx(1.0)


def test_froc_counts_false_positives_on_negative_images() -> None:
    # 4 images, 2 lesions. One FP on a negative image scores above the second lesion's hit.
    results = [
        _r(1, [[0, 0, 10, 10]], [[0, 0, 10, 10]], [0.9]),
        _r(2, [], [[5, 5, 9, 9]], [0.7]),
        _r(3, [[20, 20, 40, 40]], [[21, 21, 40, 40]], [0.5]),
        _r(4, []),
    ]
    c = froc_curve(results)
    assert c.num_lesions == 2 and c.num_images == 4
    assert c.at_rates[0.125] == pytest.approx(0.5)  # 0 FP allowed (0.125 * 4 < 1): only lesion 1
    assert c.at_rates[0.25] == pytest.approx(1.0)  # 1 FP / 4 images = 0.25: both lesions found
    assert c.cpm == pytest.approx((0.5 + 6 * 1.0) / 7)
    assert threshold_at_fp_rate(c, 0.125) == pytest.approx(0.9)
    assert threshold_at_fp_rate(c, 0.25) == pytest.approx(0.5)


def test_duplicate_detection_of_found_lesion_is_not_a_false_positive() -> None:
    results = [_r(1, [[0, 0, 10, 10]], [[0, 0, 10, 10], [1, 1, 10, 10]], [0.9, 0.8])]
    c = froc_curve(results)
    assert c.fp_per_image.max() == 0.0 and c.sensitivity.max() == 1.0


def test_hit_iou_threshold() -> None:
    results = [_r(1, [[0, 0, 10, 10]], [[5, 0, 15, 10]], [0.9])]  # IoU = 1/3
    assert froc_curve(results, hit_iou=0.3).at_rates[1.0] == 1.0
    assert froc_curve(results, hit_iou=0.5).at_rates[1.0] == 0.0


def test_auroc_uses_max_score_and_needs_both_classes() -> None:
    pos = _r(1, [[0, 0, 10, 10]], [[0, 0, 10, 10]], [0.6])
    neg_low, neg_high = _r(2, [], [[0, 0, 5, 5]], [0.2]), _r(3, [], [[0, 0, 5, 5]], [0.9])
    assert image_auroc([pos, neg_low]) == pytest.approx(1.0)
    assert image_auroc([pos, neg_low, neg_high]) == pytest.approx(0.5)
    assert math.isnan(image_auroc([neg_low, neg_high]))


def test_only_negative_images_give_nan_ap_not_a_crash() -> None:
    m = detection_metrics([_r(1, [], [[0, 0, 5, 5]], [0.3]), _r(2, [])])
    assert math.isnan(m["map_50"]) and math.isnan(m["froc_cpm"])


def test_no_detections_at_all_scores_zero() -> None:
    m = detection_metrics([_r(1, [[0, 0, 10, 10]]), _r(2, [])])
    assert m["map_50"] == 0.0 and m["froc_cpm"] == 0.0


def _with_ignore(result: ImageResult, regions: list[list[float]]) -> ImageResult:
    return replace(result, ignore_boxes=np.asarray(regions, np.float32).reshape(-1, 4))


def test_a_detection_is_ignored_when_half_of_it_lies_in_an_ignore_region() -> None:
    r = _with_ignore(_r(1, [], [[10, 10, 30, 30], [30, 30, 50, 50], [20, 0, 60, 40], [0, 50, 10, 60]], [0.9] * 4),
                     [[0, 0, 40, 40]])
    assert in_ignore_region(r).tolist() == [True, False, True, False]  # covered 1, 1/4, 1/2, 0
    assert in_ignore_region(_r(2, [], [[10, 10, 30, 30]], [0.9])).tolist() == [False]  # no region


def test_ignore_regions_are_neither_lesions_nor_false_positives() -> None:
    # film 1: a lesion found at 0.5, a box at 0.9 inside an ignore region, a false positive at 0.3;
    # film 2: no lesion, a box at 0.95 inside an ignore region, a false positive at 0.2
    film1 = _r(1, [[0, 0, 10, 10]], [[0, 0, 10, 10], [55, 55, 70, 70], [20, 20, 30, 30]], [0.5, 0.9, 0.3])
    film2 = _r(2, [], [[10, 10, 30, 30], [60, 60, 70, 70]], [0.95, 0.2])
    plain = detection_metrics([film1, film2])
    honoured = detection_metrics([_with_ignore(film1, [[50, 50, 90, 90]]), _with_ignore(film2, [[0, 0, 40, 40]])])
    # Without the regions the two high boxes are false positives ranked above the hit...
    assert plain["froc_sens@0.125fp"] == 0.0 and plain["froc_sens@0.5fp"] == 0.0 and plain["froc_sens@1fp"] == 1.0
    assert plain["auroc"] == pytest.approx(0.0) and plain["map_50"] == pytest.approx(1 / 3, abs=0.01)
    # ...with them the hit leads, and each film's score is its highest box that is not ignored (0.5 vs 0.2)
    assert honoured["froc_cpm"] == pytest.approx(1.0) and honoured["auroc"] == pytest.approx(1.0)
    assert honoured["map_50"] == pytest.approx(1.0)  # pycocotools: the regions as crowd annotations
    curve = froc_curve([_with_ignore(film1, [[50, 50, 90, 90]]), _with_ignore(film2, [[0, 0, 40, 40]])])
    assert curve.num_lesions == 1 and curve.fp_per_image[-1] == pytest.approx(1.0)  # 2 false positives / 2 films


def test_a_lesion_inside_an_ignore_region_is_still_found() -> None:
    r = _with_ignore(_r(1, [[10, 10, 20, 20]], [[10, 10, 20, 20]], [0.7]), [[0, 0, 50, 50]])
    assert detection_metrics([r, _r(2, [])])["froc_cpm"] == pytest.approx(1.0)


def test_fast_bootstrap_honours_ignore_regions_as_the_slow_one_does() -> None:
    rng = np.random.default_rng(0)
    results = []
    for i in range(12):
        gt = [[10, 10, 30, 30]] if i % 3 else []
        boxes = [[10, 10, 30, 30], [60, 60, 80, 80], [5, 50, 25, 70]]
        results.append(_with_ignore(_r(i + 1, gt, boxes, rng.uniform(0.1, 1.0, 3)), [[55, 55, 90, 90]] if i % 2 else []))
    fast = bootstrap_detection_metrics(results, n=40, seed=3)
    slow = bootstrap_ci(results, n=40, seed=3)
    for key in ("froc_cpm", "auroc", "map_50"):
        np.testing.assert_allclose(fast[key], slow[key], atol=1e-6)
