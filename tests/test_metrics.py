"""Metrics shared by validation and `calcidet evaluate`: COCO AP, FROC/CPM, image AUROC."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calcidet.model.metrics import (
    ImageResult,
    detection_metrics,
    froc_curve,
    image_auroc,
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
