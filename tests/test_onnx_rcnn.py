"""ONNX export of a Faster R-CNN arch: backbone + FPN in the graph, the two stages in torchvision's code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.builder import build_detector
from model.inference import CalcinosisPredictor
from model.onnx_export import export_onnx, onnx_metadata, onnx_runtime_detector

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_faster_rcnn_runs_in_onnx_runtime_with_the_eager_boxes(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_detector(arch="fasterrcnn_mobilenet_v3_large_fpn", num_classes=2, min_size=320, max_size=320,
                           score_thresh=0.0)
    eager = CalcinosisPredictor(model.eval(), 320, threshold=0.0, class_names=["calcinosis"])
    path = export_onnx(eager.model, tmp_path / "rcnn.onnx", 320, {"arch": model.arch})
    assert onnx_metadata(path)["head_outputs"] == []  # features only: both stages stay in Python
    ort = CalcinosisPredictor(onnx_runtime_detector(eager.model, path), 320, threshold=0.0,
                              class_names=["calcinosis"])
    assert type(eager.model.net.backbone).__name__ != "OnnxBackbone"  # the eager model is left whole
    rng = np.random.default_rng(0)
    films = [rng.random((500, 380), dtype=np.float32), rng.random((400, 400), dtype=np.float32)]
    for e, o in zip(eager(films), ort(films), strict=True):  # two shapes padded into one batch
        assert len(e) > 10 and len(e) == len(o)
        order_e, order_o = np.argsort(-e.scores), np.argsort(-o.scores)
        np.testing.assert_allclose(o.scores[order_o], e.scores[order_e], atol=1e-3)
        np.testing.assert_allclose(o.boxes[order_o], e.boxes[order_e], atol=1.0)


@pytest.mark.slow
def test_a_backbone_traced_at_fixed_sides_still_finds_the_eager_boxes_on_non_square_films(tmp_path) -> None:
    # EfficientNet-Lite0's TF-"SAME" padding bakes the example's sides into the graph: the runtime
    # must pad every batch to them, or the outputs belong to another grid and boxes land elsewhere.
    torch.manual_seed(0)
    model = build_detector(arch="fcos_efficientnet_lite0", num_classes=2, min_size=192, max_size=192,
                           score_thresh=0.0)
    eager = CalcinosisPredictor(model.eval(), 192, threshold=0.0, class_names=["calcinosis"])
    path = export_onnx(eager.model, tmp_path / "lite0.onnx", 192)
    assert onnx_metadata(path)["fixed_side"] == 192
    ort = CalcinosisPredictor(onnx_runtime_detector(eager.model, path), 192, threshold=0.0,
                              class_names=["calcinosis"])
    rng = np.random.default_rng(0)
    film, square = rng.random((400, 260), dtype=np.float32), rng.random((300, 300), dtype=np.float32)
    # Eager, batched with a square film, pads this one to 192 x 192 as the runtime must: same input.
    e, o = eager([film, square])[0], ort([film])[0]
    assert len(e) > 10 and abs(len(e) - len(o)) <= 1
    for box, score in zip(e.boxes, e.scores):
        close = (np.abs(o.boxes - box).max(axis=1) <= 1.0) & (np.abs(o.scores - score) <= 1e-3)
        assert close.any() or score <= np.sort(e.scores)[1], (box, score)
