"""``calcidet evaluate``: name matching, reporting, and agreement with ``model.metrics``."""

from __future__ import annotations

import csv
import json
import math
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from calcidet.data.coco import load_coco
from calcidet.model.metrics import (
    ImageResult,
    bootstrap_ci,
    bootstrap_detection_metrics,
    coco_ap,
    detection_metrics,
    pr_curve,
)
from calcidet.train.detect_cmd import main as detect_main
from calcidet.train.evaluate_cmd import main as evaluate_main
from calcidet.train.evaluate_cmd import match_names
from tests.bad_inputs import random_results

METRIC_KEYS = {"map", "map_50", "froc_sens@0.125fp", "froc_sens@0.25fp", "froc_sens@0.5fp", "froc_sens@1fp",
               "froc_sens@2fp", "froc_sens@4fp", "froc_sens@8fp", "froc_cpm", "auroc"}


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_match_names_tries_exact_then_drops_shared_folders() -> None:
    gt = ["images/a.png", "images/b.dcm"]
    assert match_names(gt, ["images/a.png", "images/b.dcm"])[0] == {n: n for n in gt}
    mapping, rule = match_names(gt, ["a.png", "b.dcm", "c.png"])  # detect run on the images/ folder
    assert mapping == {"a.png": "images/a.png", "b.dcm": "images/b.dcm"} and "GT" in rule
    mapping, rule = match_names(gt, ["test/images/a.png", "test/images/b.dcm"])  # run on the parent
    assert mapping == {"test/images/a.png": "images/a.png", "test/images/b.dcm": "images/b.dcm"}
    mapping, rule = match_names(gt, ["test/images/a.png", "train/images/z.png"])  # run on all splits
    assert mapping == {"test/images/a.png": "images/a.png"} and "ends with" in rule
    assert match_names(gt, ["x.png"])[0] == {}


