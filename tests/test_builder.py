"""build_detector: every architecture builds offline, trains on negatives, and refuses missing weights."""

from __future__ import annotations

import pytest
import torch

from calcidet.model.builder import ARCHS, build_detector
from calcidet.model.weights import WeightsUnavailableError, cached_weights_path, resolve_weights


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_each_arch_builds_and_predicts_in_input_pixels(arch: str) -> None:
    torch.manual_seed(0)
    model = build_detector(arch=arch, num_classes=2, min_size=128, max_size=128).eval()
    with torch.no_grad():
        out = model([torch.rand(1, 100, 150), torch.rand(96, 64)])  # 1xHxW and HxW grey images
    assert len(out) == 2
    for det, (h, w) in zip(out, [(100, 150), (96, 64)]):
        assert det["boxes"].shape[1] == 4 and det["boxes"].dtype == torch.float32
        assert len(det["boxes"]) == len(det["scores"]) == len(det["labels"])
        if len(det["boxes"]):  # boxes come back in the input's pixels, not the 128 px network size
            assert float(det["boxes"][:, 2].max()) <= w + 1e-3 and float(det["boxes"][:, 3].max()) <= h + 1e-3
            assert set(det["labels"].tolist()) <= {1}


@pytest.mark.parametrize("arch", ["fcos_tiny", "fasterrcnn_mobilenet_v3_large_fpn", "retinanet_resnet50_fpn_v2"])
def test_negative_images_train_with_zero_box_loss(arch: str) -> None:
    model = build_detector(arch=arch, num_classes=2, min_size=128, max_size=128).train()
    images = [torch.rand(1, 128, 128), torch.rand(1, 128, 100)]
    targets = [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)} for _ in images]
    losses = model(images, targets)
    box_losses = {k: v for k, v in losses.items() if "box" in k and "objectness" not in k and "ctrness" not in k}
    assert box_losses, losses.keys()
    for name, value in box_losses.items():
        assert float(value) == 0.0, name
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()  # the classification loss still teaches "nothing here"


@pytest.mark.parametrize("arch", ["fcos_tiny", "fcos_efficientnet_lite0"])
def test_light_fcos_heads_have_two_convolutions_under_the_saved_keys(arch: str) -> None:
    """Two convolutions (each with GroupNorm and ReLU) per branch, keyed as checkpoints already hold them."""
    head = build_detector(arch=arch, min_size=128, max_size=128).net.head
    for branch in (head.classification_head, head.regression_head):
        assert [type(m).__name__ for m in branch.conv] == ["Conv2d", "GroupNorm", "ReLU"] * 2
    keys = {k for k in head.state_dict() if ".conv." in k}
    assert keys == {f"{b}.conv.{i}.{p}" for b in ("classification_head", "regression_head")
                    for i in (0, 1, 3, 4) for p in ("weight", "bias")}


def test_unknown_arch_names_the_choices() -> None:
    with pytest.raises(ValueError, match="fcos_tiny"):
        build_detector(arch="yolo")


def test_missing_pretrained_weights_offline_names_file_and_fix(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(WeightsUnavailableError) as err:
        build_detector(arch="fasterrcnn_resnet50_fpn_v2", weights="DEFAULT")
    msg = str(err.value)
    assert "fasterrcnn_resnet50_fpn_v2_coco" in msg and str(tmp_path) in msg
    assert "get_state_dict" in msg and "weights=null" in msg
    assert "get_weight('FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1')" in msg  # a name get_weight takes


def test_scratch_arch_refuses_weights() -> None:
    with pytest.raises(WeightsUnavailableError, match="from scratch"):
        build_detector(arch="fcos_tiny", weights="DEFAULT")


def test_resolve_weights_forms(tmp_path) -> None:
    from torchvision.models.detection import FCOS_ResNet50_FPN_Weights as W

    assert resolve_weights("DEFAULT", W) is W.DEFAULT
    assert resolve_weights("COCO_V1", W) is W.COCO_V1
    assert resolve_weights("FCOS_ResNet50_FPN_Weights.COCO_V1", W) is W.COCO_V1
    assert resolve_weights(None, W) is None and resolve_weights("none", W) is None
    f = tmp_path / "w.pth"
    f.write_bytes(b"")
    assert resolve_weights(str(f), W) == f
    with pytest.raises(WeightsUnavailableError, match="not found"):
        resolve_weights(str(tmp_path / "missing.pth"), W)
    with pytest.raises(ValueError, match="COCO_V1"):
        resolve_weights("IMAGENET", W)


def test_weights_from_torch_home_cache_and_local_file(tmp_path, monkeypatch) -> None:
    """A file in $TORCH_HOME/hub/checkpoints or at a local path is loaded, and the head replaced."""
    from torchvision.models.detection import FCOS_ResNet50_FPN_Weights as W
    from torchvision.models.detection import fcos_resnet50_fpn

    # Stand-in for the COCO download: the same architecture's state dict with 91 classes.
    torch.manual_seed(0)
    reference = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    cached = cached_weights_path(W.DEFAULT)
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    local = tmp_path / "my_fcos.pth"
    torch.save(reference.state_dict(), local)

    for spec in ("DEFAULT", str(local)):
        model = build_detector(arch="fcos_resnet50_fpn", weights=spec, num_classes=2, min_size=128, max_size=128)
        ref_w = reference.backbone.body.conv1.weight
        assert torch.equal(model.net.backbone.body.conv1.weight, ref_w)
        assert model.net.head.classification_head.cls_logits.out_channels == 2  # new head, our classes
