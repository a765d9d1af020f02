"""ONNX export of a Faster R-CNN arch: backbone + FPN in the graph, the two stages in torchvision's code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calcidet.model.builder import build_detector
from calcidet.model.inference import CalcinosisPredictor
from calcidet.model.onnx_export import export_onnx, onnx_metadata, onnx_runtime_detector

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _eager_and_exported(arch: str, size: int, path) -> tuple[CalcinosisPredictor, CalcinosisPredictor, dict]:
    """An untrained predictor reporting every box, its ONNX Runtime twin, and the export's metadata."""
    torch.manual_seed(0)
    model = build_detector(arch=arch, num_classes=2, min_size=size, max_size=size, score_thresh=0.0)
    eager = CalcinosisPredictor(model.eval(), size, threshold=0.0, class_names=["calcinosis"])
    export_onnx(eager.model, path, size, {"arch": arch})
    ort = CalcinosisPredictor(onnx_runtime_detector(eager.model, path), size, threshold=0.0,
                              class_names=["calcinosis"])
    return eager, ort, onnx_metadata(path)


@pytest.mark.slow
def test_faster_rcnn_runs_in_onnx_runtime_with_the_eager_boxes(tmp_path) -> None:
    eager, ort, meta = _eager_and_exported("fasterrcnn_mobilenet_v3_large_fpn", 320, tmp_path / "rcnn.onnx")
    assert meta["head_outputs"] == []  # features only: both stages stay in Python
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
    eager, ort, meta = _eager_and_exported("fcos_efficientnet_lite0", 192, tmp_path / "lite0.onnx")
    assert meta["fixed_side"] == 192
    rng = np.random.default_rng(0)
    film, square = rng.random((400, 260), dtype=np.float32), rng.random((300, 300), dtype=np.float32)
    # Eager, batched with a square film, pads this one to 192 x 192 as the runtime must: same input.
    e, o = eager([film, square])[0], ort([film])[0]
    assert len(e) > 10 and abs(len(e) - len(o)) <= 1
    for box, score in zip(e.boxes, e.scores):
        close = (np.abs(o.boxes - box).max(axis=1) <= 1.0) & (np.abs(o.scores - score) <= 1e-3)
        assert close.any() or score <= np.sort(e.scores)[1], (box, score)


@pytest.mark.slow
def test_onnx_backend_refuses_sizes_a_fixed_side_graph_cannot_read_before_any_film() -> None:
    from calcidet.train.detect_predict import onnx_runtime

    torch.manual_seed(0)
    model = build_detector(arch="fcos_efficientnet_lite0", num_classes=2, min_size=160, max_size=160)
    predictor = CalcinosisPredictor(model.eval(), 160, threshold=0.0, class_names=["calcinosis"])
    assert onnx_runtime(predictor, None).net.backbone.fixed_side == 160  # the trained size alone: fine
    predictor.extra_sizes = (224,)
    with pytest.raises(ValueError, match="up to 160 px only, not 224 px"):
        onnx_runtime(predictor, None)
