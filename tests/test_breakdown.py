"""``model.breakdown`` and ``calcidet evaluate --by``: hand-counted sensitivities per group and class."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from calcidet.model.breakdown import (
    MISSING,
    GroundTruthFields,
    default_fields,
    field_value,
    image_breakdown,
    lesion_breakdown,
    size_bucket,
)
from calcidet.model.metrics import FROC_RATES, ImageResult, detection_metrics, froc_curve
from calcidet.train.evaluate_cmd import main as evaluate_main

HEADER = ["image", "x_min", "y_min", "x_max", "y_max", "confidence", "label"]

# 4 films of 100 x 100 px (short side 100): knee a.png (2 lesions), knee b.png (none), hip c.png
# (1 lesion, a real background), hip d.dcm (none, no view). Lesion sizes: 5 px = 0.05 small,
# 10 px = 0.10 medium, 20 px = 0.20 large. The pattern of the large lesion is not recorded.
FOUR_FILMS = {
    "images": [
        {"id": 1, "file_name": "images/a.png", "width": 100, "height": 100, "joint": "knee", "view": "AP",
         "patient_id": "p1", "pixel_spacing_mm": [0.1, 0.1]},
        {"id": 2, "file_name": "images/b.png", "width": 100, "height": 100, "joint": "knee", "view": "AP",
         "patient_id": "p2", "pixel_spacing_mm": [0.1, 0.1]},
        {"id": 3, "file_name": "images/c.png", "width": 100, "height": 100, "joint": "hip", "view": "LAT",
         "patient_id": "p3", "pixel_spacing_mm": [0.1, 0.1], "background": "normals/c.png"},
        {"id": 4, "file_name": "images/d.dcm", "width": 100, "height": 100, "joint": "hip",
         "patient_id": "p4", "pixel_spacing_mm": [0.1, 0.1]},
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 5, 5], "attributes": {"pattern": "punctate"}},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "attributes": {"pattern": "cloud"}},
        {"id": 3, "image_id": 3, "category_id": 1, "bbox": [20, 20, 20, 15]},
    ],
    "categories": [{"id": 1, "name": "calcinosis"}],
}
# By score: 0.9 finds the medium lesion, 0.8 FP (b), 0.7 finds the large one, 0.6 FP (d),
# 0.5 finds the small one, 0.4 FP (c). Over 4 films: 1 FP = 0.25 FP/image.
FOUR_FILM_DETECTIONS = [
    ["a.png", 50, 50, 60, 60, 0.9, "calcinosis"], ["b.png", 0, 0, 8, 8, 0.8, "calcinosis"],
    ["c.png", 20, 20, 40, 35, 0.7, "calcinosis"], ["d.dcm", 70, 70, 90, 90, 0.6, "calcinosis"],
    ["a.png", 10, 10, 15, 15, 0.5, "calcinosis"], ["c.png", 70, 0, 90, 20, 0.4, "calcinosis"],
]


def _sens(group: dict, *rates: float) -> list[float]:
    return [group[f"froc_sens@{r:g}fp"] for r in rates]


def _evaluate(tmp_path: Path, gt: dict, rows: list[list], *extra: str) -> tuple[int, dict | None]:
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with open(tmp_path / "detections.csv", "w", newline="") as f:
        csv.writer(f).writerows([HEADER, *rows])
    out = tmp_path / "report"
    status = evaluate_main(["--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "detections.csv"),
                            "--out", str(out), "--bootstrap", "0", *extra])
    return status, json.loads((out / "metrics.json").read_text()) if status == 0 else None


def test_size_buckets_are_share_of_the_short_side() -> None:
    assert size_bucket(np.array([0, 0, 7.9, 1]), 200, 100) == "small"  # 7.9 / 100
    assert size_bucket(np.array([0, 0, 1, 8]), 100, 300) == "medium"  # 8 / 100: bounds are inclusive below
    assert size_bucket(np.array([0, 0, 14.9, 1]), 100, 100) == "medium"
    assert size_bucket(np.array([0, 0, 30, 30]), 400, 200) == "large"  # 30 / 200 = 0.15


def test_field_value_follows_dotted_paths_and_marks_missing() -> None:
    rec = {"joint": "knee", "meta": {"scanner": "X1", "kv": 60}, "flag": True, "empty": None}
    assert field_value(rec, "joint") == "knee" and field_value(rec, "meta.scanner") == "X1"
    assert field_value(rec, "meta.kv") == "60" and field_value(rec, "flag") == "true"
    assert field_value(rec, "empty") == MISSING and field_value(rec, "meta.nope") == MISSING
    assert field_value(rec, "joint.deeper") == MISSING


def test_evaluate_breaks_down_by_size_joint_view_and_pattern(tmp_path, capsys) -> None:
    status, report = _evaluate(tmp_path, FOUR_FILMS, FOUR_FILM_DETECTIONS, "--by", "size", "joint", "view",
                               "pattern", "format", "source")
    assert status == 0
    rates = (0.125, 0.25, 0.5, 1.0)
    assert _sens(report["metrics"], *rates) == pytest.approx([1 / 3, 2 / 3, 1, 1])
    by = report["breakdown"]
    assert report["breakdown_level"] == {"size": "lesion", "joint": "image", "view": "image", "pattern": "lesion",
                                         "format": "image", "source": "image"}
    # Lesion groups: FPs over all 4 films; hits on other buckets' lesions are ignored.
    assert list(by["size"]) == ["small", "medium", "large"]
    assert _sens(by["size"]["small"], *rates) == pytest.approx([0, 0, 1, 1])  # found after 2 FPs (0.5/image)
    assert _sens(by["size"]["medium"], *rates) == pytest.approx([1, 1, 1, 1])  # found before any FP
    assert _sens(by["size"]["large"], *rates) == pytest.approx([0, 1, 1, 1])  # found after 1 FP (0.25/image)
    assert [by["size"][b]["n_lesions"] for b in ("small", "medium", "large")] == [1, 1, 1]
    assert by["size"]["small"]["froc_cpm"] == pytest.approx(5 / 7)
    # The unrecorded pattern is a group of its own; bare `pattern` is found inside `attributes`.
    assert list(by["pattern"]) == ["cloud", "punctate", MISSING]
    assert _sens(by["pattern"]["punctate"], *rates) == _sens(by["size"]["small"], *rates)
    assert _sens(by["pattern"][MISSING], *rates) == _sens(by["size"]["large"], *rates)
    # Image groups: every metric on their own films (knee: 2 films, FPs over 2).
    knee, hip = by["joint"]["knee"], by["joint"]["hip"]
    assert (knee["n_images"], knee["n_lesions"], hip["n_images"], hip["n_lesions"]) == (2, 2, 2, 1)
    assert _sens(knee, *rates) == pytest.approx([0.5, 0.5, 1, 1]) and _sens(hip, *rates) == pytest.approx([1] * 4)
    # knee AP50: hits at 0.9 and 0.5 around an FP at 0.8: precision 1 to recall 0.5, 2/3 beyond (101 points)
    assert knee["map_50"] == pytest.approx((51 + 50 * 2 / 3) / 101) and hip["map_50"] == pytest.approx(1.0)
    assert knee["auroc"] == pytest.approx(1.0)
    assert {v: g["n_images"] for v, g in by["view"].items()} == {"AP": 2, "LAT": 1, MISSING: 1}
    assert by["view"][MISSING]["map_50"] is None and by["view"][MISSING]["froc_sens@1fp"] is None  # no lesion
    assert {v: g["n_images"] for v, g in by["format"].items()} == {"dcm": 1, "png": 3}
    assert {v: g["n_images"] for v, g in by["source"].items()} == {"procedural": 3, "real": 1}
    assert "per_class" not in report
    printed = capsys.readouterr().out
    assert "by size" in printed and "by joint" in printed and "(missing)" in printed


def test_evaluate_default_fields_skip_identifiers_and_lists(tmp_path) -> None:
    status, report = _evaluate(tmp_path, FOUR_FILMS, FOUR_FILM_DETECTIONS)
    assert status == 0
    assert list(report["breakdown"]) == ["size", "joint", "view", "format", "source"]
    status, report = _evaluate(tmp_path, FOUR_FILMS, FOUR_FILM_DETECTIONS, "--by")
    assert status == 0 and report["breakdown"] == {}
    status, _ = _evaluate(tmp_path, FOUR_FILMS, FOUR_FILM_DETECTIONS, "--by", "scanner")
    assert status == 2


def test_evaluate_scores_each_class_alone(tmp_path) -> None:
    gt = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100},
                     {"id": 2, "file_name": "b.png", "width": 100, "height": 100}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                          {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20]},
                          {"id": 3, "image_id": 2, "category_id": 1, "bbox": [20, 20, 20, 20]}],
          "categories": [{"id": 1, "name": "calcinosis"}, {"id": 2, "name": "ossicle"}]}
    rows = [["a.png", 0, 0, 10, 10, 0.9, "calcinosis"],
            ["a.png", 0, 0, 10, 10, 0.8, "ossicle"],  # right place, wrong class: an ossicle FP
            ["a.png", 50, 50, 70, 70, 0.6, "ossicle"],
            ["b.png", 60, 60, 80, 80, 0.95, "calcinosis"],  # FP above both calcinosis hits
            ["b.png", 20, 20, 40, 40, 0.3, "calcinosis"]]
    status, report = _evaluate(tmp_path, gt, rows, "--by", "category")
    assert status == 0
    calcinosis, ossicle = report["per_class"]["calcinosis"], report["per_class"]["ossicle"]
    # calcinosis: FP, hit, hit -> precision 2/3 at recall 1, the best at every recall point
    assert calcinosis["map_50"] == pytest.approx(2 / 3) and calcinosis["n_lesions"] == 2
    assert ossicle["map_50"] == pytest.approx(0.5) and ossicle["n_lesions"] == 1  # FP, then hit
    assert _sens(calcinosis, 0.125, 0.5, 1) == pytest.approx([0, 1, 1])  # 1 FP over 2 films = 0.5/image
    assert _sens(ossicle, 0.125, 0.5, 1) == pytest.approx([0, 1, 1])
    # `category` as a lesion field is class-agnostic like the main FROC: the ossicle-labelled box on
    # the calcinosis lesion is a duplicate there, and b.png's 0.95 is the one FP before the ossicle hit.
    assert _sens(report["breakdown"]["category"]["ossicle"], 0.125, 0.5) == pytest.approx([0, 1])
    assert report["breakdown"]["category"]["calcinosis"]["n_lesions"] == 2


def _random_fields(seed: int, n: int = 30) -> tuple[list[ImageResult], GroundTruthFields]:
    rng = np.random.default_rng(seed)
    results, images, lesions = [], {}, {}
    for i in range(1, n + 1):
        corners = rng.uniform(0, 200, (int(rng.integers(0, 4)), 2))
        gt = np.c_[corners, corners + rng.uniform(5, 60, (len(corners), 1))].astype(np.float32)
        dets = np.r_[gt + rng.normal(0, 4, gt.shape), np.c_[c := rng.uniform(0, 200, (3, 2)), c + 30]]
        scores = np.round(rng.uniform(0, 1, len(dets)), 1)  # ties on purpose
        results.append(ImageResult(i, gt, dets.astype(np.float32), scores.astype(np.float32)))
        images[i] = {"id": i, "file_name": f"{i}.png", "width": 256, "height": 256, "joint": "knee"}
        lesions[i] = [{"id": 10 * i + j, "attributes": {"pattern": str(rng.choice(["a", "b"]))}}
                      for j in range(len(gt))]
    return results, GroundTruthFields(images, lesions, ["calcinosis"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_group_is_the_whole_set(seed) -> None:
    results, fields = _random_fields(seed)
    whole = detection_metrics(results)
    lesion = lesion_breakdown(results, fields, "category")["calcinosis"]
    image = image_breakdown(results, fields, "joint")["knee"]
    for rate in FROC_RATES:
        assert lesion[f"froc_sens@{rate:g}fp"] == whole[f"froc_sens@{rate:g}fp"]
    assert lesion["froc_cpm"] == whole["froc_cpm"] and lesion["n_lesions"] == froc_curve(results).num_lesions
    assert {k: image[k] for k in whole} == whole


@pytest.mark.parametrize("seed", [0, 1])
def test_lesion_groups_split_the_hits(seed) -> None:
    # Every hit at the loosest threshold belongs to exactly one group, so found lesions add up.
    results, fields = _random_fields(seed)
    groups = lesion_breakdown(results, fields, "pattern")
    assert list(groups) == ["a", "b"]
    found = sum(g["froc_sens@8fp"] * g["n_lesions"] for g in groups.values())
    whole = froc_curve(results)
    assert sum(g["n_lesions"] for g in groups.values()) == whole.num_lesions
    assert found == pytest.approx(whole.at_rates[8.0] * whole.num_lesions)
    assert all(0 <= g["froc_sens@1fp"] <= 1 and not math.isnan(g["froc_cpm"]) for g in groups.values())


def test_default_fields_need_two_to_twenty_shared_values() -> None:
    images = {i: {"id": i, "file_name": f"{i}.png", "width": 9, "height": 9, "joint": ["knee", "hip"][i % 2],
                  "side": "L", "serial": f"s{i}", "meta": {"site": ["x", "y", "z"][i % 3]}, "spacing_mm": i % 2,
                  "study_id": i % 2, "tags": [i % 2]}
              for i in range(1, 7)}
    fields = GroundTruthFields(images, {i: [] for i in images}, ["calcinosis"])
    assert default_fields(fields) == ["joint", "meta.site"]  # no lesions: no size; one format, one source
