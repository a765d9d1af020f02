"""What ``calcidet detect`` hands to other tools: COCO files, the threshold column, exit status, version.

    .venv/bin/python -m pytest tests/test_detect_outputs.py -q

The network is ``fcos_tiny`` with random weights at 64 px (conftest's ``small_untrained_checkpoint``): its
scores sit around 0.071-0.079, so a threshold of 0.074 over the default 0.05 floor splits the boxes.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from calcidet.train.cli import main as calcidet_main
from calcidet.train.detect_cmd import main as detect_main
from tests.bad_inputs import encode, noise_image

THRESHOLD = "0.074"  # the untrained network scores 0.071-0.079 on these films


def _films(folder: Path, n: int = 4, broken: int = 0) -> list[str]:
    """``n`` readable PNG films (two sizes) and ``broken`` unreadable ones; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"film{i}.png").write_bytes(encode(".png", noise_image(96, 80 + 16 * (i % 2), seed=i)))
    for i in range(broken):
        (folder / f"broken{i}.png").write_bytes(b"not a radiograph " * (i + 1))
    return sorted(p.name for p in folder.iterdir())


def _detect(images: Path, checkpoint: Path, out: Path, *extra: str) -> int:
    return detect_main([str(images), "--checkpoint", str(checkpoint), "--output", str(out),
                        "--num-workers", "0", "--batch-size", "2", "--threshold", THRESHOLD, *extra])


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _ground_truth(root: Path, names: list[str]) -> Path:
    """A COCO file beside ``images/`` with ids and a category id that are not calcidet's 1..N."""
    images = [{"id": 100 + 7 * i, "file_name": f"images/{n}", "width": 80 + 16 * (i % 2), "height": 96}
              for i, n in enumerate(names)]
    annotations = [{"id": i + 1, "image_id": im["id"], "category_id": 9, "bbox": [10, 20, 30, 25],
                    "area": 750, "iscrowd": 0} for i, im in enumerate(images[::2])]
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": 3, "name": "joint effusion"}, {"id": 9, "name": "calcinosis"}]}
    path = root / "annotations.json"
    path.write_text(json.dumps(gt))
    return path


