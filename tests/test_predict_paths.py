"""The Python API: ``predict_paths`` in batches with per-file errors, the README example, predict_step."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import numpy as np
import torch

from calcidet.data.dataset import FolderDataset, detection_collate
from calcidet.model.inference import CalcinosisPredictor
from calcidet.model.module import CalcinosisDetector
from tests.bad_inputs import write_blurred_film, write_untrained_checkpoint

REPO = Path(__file__).resolve().parents[1]


def test_predict_paths_batches_and_returns_each_files_error(untrained_checkpoint, tmp_path) -> None:
    predictor = CalcinosisPredictor.from_checkpoint(untrained_checkpoint)
    good = [write_blurred_film(tmp_path / f"f{i}.png", (300 + 40 * i, 200), i) for i in range(3)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    paths = [good[0], broken, good[1], tmp_path / "missing.png", good[2]]
    results = predictor.predict_paths(paths, batch_size=2)
    assert len(results) == len(paths)
    assert [r.error is None for r in results] == [True, False, True, False, True]
    assert len(results[1]) == 0 and results[1].boxes.shape == (0, 4)
    for path, found in zip(good, (results[0], results[2], results[4])):
        assert len(found) > 0
        assert (found.scores >= predictor.threshold).all()
        h = 300 + 40 * good.index(path)
        assert found.boxes[:, 3].max() <= h + 1e-3 and found.boxes[:, 2].max() <= 200 + 1e-3  # original pixels
    alone = predictor.predict_paths([good[1]], batch_size=1)[0]  # batching does not change a film's result
    np.testing.assert_allclose(alone.scores, results[2].scores, atol=1e-5)


def test_a_failing_image_does_not_fail_its_batch(untrained_checkpoint) -> None:
    predictor = CalcinosisPredictor.from_checkpoint(untrained_checkpoint)
    images = [torch.rand(1, 128, 100), torch.rand(2, 5, 128, 100), torch.rand(1, 100, 128)]  # middle: 4-D
    found = predictor.detect_batch(images, [(256, 200), (256, 200), (200, 256)])
    assert [f.error is None for f in found] == [True, False, True]
    assert found[1].error.startswith("model failed")
    assert len(found[0]) > 0 and len(found[2]) > 0


def _readme_python_api() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return next(b for b in blocks if "predict_paths" in b)


def test_readme_python_api_example_runs_as_written(tmp_path) -> None:
    code = _readme_python_api()  # run verbatim, in a folder laid out as its placeholders say
    write_untrained_checkpoint(tmp_path / "runs/demo/checkpoints/last.ckpt", image_size=128, threshold=0.0,
                               even_scores=True)
    write_blurred_film(tmp_path / "knee.png", (400, 300), 1)
    (tmp_path / "hip.dcm").write_bytes(b"DICM but not really")
    out, cwd = io.StringIO(), os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    lines = out.getvalue().splitlines()
    assert any(line.startswith("hip.dcm failed:") for line in lines), lines
    assert any(line.startswith("knee.png") and "boxes" in line for line in lines), lines


def test_lightning_predict_step_goes_through_the_predictor(untrained_checkpoint, tmp_path) -> None:
    module = CalcinosisDetector(arch="fcos_tiny", image_size=128)
    state = torch.load(untrained_checkpoint)["state_dict"]
    module.model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    module.operating_threshold = 0.3
    module.eval()
    files = [write_blurred_film(tmp_path / "a.png", (300, 200), 0), tmp_path / "gone.png"]
    batch = detection_collate([s for s in FolderDataset(files, ["a.png", "gone.png"], 128)])
    with torch.inference_mode():
        found = module.predict_step(batch, 0)
    expected = CalcinosisPredictor.from_checkpoint(untrained_checkpoint, threshold=0.3).predict_paths(files)
    assert found[1].error is not None and expected[1].error is not None
    assert len(found[0]) > 0 and (found[0].scores >= 0.3).all()
    np.testing.assert_allclose(found[0].boxes, expected[0].boxes, atol=1e-4)
    np.testing.assert_allclose(found[0].scores, expected[0].scores, atol=1e-6)
