"""Ignore regions in FCOS training: background inside them is left out of the classification loss."""

from __future__ import annotations

import pytest
import torch

from calcidet.model.builder import build_detector
from calcidet.model.module import CalcinosisDetector


def _losses(model, image: torch.Tensor, target: dict) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return model([image], [dict(target)])


def _empty(**extra: torch.Tensor) -> dict:
    return {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64), **extra}


def test_a_film_that_is_all_ignore_region_teaches_no_background() -> None:
    torch.manual_seed(0)
    model = build_detector(arch="fcos_tiny", num_classes=2, min_size=128, max_size=128).train()
    # 64 px film shown at 128 px: the region must be resized with it to cover every location
    image = torch.rand(1, 64, 64)
    plain = _losses(model, image, _empty())
    ignored = _losses(model, image, _empty(ignore_boxes=torch.tensor([[0.0, 0.0, 64.0, 64.0]])))
    assert float(plain["classification"]) > 0.0  # small: the prior-initialised head calls little lesion
    assert float(ignored["classification"]) == 0.0
    half = _losses(model, image, _empty(ignore_boxes=torch.tensor([[0.0, 0.0, 32.0, 64.0]])))
    assert 0.0 < float(half["classification"]) < float(plain["classification"])


def test_lesions_inside_an_ignore_region_still_train() -> None:
    torch.manual_seed(0)
    model = build_detector(arch="fcos_tiny", num_classes=2, min_size=128, max_size=128).train()
    image = torch.rand(1, 128, 128)
    lesion = {"boxes": torch.tensor([[40.0, 40.0, 80.0, 80.0]]), "labels": torch.tensor([1])}
    plain = _losses(model, image, lesion)
    covered = _losses(model, image, {**lesion, "ignore_boxes": torch.tensor([[0.0, 0.0, 128.0, 128.0]])})
    # the lesion's own locations keep every loss; only the background's classification term goes
    assert torch.allclose(plain["bbox_regression"], covered["bbox_regression"])
    assert torch.allclose(plain["bbox_ctrness"], covered["bbox_ctrness"])
    assert 0.0 < float(covered["classification"]) < float(plain["classification"])
    covered["classification"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_focal_alpha_and_gamma_change_only_the_classification_loss() -> None:
    torch.manual_seed(0)
    model = build_detector(arch="fcos_tiny", num_classes=2, min_size=128, max_size=128).train()
    head = model.net.head
    image = torch.rand(1, 128, 128)
    lesion = {"boxes": torch.tensor([[40.0, 40.0, 80.0, 80.0]]), "labels": torch.tensor([1])}
    torchvision_loss = _losses(model, image, lesion)
    # calcidet's own recomputation, a hair off torchvision's settings, gives torchvision's figure
    head.focal_gamma = 2.0 + 1e-9
    assert torch.allclose(_losses(model, image, lesion)["classification"], torchvision_loss["classification"])
    head.focal_gamma = 1.5  # easy locations (p ~ 0.01 at the prior) weigh more than at gamma 2: a larger loss
    softer = _losses(model, image, lesion)
    assert float(softer["classification"]) > 1.002 * float(torchvision_loss["classification"])
    assert torch.allclose(softer["bbox_regression"], torchvision_loss["bbox_regression"])
    # alpha 0.5 doubles the lesion's weight (0.25) and cuts the background's (0.75 to 0.5); at the prior
    # (p ~ 0.01) the lesion's locations carry nearly all of the loss, so it nearly doubles
    head.focal_gamma, head.focal_alpha = 2.0, 0.5
    ratio = float(_losses(model, image, lesion)["classification"]) / float(torchvision_loss["classification"])
    assert 1.95 < ratio < 2.0


def test_the_detector_sets_the_focal_loss_of_calcidets_fcos_and_refuses_it_elsewhere() -> None:
    detector = CalcinosisDetector(arch="fcos_tiny", focal_gamma=1.5, focal_alpha=0.3)
    assert (detector.model.net.head.focal_gamma, detector.model.net.head.focal_alpha) == (1.5, 0.3)
    with pytest.raises(ValueError, match="calcidet's own FCOS models"):
        CalcinosisDetector(arch="fasterrcnn_mobilenet_v3_large_fpn", focal_gamma=1.5)
    with pytest.raises(ValueError, match="focal_gamma must be >= 0"):
        CalcinosisDetector(arch="fcos_tiny", focal_gamma=-1.0)
