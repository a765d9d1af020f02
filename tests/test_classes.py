"""Classes come from the data: the training COCO's categories size the head, travel in the checkpoint,
and are what detect writes and evaluate matches. Category ids are whatever the labelling tool exported."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from calcidet.data.coco import CocoFormatError, read_class_names
from calcidet.model.checkpoint import load_checkpoint
from calcidet.train.cli import cli_main
from calcidet.train.detect_cmd import main as detect_main
from calcidet.train.evaluate_cmd import main as evaluate_main


def _relabel(src: Path, dst: Path, categories: list[dict], vascular_id: int | None) -> Path:
    """Copy a synthetic COCO file with other categories: masses get the first category; with
    ``vascular_id``, the unlabelled vascular look-alikes become boxes of that category."""
    coco = json.loads(src.read_text())
    coco["categories"] = categories
    for ann in coco["annotations"]:
        ann["category_id"] = categories[0]["id"]
    if vascular_id is not None:
        for im in coco["images"]:
            for d in im["distractors"]:
                if d["kind"] == "vascular":
                    x, y, w, h = d["bbox"]
                    coco["annotations"].append({"id": len(coco["annotations"]) + 1000, "image_id": im["id"],
                                                "category_id": vascular_id, "bbox": [x, y, w, h],
                                                "area": w * h, "iscrowd": 0})
    for im in coco["images"]:
        im["file_name"] = str(src.parent / im["file_name"])  # keep pointing at the original films
    dst.write_text(json.dumps(coco))
    return dst


TWO = [{"id": 7, "name": "vascular"}, {"id": 3, "name": "calcinosis"}]  # unsorted, as files may be


def test_read_class_names_orders_by_category_id(tmp_path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": TWO}))
    assert read_class_names(path) == ["calcinosis", "vascular"]
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(CocoFormatError, match="no categories"):
        read_class_names(path)


@pytest.mark.slow
def test_two_categories_with_ids_3_and_7_train_detect_and_evaluate(tiny_synth, fit_args, tmp_path) -> None:
    files = {s: _relabel(tiny_synth[s], tmp_path / f"{s}.json", [TWO[1], TWO[0]], 7) for s in tiny_synth}
    train = json.loads(files["train"].read_text())
    assert {a["category_id"] for a in train["annotations"]} == {3, 7}
    cli = cli_main(["fit", *fit_args(files, tmp_path, "--trainer.max_epochs", "1")])
    assert cli.model.class_names == ["calcinosis", "vascular"]
    last = tmp_path / "ckpt" / "last.ckpt"
    assert load_checkpoint(last)["calcidet"]["class_names"] == ["calcinosis", "vascular"]

    test = cli_main(["test", *fit_args(files, tmp_path), "--ckpt_path", str(last)])
    assert "test/map_50" in test.trainer.callback_metrics

    out = tmp_path / "det"
    images = Path(json.loads(files["test"].read_text())["images"][0]["file_name"]).parent
    assert detect_main([str(images), "--checkpoint", str(last), "--output", str(out), "--threshold", "0.0"]) == 0
    with open(out / "detections.csv") as f:
        labels = {row["label"] for row in csv.DictReader(f)}
    assert labels and labels <= {"calcinosis", "vascular"}
    report = tmp_path / "report"
    assert evaluate_main(["--gt", str(files["test"]), "--pred", str(out / "detections.csv"),
                          "--out", str(report)]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"calcinosis", "vascular"}


@pytest.mark.slow
def test_one_category_named_calcification(tiny_synth, fit_args, tmp_path) -> None:
    files = {s: _relabel(tiny_synth[s], tmp_path / f"{s}.json", [{"id": 1, "name": "calcification"}], None)
             for s in tiny_synth}
    cli = cli_main(["fit", *fit_args(files, tmp_path, "--trainer.max_steps", "2")])
    assert cli.model.class_names == ["calcification"]
    last = tmp_path / "ckpt" / "last.ckpt"
    assert load_checkpoint(last)["calcidet"]["class_names"] == ["calcification"]
    out = tmp_path / "det"
    images = Path(json.loads(files["test"].read_text())["images"][0]["file_name"]).parent
    assert detect_main([str(images), "--checkpoint", str(last), "--output", str(out), "--threshold", "0.0"]) == 0
    with open(out / "detections.csv") as f:
        assert {row["label"] for row in csv.DictReader(f)} == {"calcification"}


@pytest.mark.slow
def test_splits_or_checkpoint_with_other_categories_are_a_clear_error(tiny_synth, fit_args, tmp_path) -> None:
    files = {s: _relabel(tiny_synth[s], tmp_path / f"{s}.json", [{"id": 1, "name": "calcification"}], None)
             for s in tiny_synth}
    files["val"] = _relabel(tiny_synth["val"], tmp_path / "val2.json", [TWO[1], TWO[0]], 7)
    with pytest.raises(ValueError, match=r"categories \['calcinosis', 'vascular'\].*\['calcification'\]"):
        cli_main(["fit", *fit_args(files, tmp_path / "a", "--trainer.max_steps", "1")])

    files["val"] = tmp_path / "val.json"
    cli_main(["fit", *fit_args(files, tmp_path / "b", "--trainer.max_steps", "1")])
    other = {s: _relabel(tiny_synth[s], tmp_path / f"o{s}.json", [TWO[1], TWO[0]], 7) for s in tiny_synth}
    with pytest.raises(ValueError, match=r"checkpoint detects \['calcification'\]"):
        cli_main(["test", *fit_args(other, tmp_path / "b"), "--ckpt_path", str(tmp_path / "b" / "ckpt" / "last.ckpt")])
