"""The predictor's extra passes (flip, extra sizes): boxes stay in original pixels, the model is left as found."""

from __future__ import annotations

import numpy as np
import torch

from calcidet.model.builder import build_detector
from calcidet.model.inference import CalcinosisPredictor


def _predictor(extra_sizes: tuple[int, ...] = ()) -> CalcinosisPredictor:
    torch.manual_seed(0)
    model = build_detector(arch="fcos_tiny", num_classes=2, min_size=128, max_size=128, score_thresh=0.0)
    return CalcinosisPredictor(model, 128, threshold=0.0, class_names=["calcinosis"], extra_sizes=extra_sizes)


def test_extra_size_equal_to_the_trained_one_changes_nothing() -> None:
    film = np.random.default_rng(0).random((300, 200), dtype=np.float32)
    base = _predictor()([film])[0]
    same = _predictor((128,))([film])[0]
    assert len(base) > 0
    np.testing.assert_allclose(same.boxes, base.boxes, atol=1e-4)
    np.testing.assert_allclose(same.scores, base.scores, atol=1e-6)


def test_extra_sizes_map_back_to_original_pixels_and_restore_the_model() -> None:
    film = np.random.default_rng(1).random((300, 200), dtype=np.float32)
    predictor = _predictor((192, 256))
    found = predictor([film], tta=True)[0]
    assert len(found) > 0
    assert (found.boxes[:, [0, 2]] >= 0).all() and (found.boxes[:, [0, 2]] <= 200 + 1e-3).all()
    assert (found.boxes[:, [1, 3]] >= 0).all() and (found.boxes[:, [1, 3]] <= 300 + 1e-3).all()
    transform = predictor.model.net.transform
    assert transform.min_size == (128,) and transform.max_size == 128
    # A larger pass sees more locations: its boxes are not all the trained size's boxes.
    assert len(found) != len(_predictor()([film], tta=True)[0])


def test_boxes_clipped_flat_against_the_border_are_never_returned() -> None:
    # Every location predicts a box reaching 0.2 strides each way. Locations in the batch padding
    # beyond the film's right edge (86 px wide, padded to 96; the network's own size, so no resize)
    # then give boxes that lie wholly outside it; torchvision clips them to zero width at the border.
    predictor = _predictor()
    net = predictor.model.net
    net.topk_candidates = net.detections_per_img = 100_000  # every location, not the top 100
    reg = net.head.regression_head.bbox_reg
    with torch.no_grad():
        reg.weight.zero_()
        reg.bias.fill_(0.2)
    film = np.random.default_rng(2).random((128, 86), dtype=np.float32)
    raw = predictor.model([torch.from_numpy(film)[None]])[0]["boxes"]
    flat = (raw[:, 2] - raw[:, 0] < 1) | (raw[:, 3] - raw[:, 1] < 1)
    assert flat.sum() > 0 and (~flat).sum() > 0  # the case occurs, next to ordinary boxes
    found = predictor([film])[0]
    assert len(found) == int((~flat).sum())
    assert (found.boxes[:, 2] - found.boxes[:, 0] >= 1).all() and (found.boxes[:, 3] - found.boxes[:, 1] >= 1).all()
