"""A compact residual backbone with a feature pyramid, sized for training on a CPU.

The torchvision detectors' ResNet-50 and MobileNetV3 backbones are built for ImageNet-pretrained
transfer at 800+ px. Trained from scratch at ~384 px on two CPU cores they are too slow to learn
anything in minutes (MobileNetV3's depthwise convolutions are especially slow on CPU). Cloud-like
calcified masses are textured blobs that a small stack of plain 3x3 residual blocks separates well,
so ``TinyResNetFPN`` uses dense convolutions, few channels and three pyramid levels (strides 8-32).
``EfficientNetLiteFPN`` is the ImageNet-pretrained alternative, with the same three levels and
optionally a fourth at stride 4 for the smallest masses.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d

from calcidet.model.efficientnet_lite import FPN_STAGES, STRIDE4_STAGE, EfficientNetLite


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet's basic block)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(c_in, c_out, stride)
        self.conv2 = nn.Sequential(
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        )
        # Zero-init the last BN so each block starts as identity: faster, steadier training from scratch.
        nn.init.zeros_(self.conv2[1].weight)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class TinyResNetFPN(nn.Module):
    """Residual backbone (strides 4..32) plus FPN; returns {"p3", "p4", "p5"} at strides 8, 16, 32.

    Args:
        widths: channels of the stem and of the four stages (strides 4, 8, 16, 32).
        depths: residual blocks per stage.
        out_channels: FPN channels, shared by every pyramid level (``self.out_channels``).
        in_channels: image channels (3: grey radiographs are repeated, as for pretrained networks).
    """

    def __init__(
        self,
        widths: tuple[int, int, int, int, int] = (16, 32, 64, 96, 128),
        depths: tuple[int, int, int, int] = (1, 2, 2, 1),
        out_channels: int = 64,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn_relu(in_channels, widths[0], 2), _conv_bn_relu(widths[0], widths[0]))
        stages = []
        for i, depth in enumerate(depths):
            c_in, c_out = widths[i], widths[i + 1]
            blocks = [BasicBlock(c_in, c_out, stride=2)]
            blocks += [BasicBlock(c_out, c_out) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.fpn = FeaturePyramidNetwork(list(widths[2:]), out_channels)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        x = self.stem(x)
        feats = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 1:  # stages 1..3 are strides 8, 16, 32
                feats[f"p{i + 2}"] = x
        return self.fpn(feats)


class Stride4Level(nn.Module):
    """A P2 level: a lateral 1x1 from the stride-4 features plus the upsampled P3, smoothed by a 3x3.

    Kept outside the FPN so that a strides 8-32 checkpoint's weights still load by name
    (``init_from``); only these two convolutions start fresh.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.lateral = nn.Conv2d(in_channels, out_channels, 1)
        self.smooth = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        for conv in (self.lateral, self.smooth):  # as torchvision's FPN initialises its convolutions
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, fine: Tensor, p3: Tensor) -> Tensor:
        return self.smooth(self.lateral(fine) + F.interpolate(p3, size=fine.shape[-2:], mode="nearest"))


class EfficientNetLiteFPN(nn.Module):
    """EfficientNet-Lite (ImageNet-pretrainable) plus FPN; returns {"p3", "p4", "p5"} at strides 8-32.

    Args:
        variant: 0, 1 or 2 (``model.efficientnet_lite.VARIANTS``).
        out_channels: FPN channels, shared by every pyramid level (``self.out_channels``).
        frozen_bn: use ``FrozenBatchNorm2d`` (ImageNet statistics kept): detection batches of a few
            radiographs give BatchNorm statistics too noisy to learn from.
        stride4: put "p2" (stride 4) in front of them: a mass of 10 px spans 2x2 locations at stride 8 but
            5x5 at stride 4.
    """

    def __init__(self, variant: int = 0, out_channels: int = 64, frozen_bn: bool = False,
                 stride4: bool = False) -> None:
        super().__init__()
        self.body = EfficientNetLite(variant, num_classes=None, norm=FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d)
        self.fpn = FeaturePyramidNetwork(list(self.body.feature_channels), out_channels)
        self.p2 = Stride4Level(self.body.stage_channels[STRIDE4_STAGE], out_channels) if stride4 else None
        self.out_channels = out_channels
        self.strides = (4, 8, 16, 32) if stride4 else (8, 16, 32)  # of the returned levels, finest first

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        feats = self.body.features(x, FPN_STAGES if self.p2 is None else (STRIDE4_STAGE, *FPN_STAGES))
        fine = feats.pop(0) if self.p2 is not None else None
        out = self.fpn(OrderedDict((f"p{i + 3}", f) for i, f in enumerate(feats)))
        if self.p2 is None:
            return out
        return OrderedDict([("p2", self.p2(fine, out["p3"])), *out.items()])
