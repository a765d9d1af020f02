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