def test_evaluate_reports_perfect_detections_and_every_leftover(tmp_path, capsys) -> None:
    gt = {
        "images": [{"id": i, "file_name": f"images/{n}", "width": 100, "height": 80}
                   for i, n in enumerate(["a.png", "b.png", "c.png", "d.png"], start=1)],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
                        {"id": 2, "image_id": 3, "category_id": 1, "bbox": [50, 40, 30, 30]},
                        {"id": 3, "image_id": 4, "category_id": 1, "bbox": [5, 5, 10, 10]}],
        "categories": [{"id": 1, "name": "calcinosis"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(gt))
    det = tmp_path / "det"
    det.mkdir()
    _write_csv(det / "detections.csv", ["image", "x_min", "y_min", "x_max", "y_max", "confidence", "label"],
               [["a.png", 10, 10, 30, 30, 0.9, "calcinosis"], ["zzz.png", 0, 0, 5, 5, 0.5, "calcinosis"]])
    _write_csv(det / "images.csv", ["image", "status"],
               [["a.png", "ok"], ["b.png", "ok"], ["c.png", "error"], ["zzz.png", "ok"]])
    (det / "run.json").write_text(json.dumps({"threshold": 0.3}))
    out = tmp_path / "report"
    assert evaluate_main(["--gt", str(tmp_path / "annotations.json"), "--pred", str(det / "detections.csv"),
                          "--out", str(out), "--bootstrap", "20"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["metrics"]) == METRIC_KEYS and set(report["ci95"]) == METRIC_KEYS
    assert report["metrics"]["map_50"] == pytest.approx(1.0) and report["metrics"]["froc_cpm"] == pytest.approx(1.0)
    assert report["metrics"]["auroc"] == pytest.approx(1.0)
    assert report["failed_in_detect"] == ["images/c.png"] and report["not_in_detect_run"] == ["images/d.png"]
    assert report["unmatched_predictions"] == ["zzz.png"]
    assert report["counts"]["evaluated_images"] == 2 and report["counts"]["lesions"] == 1
    printed = capsys.readouterr().out
    assert "froc_cpm" in printed and "--score-floor 0.05" in printed  # an old run kept nothing under 0.3
    _assert_png(out / "froc.png")
    _assert_png(out / "pr_curve.png")


def test_evaluate_honours_ignore_regions(tmp_path, capsys) -> None:
    # a.png: a lesion and an ignore region over a marker; b.png: no lesion, an ignore region only
    gt = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80},
                     {"id": 2, "file_name": "b.png", "width": 100, "height": 80}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 40, 30, 30], "iscrowd": 1},
                          {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 50], "iscrowd": 1}],
          "categories": [{"id": 1, "name": "calcinosis"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    rows = [["a.png", 10, 10, 30, 30, 0.6, "calcinosis"], ["a.png", 65, 45, 85, 65, 0.9, "calcinosis"],
            ["b.png", 5, 5, 25, 25, 0.95, "calcinosis"], ["b.png", 70, 60, 80, 70, 0.1, "calcinosis"]]
    _write_csv(tmp_path / "detections.csv", ["image", "x_min", "y_min", "x_max", "y_max", "confidence", "label"], rows)
    _write_csv(tmp_path / "images.csv", ["image", "status"], [["a.png", "ok"], ["b.png", "ok"]])
    assert evaluate_main(["--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "detections.csv"),
                          "--out", str(tmp_path / "r"), "--bootstrap", "0"]) == 0
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert report["counts"]["lesions"] == 1 and report["counts"]["positive_images"] == 1
    assert report["counts"]["ignore_regions"] == 2 and report["counts"]["ignored_detections"] == 2
    m = report["metrics"]
    assert m["froc_sens@0.125fp"] == pytest.approx(1.0) and m["auroc"] == pytest.approx(1.0)  # b.png scores 0.1
    assert m["map_50"] == pytest.approx(1.0)
    assert "2 ignore regions (iscrowd: 1): 2 detections in them" in capsys.readouterr().out


def test_evaluate_refuses_unrelated_names(tmp_path, capsys) -> None:
    gt = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}], "annotations": [],
          "categories": [{"id": 1, "name": "calcinosis"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    _write_csv(tmp_path / "detections.csv", ["image", "x_min", "y_min", "x_max", "y_max", "confidence", "label"],
               [["other.png", 0, 0, 5, 5, 0.5, "calcinosis"]])
    assert evaluate_main(["--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "detections.csv"),
                          "--out", str(tmp_path / "r")]) == 2
    assert "no image" in capsys.readouterr().err


def _random_results(seed: int, n: int = 30) -> list[ImageResult]:
    return random_results(seed, n)


def test_fast_bootstrap_equals_resampling_detection_metrics() -> None:
    results = _random_results(0)
    slow = bootstrap_ci(results, partial(detection_metrics, hit_iou=0.3), n=12, seed=1)
    fast = bootstrap_detection_metrics(results, 0.3, n=12, seed=1)
    assert set(fast) == set(slow) == METRIC_KEYS
    for key in fast:
        assert fast[key] == pytest.approx(slow[key], nan_ok=True), key
    assert fast != bootstrap_detection_metrics(results, 0.3, n=12, seed=2)
    point = detection_metrics(results)
    for key in ("map_50", "froc_cpm"):
        low, high = fast[key]
        assert 0 <= low <= high <= 1 and low - 0.1 <= point[key] <= high + 0.1


def test_pr_curve_averages_to_ap50() -> None:
    results = _random_results(1)
    recall, precision = pr_curve(results)
    assert len(recall) == 101 and precision.mean() == pytest.approx(coco_ap(results)["map_50"])


@pytest.mark.slow
def test_evaluate_agrees_with_model_metrics_on_detect_output(tiny_synth, tiny_checkpoint, tmp_path) -> None:
    test_dir = tiny_synth["test"].parent
    det = tmp_path / "det"
    assert detect_main([str(test_dir / "images"), "--checkpoint", str(tiny_checkpoint), "--output", str(det),
                        "--threshold", "0.01", "--num-workers", "0"]) == 0
    out = tmp_path / "report"
    assert evaluate_main(["--gt", str(tiny_synth["test"]), "--pred", str(det / "detections.csv"),
                          "--out", str(out), "--bootstrap", "20"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["counts"]["evaluated_images"] == 8 and report["counts"]["unmatched_predictions"] == 0
    _assert_png(out / "froc.png")
    _assert_png(out / "pr_curve.png")

    # The same detections scored directly: evaluate must add nothing and lose nothing.
    rows: dict[str, list[dict[str, str]]] = {}
    with open(det / "detections.csv", newline="") as f:
        for row in csv.DictReader(f):
            rows.setdefault(f"images/{row['image']}", []).append(row)
    results = []
    for im in load_coco(tiny_synth["test"]).images:
        mine = rows.get(im.file_name, [])
        boxes = np.array([[float(r[k]) for k in ("x_min", "y_min", "x_max", "y_max")] for r in mine], np.float32)
        results.append(ImageResult(im.id, im.boxes, boxes.reshape(-1, 4),
                                   np.array([float(r["confidence"]) for r in mine], np.float32),
                                   im.labels, np.ones(len(mine), np.int64)))
    direct = detection_metrics(results)
    assert set(report["metrics"]) == set(direct) == METRIC_KEYS
    for key, value in direct.items():
        got = report["metrics"][key]
        assert (got is None and math.isnan(value)) or got == pytest.approx(value, abs=1e-9), key
