"""Look-alikes flagged and what false positives lie on (``model.lookalikes``, ``calcidet evaluate``)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from calcidet.model.lookalikes import NONE, lookalike_report, recorded_lookalikes
from calcidet.model.metrics import ImageResult
from calcidet.train.cli import main as calcidet_main
from calcidet.train.evaluate_cmd import main as evaluate_main
from calcidet.train.report_cmd import review_against_gt

# a.png: a lesion, a tendinitis speck and a marker; b.png: no lesion, an osteophyte and an ignore region;
# c.png: nothing recorded. Boxes in COCO xywh.
GT = {
    "images": [
        {"id": 1, "file_name": "a.png", "width": 400, "height": 400,
         "distractors": [{"kind": "tendinitis", "bbox": [100, 100, 10, 10]},
                         {"kind": "marker", "bbox": [200, 200, 40, 20], "text": "R"}]},
        {"id": 2, "file_name": "b.png", "width": 400, "height": 400,
         "distractors": [{"kind": "osteophyte", "bbox": [0, 0, 10, 10]}]},
        {"id": 3, "file_name": "c.png", "width": 400, "height": 400},
    ],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40]},
                    {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 50, 50], "iscrowd": 1}],
    "categories": [{"id": 1, "name": "calcinosis"}],
}
# (image, xyxy, score) and what each one is
DETECTIONS = [
    ("a.png", [10, 10, 50, 50], 0.9),      # finds the lesion
    ("a.png", [12, 12, 50, 50], 0.7),      # a duplicate of it: not a false positive
    ("a.png", [95, 95, 115, 115], 0.8),    # holds the whole speck: on tendinitis
    ("a.png", [300, 300, 340, 340], 0.6),  # on nothing recorded
    ("a.png", [230, 200, 260, 220], 0.5),  # a third of its own area on the marker: on it
    ("b.png", [55, 55, 95, 95], 0.95),     # in the ignore region: not a false positive
    ("b.png", [2, 2, 8, 8], 0.3),          # inside the osteophyte's box: on it
    ("b.png", [5, 5, 25, 25], 0.2),        # covers a quarter of the osteophyte, under 0.3: on nothing
    ("c.png", [0, 0, 20, 20], 0.4),        # no look-alike on the film: on nothing
]


def _results() -> list[ImageResult]:
    results = []
    for im in GT["images"]:
        rows = [(box, s) for name, box, s in DETECTIONS if name == im["file_name"]]
        anns = [a for a in GT["annotations"] if a["image_id"] == im["id"]]

        def xyxy(items: list[dict]) -> np.ndarray:
            return np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in items)], float).reshape(-1, 4)

        results.append(ImageResult(
            image_id=im["id"], gt_boxes=xyxy([a for a in anns if not a.get("iscrowd")]),
            ignore_boxes=xyxy([a for a in anns if a.get("iscrowd")]),
            boxes=np.array([b for b, _ in rows], float).reshape(-1, 4), scores=np.array([s for _, s in rows])))
    return results


def test_recorded_lookalikes_are_xyxy_per_image() -> None:
    found = recorded_lookalikes(GT)
    assert set(found) == {1, 2}  # c.png records none
    assert [kind for kind, _ in found[1]] == ["tendinitis", "marker"]
    np.testing.assert_array_equal(found[1][1][1], [200, 200, 240, 220])


def test_report_counts_flagged_lookalikes_and_false_positive_sites_per_threshold() -> None:
    report = lookalike_report(_results(), recorded_lookalikes(GT), {"high": 0.55, "low": 0.1})
    assert report["recorded"] == {"tendinitis": 1, "marker": 1, "osteophyte": 1}
    assert report["flagged"]["high"] == {"tendinitis": 1, "marker": 0, "osteophyte": 0}
    assert report["flagged"]["low"] == {"tendinitis": 1, "marker": 1, "osteophyte": 1}
    assert report["false_positives_on"]["high"] == {"tendinitis": 1, NONE: 1}
    assert report["false_positives_on"]["low"] == {NONE: 3, "tendinitis": 1, "marker": 1, "osteophyte": 1}


def test_two_false_positives_on_one_lookalike_flag_it_once() -> None:
    result = ImageResult(image_id=1, gt_boxes=np.zeros((0, 4)), scores=np.array([0.9, 0.8]),
                         boxes=np.array([[98, 98, 112, 112], [100, 100, 105, 105]], float))
    report = lookalike_report([result], recorded_lookalikes(GT), {"all": 0.0})
    assert report["flagged"]["all"]["tendinitis"] == 1
    assert report["false_positives_on"]["all"] == {"tendinitis": 2}


def test_evaluate_reports_lookalikes_at_the_operating_threshold_and_1_fp_per_image(tmp_path, capsys) -> None:
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    with open(tmp_path / "detections.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "x_min", "y_min", "x_max", "y_max", "confidence", "label"])
        writer.writerows([name, *box, s, "calcinosis"] for name, box, s in DETECTIONS)
    (tmp_path / "run.json").write_text(json.dumps({"threshold": 0.55, "score_floor": 0.05}))
    assert evaluate_main(["--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "detections.csv"),
                          "--out", str(tmp_path / "r"), "--bootstrap", "0"]) == 0
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())["lookalikes"]
    # 6 false positives on 3 films: at most 3 of them keep 1 per image, the 3 best (0.8, 0.6, 0.5)
    assert report["thresholds"] == {"operating": 0.55, "1fp": pytest.approx(0.5)}
    assert report["flagged"]["operating"] == {"tendinitis": 1, "marker": 0, "osteophyte": 0}
    assert report["false_positives_on"]["1fp"] == {"tendinitis": 1, NONE: 1, "marker": 1}
    printed = capsys.readouterr().out
    assert "look-alikes [recorded]" in printed and "false positives >= 0.550 (operating): 2, on tendinitis 1" in printed


def test_evaluate_leaves_lookalikes_out_when_none_are_recorded(tmp_path) -> None:
    gt = {**GT, "images": [{k: v for k, v in im.items() if k != "distractors"} for im in GT["images"]]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with open(tmp_path / "detections.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "x_min", "y_min", "x_max", "y_max", "confidence", "label"],
                                 ["a.png", 10, 10, 50, 50, 0.9, "calcinosis"]])
    assert evaluate_main(["--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "detections.csv"),
                          "--out", str(tmp_path / "r"), "--bootstrap", "0"]) == 0
    assert "lookalikes" not in json.loads((tmp_path / "r" / "metrics.json").read_text())


def test_report_names_the_lookalike_each_false_positive_lies_on(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    (run / "run.json").write_text(json.dumps({"threshold": 0.25, "score_floor": 0.05}))
    with open(run / "images.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "status", "width", "height"],
                                 *([im["file_name"], "ok", 400, 400] for im in GT["images"])])
    with open(run / "detections.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "x_min", "y_min", "x_max", "y_max", "confidence", "label",
                         "width_mm", "height_mm", "above_threshold"])
        writer.writerows([name, *box, s, "calcinosis", "", "", str(s >= 0.25).lower()] for name, box, s in DETECTIONS)
    summary = review_against_gt(str(tmp_path / "gt.json"), run, 0.25, 0.3)
    on = {(r.film, round(s, 3)): kind for r in summary.reviews for _, s, kind in r.false_positives}
    # the box at 0.2 is under the threshold: no false positive here
    assert on == {("a.png", 0.8): "tendinitis", ("a.png", 0.6): None, ("a.png", 0.5): "marker",
                  ("b.png", 0.3): "osteophyte", ("c.png", 0.4): None}
    assert summary.lookalikes["flagged"]["operating"] == {"tendinitis": 1, "marker": 1, "osteophyte": 1}
    assert calcidet_main(["report", str(run), "--gt", str(tmp_path / "gt.json")]) == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="lookalikes"' in page and "0.80 at x 95, y 95: 20 x 20 px, on tendinitis" in page
    assert "The 5 false positives lie on: none 2, tendinitis 1, marker 1, osteophyte 1" in page
