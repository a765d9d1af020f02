"""The detector's network as ONNX, and ONNX Runtime in its place inside the same detector.

    calcidet export runs/demo/checkpoints/last.ckpt --format onnx --output model.onnx
    calcidet detect films/ --checkpoint CKPT --output results/ --backend onnxruntime --onnx model.onnx

torchvision's post-processing (per-level top-k, batched NMS) has data-dependent shapes that
``torch.onnx.export`` cannot capture (dynamo export of the whole model stops in ``batched_nms``). So
the graph holds what costs time: backbone, FPN and head, from the normalised, padded batch
(``images``: float32 B x 3 x H x W, H and W multiples of 32) to the raw head outputs torchvision's
dense heads return (``cls_logits`` B x N x K logits, ``bbox_regression`` B x N x 4, FCOS's
``bbox_ctrness`` B x N x 1; N = locations x anchors over all levels) and one channel of each pyramid
level (``level0``, ...: their heights and widths place the anchors). Resizing, anchors, decoding and
NMS stay in Python, in torchvision's own code: ``onnx_runtime_detector`` swaps the backbone and head
of a ``RadiographDetector`` for the ONNX graph and leaves the rest as it was, so eager and ONNX
results differ only by the network's float arithmetic.

Faster R-CNN archs: the graph is the backbone and FPN (``feature_0``... ``feature_pool``: the pyramid
levels, whole); the region proposal network and the box head (proposal top-k, NMS, RoIAlign, a small
MLP on 512-1000 regions) stay in torchvision's code, like the decoding of the dense archs. The
backbone is where the time goes.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from calcidet.model.builder import RadiographDetector

OPSET = 18
# Graph outputs that are pyramid levels (dense archs: one channel of each; Faster R-CNN: whole
# levels); every other output is a dense head's.
LEVEL_PREFIXES = ("level", "feature_")


class HeadOutputs(nn.Module):
    """Backbone + FPN + head of a torchvision dense detector: the part that is exported."""

    def __init__(self, net: FCOS | RetinaNet) -> None:
        super().__init__()
        self.backbone = net.backbone
        self.head = net.head

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        features = self.backbone(images)
        features = list(features.values()) if isinstance(features, dict) else [features]
        out = self.head(features)
        return (*[out[k] for k in sorted(out)], *[f[:, :1] for f in features])


class FeatureOutputs(nn.Module):
    """Backbone + FPN of a torchvision two-stage detector: every pyramid level, whole."""

    def __init__(self, net: GeneralizedRCNN) -> None:
        super().__init__()
        self.backbone = net.backbone

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.backbone(images).values())


def _is_dense(model: RadiographDetector) -> bool:
    """True for FCOS/RetinaNet, False for Faster R-CNN; any other network is refused."""
    if isinstance(model.net, (FCOS, RetinaNet)):
        return True
    if isinstance(model.net, GeneralizedRCNN):
        return False
    raise ValueError(f"ONNX export covers the FCOS, RetinaNet and Faster R-CNN archs, not {model.arch}")


def _exported_part(model: RadiographDetector) -> tuple[nn.Module, list[str]]:
    """The module the graph holds and its output names (see the module docstring)."""
    dense, net = _is_dense(model), model.net
    with torch.no_grad():  # a small probe: the names of the pyramid levels and head outputs
        features = net.backbone(torch.rand(1, 3, 64, 64))
        if dense:
            keys = sorted(net.head(list(features.values())))
    if dense:
        return HeadOutputs(net).eval(), keys + [f"level{i}" for i in range(len(features))]
    return FeatureOutputs(net).eval(), [f"feature_{k}" for k in features]


def export_onnx(model: RadiographDetector, path: str | Path, image_size: int,
                metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s backbone, FPN and head as ONNX, batch size and image size dynamic.

    Args:
        model: the detector (load it with ``CalcinosisPredictor.from_checkpoint``: EMA weights when
            the run kept them).
        path: the ``.onnx`` file to write.
        image_size: longest side the network sees; the example input is that size.
        metadata: stored as JSON under the ONNX metadata key ``calcidet`` (arch, classes, threshold).

    Returns:
        ``path``.
    """
    import onnx  # the optional "export" extra

    part, names = _exported_part(model.eval())
    side = -(-image_size // 32) * 32  # torchvision pads the batch to multiples of 32
    example = torch.rand(1, 3, side, side)
    keys = [n for n in names if not n.startswith(LEVEL_PREFIXES)]  # the dense heads' outputs
    # The TorchScript exporter, not dynamo: dynamo's symbolic shapes explode on EfficientNet's
    # TF-"SAME" padding (export ran > 10 min). Tracing bakes that padding for the example's sides,
    # which is exact for any side that is a multiple of 32, as torchvision's batches always are.
    axes = {"images": {0: "batch", 2: "height", 3: "width"}}
    axes.update({n: {0: "batch", 1: "locations"} for n in keys})
    axes.update({n: {0: "batch", 2: f"{n}_height", 3: f"{n}_width"} for n in names[len(keys):]})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shapes turned into constants: see above
        torch.onnx.export(part, (example,), buffer, input_names=["images"], output_names=names,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    meta = {"image_size": image_size, "head_outputs": keys, **(metadata or {})}
    if not _sizes_are_dynamic(part, buffer.getvalue(), side):
        # Some backbones trace with their input sides baked in (EfficientNet's TF-"SAME" padding):
        # the graph then only reads a side x side batch, and the runtime pads every batch to it.
        meta["fixed_side"] = side
    entry = proto.metadata_props.add()
    entry.key, entry.value = "calcidet", json.dumps(meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


def _sizes_are_dynamic(part: nn.Module, graph: bytes, side: int) -> bool:
    """Whether the graph gives the eager outputs' shapes on a non-square batch, not only on the example's."""
    import onnxruntime as ort

    probe = torch.rand(1, 3, side, max(side - 64, 32))
    with torch.no_grad():
        want = [tuple(t.shape) for t in part(probe)]
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    try:
        got = [tuple(v.shape) for v in session.run(None, {"images": probe.numpy()})]
    except Exception:  # noqa: BLE001 - a graph that refuses other sides outright is not dynamic either
        return False
    return got == want


def onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The ``calcidet`` metadata ``export_onnx`` stored ({} for another ONNX file)."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props.get("calcidet", "{}"))


class OnnxBackbone(nn.Module):
    """Runs the exported graph; returns the level channels as "features", keeps the head outputs."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None, fixed_side: int | None = None) -> None:
        super().__init__()
        self.fixed_side = fixed_side
        self.onnx_bytes = Path(onnx_path).read_bytes()  # read now: the file may be a temporary one
        self.threads = threads
        self.session: Any = None  # opened on first use, with the threads torch has then
        self.head_outputs: dict[str, Tensor] = {}

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        if self.session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads or torch.get_num_threads()
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(self.onnx_bytes, options, providers=["CPUExecutionProvider"])
        if self.fixed_side and tuple(images.shape[-2:]) != (self.fixed_side, self.fixed_side):
            raise ValueError(f"this ONNX graph reads {self.fixed_side} x {self.fixed_side} batches only, got "
                             f"{tuple(images.shape[-2:])}: export it again with --image-size for this size")
        names = [o.name for o in self.session.get_outputs()]
        values = self.session.run(None, {"images": images.detach().float().contiguous().cpu().numpy()})
        out = {n: torch.from_numpy(v).to(images.device) for n, v in zip(names, values)}
        self.head_outputs = {n: v for n, v in out.items() if not n.startswith(LEVEL_PREFIXES)}
        # Dense archs: one channel per level ("level0"...), only their shapes are used. Faster R-CNN:
        # whole levels under the backbone's own keys ("feature_0" -> "0"), which RoIAlign looks up.
        return OrderedDict((n.removeprefix("feature_"), v) for n, v in out.items()
                           if n.startswith(LEVEL_PREFIXES))

    def __deepcopy__(self, memo: dict) -> OnnxBackbone:
        twin = copy.copy(self)  # a session cannot be copied: the twin opens its own
        twin.session, twin.head_outputs = None, {}
        return twin


class StashedHead(nn.Module):
    """Stands in for the head: returns what the ONNX graph computed for the same batch."""

    def __init__(self, backbone: OnnxBackbone) -> None:
        super().__init__()
        self.source = [backbone]  # a list: not registered twice as a submodule

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return self.source[0].head_outputs


def onnx_runtime_detector(model: RadiographDetector, onnx_path: str | Path,
                          threads: int | None = None) -> RadiographDetector:
    """A copy of ``model`` whose backbone, FPN and (dense archs) head run in ONNX Runtime (CPU).

    Everything else (grey to RGB, torchvision's resize and normalisation, anchors, decoding, NMS,
    mapping back to the input's pixels) is ``model``'s own code, so the result plugs into
    ``CalcinosisPredictor`` like the eager model. ``threads``: ONNX Runtime's (default: torch's).
    """
    dense, net = _is_dense(model), model.net
    backbone = net.backbone
    head = net.head if dense else None
    net.backbone = nn.Identity()  # not copied: its weights live in the graph
    if dense:
        net.head = nn.Identity()
    try:
        ort_model = copy.deepcopy(model)
    finally:
        net.backbone = backbone
        if dense:
            net.head = head
    fixed = onnx_metadata(onnx_path).get("fixed_side")
    ort_model.net.backbone = OnnxBackbone(onnx_path, threads, fixed)
    if fixed:  # torchvision pads each batch to a multiple of this: films up to it become fixed x fixed
        ort_model.net.transform.size_divisible = fixed
    if dense:
        ort_model.net.head = StashedHead(ort_model.net.backbone)
    return ort_model.eval()