@pytest.mark.slow
def test_coco_outputs_use_the_ground_truth_ids_and_load_in_pycocotools(small_untrained_checkpoint, tmp_path) -> None:
    names = _films(tmp_path / "images")
    gt_path = _ground_truth(tmp_path, names[:3])  # the last film is not in the ground truth
    out = tmp_path / "out"
    assert _detect(tmp_path / "images", small_untrained_checkpoint, out, "--gt", str(gt_path)) == 0
    gt_ids = {f"images/{n}": 100 + 7 * i for i, n in enumerate(names[:3])}

    results = json.loads((out / "detections.json").read_text())
    assert isinstance(results, list) and results, "the untrained network scores boxes over the 0.05 floor"
    assert {r["image_id"] for r in results} <= set(gt_ids.values())  # the extra film is left out
    assert {r["category_id"] for r in results} == {9}
    gt = COCO(str(gt_path))
    found = gt.loadRes(results)  # refuses anything but a list with the GT's image ids
    evaluation = COCOeval(gt, found, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert len(evaluation.stats) == 12 and evaluation.params.imgIds == sorted(gt_ids.values())

    dataset = COCO(str(out / "detections_coco.json"))  # the full file loads as a COCO dataset
    images = {im["file_name"]: im["id"] for im in dataset.dataset["images"]}
    assert {k: v for k, v in images.items() if k in gt_ids} == gt_ids  # the GT's ids and file names
    assert images[names[3]] > max(gt_ids.values())  # a film the GT lacks gets a fresh id
    assert [c["id"] for c in dataset.dataset["categories"]] == [9]
    above = [r for r in _rows(out / "detections.csv") if r["above_threshold"] == "true"]
    assert len(dataset.dataset["annotations"]) == len(above) > 0
    assert all(a["score"] >= float(THRESHOLD) and a["area"] > 0 for a in dataset.dataset["annotations"])
    run = json.loads((out / "run.json").read_text())
    assert "3 of 4 images matched" in " ".join(run["coco"]["notes"])


@pytest.mark.slow
def test_gt_matched_by_name_and_single_category_by_position(small_untrained_checkpoint, tmp_path) -> None:
    names = _films(tmp_path / "films")
    gt = {"images": [{"id": 5 + i, "file_name": f"elsewhere/{n}", "width": 80 + 16 * (i % 2), "height": 96}
                     for i, n in enumerate(names)],
          "annotations": [], "categories": [{"id": 4, "name": "calcification"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))  # its files are not these: names decide
    out = tmp_path / "out"
    assert _detect(tmp_path / "films", small_untrained_checkpoint, out, "--gt", str(tmp_path / "gt.json")) == 0
    results = json.loads((out / "detections.json").read_text())
    assert {r["category_id"] for r in results} == {4}
    assert {r["image_id"] for r in results} <= set(range(5, 5 + len(names)))
    COCO(str(tmp_path / "gt.json")).loadRes(results)

    # The ids are not in the journal: a rerun without --gt rewrites the files without the network.
    assert _detect(tmp_path / "films", small_untrained_checkpoint, out) == 0
    assert json.loads((out / "run.json").read_text())["counts"]["processed_this_run"] == 0
    results = json.loads((out / "detections.json").read_text())
    assert {r["category_id"] for r in results} == {1} and {r["image_id"] for r in results} <= {1, 2, 3, 4}


def test_unusable_gt_stops_before_the_run(small_untrained_checkpoint, tmp_path, capsys) -> None:
    _films(tmp_path / "films", n=1)
    gt = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    assert _detect(tmp_path / "films", small_untrained_checkpoint, tmp_path / "out", "--gt", str(tmp_path / "gt.json")) == 2
    assert "no category named ['calcinosis']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_one_run_marks_the_threshold_and_keeps_the_rest(small_untrained_checkpoint, tmp_path) -> None:
    names = _films(tmp_path / "images")
    assert _detect(tmp_path / "images", small_untrained_checkpoint, tmp_path / "low") == 0
    rows = _rows(tmp_path / "low" / "detections.csv")
    assert {r["above_threshold"] for r in rows} == {"true", "false"}
    assert min(float(r["confidence"]) for r in rows) >= 0.05
    for r in rows:  # the 4-digit confidence is rounded: compare away from the threshold
        if abs(float(r["confidence"]) - float(THRESHOLD)) > 1e-4:
            assert (r["above_threshold"] == "true") == (float(r["confidence"]) >= float(THRESHOLD)), r
    images = {r["image"]: r for r in _rows(tmp_path / "low" / "images.csv")}
    above = Counter(r["image"] for r in rows if r["above_threshold"] == "true")
    assert sorted(images) == names
    for name, row in images.items():  # counts at the threshold, the image's top score over all boxes
        assert int(row["num_detections"]) == above[name]
        assert float(row["max_confidence"]) == max(float(r["confidence"]) for r in rows if r["image"] == name)
    run = json.loads((tmp_path / "low" / "run.json").read_text())
    assert run["threshold"] == float(THRESHOLD) and run["score_floor"] == 0.05
    assert run["counts"]["detections"] == sum(above.values()) and run["counts"]["boxes"] == len(rows)
    results = json.loads((tmp_path / "low" / "detections.json").read_text())
    assert sum(r["above_threshold"] for r in results) == sum(above.values())

    # The marked rows are what a run that keeps nothing under the threshold writes.
    assert _detect(tmp_path / "images", small_untrained_checkpoint, tmp_path / "high", "--score-floor", THRESHOLD) == 0
    high = _rows(tmp_path / "high" / "detections.csv")
    assert high == [r for r in rows if r["above_threshold"] == "true"]
    # images.csv too, but for max_confidence: over every box kept, so a film whose best box lies under
    # the threshold has one only in the run that kept it.
    for row, want in zip(_rows(tmp_path / "high" / "images.csv"), images.values(), strict=True):
        if not above[want["image"]]:
            assert row.pop("max_confidence") == "" and want.pop("max_confidence") != ""
        assert row == want


@pytest.mark.slow
@pytest.mark.parametrize("readable", [0, 2])
def test_exit_status_says_whether_any_file_was_read(small_untrained_checkpoint, tmp_path, capsys, readable: int) -> None:
    names = _films(tmp_path / "in", n=readable, broken=3)
    status = _detect(tmp_path / "in", small_untrained_checkpoint, tmp_path / "out")
    rows = _rows(tmp_path / "out" / "images.csv")
    assert [r["image"] for r in rows] == names  # failures are listed either way
    assert [r["status"] for r in rows].count("error") == 3
    err = capsys.readouterr().err
    if readable:
        assert status == 0 and "none of the" not in err
    else:
        assert status == 2 and "none of the 3 files could be read" in err and "not a PNG" in err


def test_version(capsys) -> None:
    assert calcidet_main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"calcidet {version('calcidet')}"

