"""``calcidet export --format onnx``: ONNX Runtime finds what the eager model finds on a real-size film."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calcidet.data.synth import synthesize
from calcidet.model.inference import CalcinosisPredictor, Detections
from calcidet.model.onnx_export import onnx_metadata, onnx_runtime_detector
from calcidet.train.export_cmd import main as export_main
from tests.bad_inputs import write_blurred_film, write_untrained_checkpoint

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _matched(eager: Detections, ort: Detections) -> None:
    """Every box of one has a box of the other within 1 px whose score is within 1e-3."""
    assert len(eager) > 10 and abs(len(eager) - len(ort)) <= 1  # one box may sit right at the top-k cut
    for a, b in ((eager, ort), (ort, eager)):
        for box, score in zip(a.boxes, a.scores):
            close = (np.abs(b.boxes - box).max(axis=1) <= 1.0) & (np.abs(b.scores - score) <= 1e-3)
            assert close.any() or score <= np.sort(a.scores)[1], (box, score)


@pytest.mark.slow
def test_onnx_runtime_matches_eager_on_a_real_size_film(tmp_path) -> None:
    synthesize(tmp_path / "films", n=2, seed=5, size_range=(1000, 1000), workers=1, verbose=False)
    films = sorted((tmp_path / "films" / "images").iterdir())
    ckpt = write_untrained_checkpoint(tmp_path / "c.ckpt", image_size=384, threshold=0.0, even_scores=True)
    onnx_path = tmp_path / "model.onnx"
    assert export_main([str(ckpt), "--format", "onnx", "--output", str(onnx_path)]) == 0
    stored = onnx_metadata(onnx_path)
    assert stored["arch"] == "fcos_tiny" and stored["image_size"] == 384
    assert stored["head_outputs"] == ["bbox_ctrness", "bbox_regression", "cls_logits"]

    eager = CalcinosisPredictor.from_checkpoint(ckpt)
    ort = CalcinosisPredictor.from_checkpoint(ckpt)
    ort.model = onnx_runtime_detector(ort.model, onnx_path)
    for batch_size in (1, 2):  # one film alone, and two films of different shapes padded together
        for e, o in zip(eager.predict_paths(films, batch_size=batch_size),
                        ort.predict_paths(films, batch_size=batch_size), strict=True):
            assert e.error is None and o.error is None
            assert (e.scores > 0.2).any()  # not a model whose scores are all tiny
            _matched(e, o)
    # The eager model is left whole: the copy got the ONNX graph, not the original.
    assert type(eager.model.net.backbone).__name__ != "OnnxBackbone"


def test_export_refuses_an_unusable_checkpoint(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert export_main([str(bad), "--output", str(tmp_path / "m.onnx")]) == 2
    assert "cannot use checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_detect_backend_onnxruntime_writes_what_torch_writes(untrained_checkpoint, tmp_path) -> None:
    from calcidet.train.detect_cmd import main as detect_main

    images = tmp_path / "images"
    images.mkdir()
    for i, shape in enumerate([(400, 300), (300, 420), (350, 350)]):
        write_blurred_film(images / f"f{i}.png", shape, i)
    ckpt = untrained_checkpoint
    rows = {}
    for backend in ("torch", "onnxruntime"):  # onnxruntime without --onnx: exported on the fly
        out = tmp_path / backend
        assert detect_main([str(images), "--checkpoint", str(ckpt), "--output", str(out), "--num-workers", "0",
                            "--backend", backend]) == 0
        run = json.loads((out / "run.json").read_text())
        assert run["arguments"]["backend"] == backend and run["counts"]["ok"] == 3
        rows[backend] = json.loads((out / "detections.json").read_text())
    assert len(rows["torch"]) > 10
    assert abs(len(rows["torch"]) - len(rows["onnxruntime"])) <= 3  # a box may sit at the top-k cut
    matched = [r for r in rows["torch"] if any(
        o["image_id"] == r["image_id"] and abs(o["score"] - r["score"]) <= 1e-3
        and np.abs(np.subtract(o["bbox"], r["bbox"])).max() <= 1.0 for o in rows["onnxruntime"])]
    assert len(matched) >= len(rows["torch"]) - 3


@pytest.mark.slow
def test_detect_refuses_an_onnx_file_of_another_checkpoint(tmp_path, capsys) -> None:
    from calcidet.train.detect_cmd import main as detect_main

    ours, other = (write_untrained_checkpoint(tmp_path / f"{name}.ckpt", image_size=128, threshold=threshold,
                                              even_scores=True) for name, threshold in (("ours", 0.0), ("other", 0.5)))
    assert export_main([str(other), "--output", str(tmp_path / "other.onnx")]) == 0
    write_blurred_film(tmp_path / "a.png", (200, 200), 0)
    assert detect_main([str(tmp_path / "a.png"), "--checkpoint", str(ours), "--output", str(tmp_path / "out"),
                        "--backend", "onnxruntime", "--onnx", str(tmp_path / "other.onnx")]) == 2
    assert "exported from another checkpoint" in capsys.readouterr().err
