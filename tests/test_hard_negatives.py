"""Mined hard negatives: ``calcidet mine`` records false positives, COCO carries them, crops aim at them."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
import pytest

from calcidet.data.coco import CocoFormatError, load_coco
from calcidet.data.dataset import RadiographDataset
from calcidet.data.transforms import HARD_NEGATIVE, build_transforms
from calcidet.train.detect_writer import DETECTION_COLUMNS, IMAGE_COLUMNS
from calcidet.train.mine_cmd import main as mine_main

LESION = np.array([[600, 420, 640, 450]], dtype=np.float32)
REGION = np.array([[80, 60, 110, 90]], dtype=np.float32)  # far from the lesion, top left of a 576 x 768 film


def _coco(images: list[dict], annotations: list[dict]) -> dict:
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "calcinosis"}]}


def test_coco_reads_checks_and_writes_back_hard_negatives(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(_coco([
        {"id": 1, "file_name": "a.png", "width": 200, "height": 100, "hard_negatives": [[10, 20, 30, 40]]},
        {"id": 2, "file_name": "b.png", "width": 200, "height": 100},
    ], [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [100, 10, 20, 20]}])))
    index = load_coco(path, check_files=False)
    np.testing.assert_allclose(index.images[0].hard_negatives, [[10, 20, 40, 60]])
    assert index.images[1].hard_negatives.shape == (0, 4)
    assert "hard_negatives" not in index.images[0].extra  # parsed, not passed through as an unknown key
    assert index.images[0].boxes.tolist() == [[100, 10, 120, 30]]  # the lesions are untouched
    written = index.to_coco_dict()["images"]
    assert written[0]["hard_negatives"] == [[10, 20, 30, 40]] and "hard_negatives" not in written[1]

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_coco([
        {"id": 1, "file_name": "a.png", "width": 200, "height": 100, "hard_negatives": [[190, 20, 30, 40]]},
        {"id": 2, "file_name": "b.png", "width": 200, "height": 100, "hard_negatives": "everywhere"},
    ], [])))
    with pytest.raises(CocoFormatError) as err:
        load_coco(bad, check_files=False)
    assert "'a.png': hard_negatives: box [190, 20, 30, 40] lies outside the 200x100 image" in str(err.value)
    assert "'b.png': hard_negatives is a str" in str(err.value)


def _window_holds(image: np.ndarray) -> bool:
    return bool((image == 255).any())


@pytest.mark.parametrize("preset", ["train", "light"])
def test_crops_aim_at_hard_negatives_but_lesion_windows_do_not(preset: str) -> None:
    image = np.full((576, 768), 40, np.uint8)
    x1, y1, x2, y2 = REGION[0].astype(int)
    image[y1:y2, x1:x2] = 255  # only the hard-negative region is white
    rates = {}
    for share in (0.0, 1.0):
        t = build_transforms(preset, 768, crop_size=256, hard_negative_share=share, seed=0)
        outs = [t(image=image, bboxes=REGION, labels=np.array([HARD_NEGATIVE])) for _ in range(300)]
        rates[share] = np.mean([_window_holds(o["image"]) for o in outs])
        # the region is no lesion: it leaves the transform as a HARD_NEGATIVE box, never as a class
        assert all(set(np.asarray(o["labels"]).tolist()) <= {HARD_NEGATIVE} for o in outs)
    # every window cut anywhere (1/3 of windows, 3/4 of draws) now holds it: about +1/4 of draws
    assert rates[1.0] - rates[0.0] > 0.15, rates

    # with a lesion too, the lesion windows still aim at the lesion alone
    lesion_rate = {}
    for boxes, labels in (((LESION,), [1]), ((LESION, REGION), [1, HARD_NEGATIVE])):
        t = build_transforms(preset, 768, crop_size=256, hard_negative_share=0.0, seed=1)
        outs = [t(image=image, bboxes=np.concatenate(boxes), labels=np.array(labels)) for _ in range(300)]
        lesion_rate[len(labels)] = np.mean([1 in np.asarray(o["labels"]).tolist() for o in outs])
    assert abs(lesion_rate[1] - lesion_rate[2]) < 0.08, lesion_rate


def test_films_without_hard_negatives_draw_the_same_windows_at_any_share() -> None:
    image = np.random.default_rng(0).integers(0, 255, (576, 768), dtype=np.uint8)
    outs = []
    for share in (0.0, 1.0):
        t = build_transforms("train", 768, crop_size=256, hard_negative_share=share, seed=3)
        outs.append([t(image=image, bboxes=LESION, labels=np.array([1])) for _ in range(20)])
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["bboxes"], b["bboxes"])
    with pytest.raises(ValueError, match="hard_negative_share"):
        build_transforms("train", 768, crop_size=256, hard_negative_share=1.5)


def test_dataset_drops_hard_negatives_from_the_target(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.full((576, 768), 90, np.uint8))
    path = tmp_path / "a.json"
    path.write_text(json.dumps(_coco(
        [{"id": 1, "file_name": "a.png", "width": 768, "height": 576, "hard_negatives": [[80, 60, 30, 30]]}],
        [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [600, 420, 40, 30]}])))
    index = load_coco(path)
    for preset, crop in (("eval", None), ("light", 256), ("none", None)):
        dataset = RadiographDataset(index.images, 768, build_transforms(preset, 768, crop_size=crop, seed=0),
                                    preload_threads=0)
        for _ in range(10):
            _, target = dataset[0]
            assert set(target["labels"].tolist()) <= {1} and "ignore_boxes" not in target
    _, target = RadiographDataset(index.images, 768, None, preload_threads=0)[0]
    assert target["boxes"].tolist() == [[600, 420, 640, 450]]


def _write_run(folder: Path, rows: list[list], images: list[str], threshold: float = 0.5) -> Path:
    folder.mkdir()
    with open(folder / "detections.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(DETECTION_COLUMNS)
        for name, box, score in rows:
            w.writerow([name, *box, score, "calcinosis", "", "", str(score >= threshold).lower()])
    with open(folder / "images.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(IMAGE_COLUMNS)
        for name in images:
            status = "failed" if name == "broken.png" else "ok"
            w.writerow([name, status] + [""] * (len(IMAGE_COLUMNS) - 2))
    (folder / "run.json").write_text(json.dumps({"threshold": threshold}))
    return folder / "detections.csv"


def test_mine_writes_the_highest_false_positives_of_each_film(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    gt = data / "annotations.json"
    gt.write_text(json.dumps(_coco([
        {"id": 1, "file_name": "images/knee.png", "width": 400, "height": 300, "joint": "knee",
         "hard_negatives": [[0, 0, 20, 20]]},
        {"id": 2, "file_name": "images/hip.png", "width": 400, "height": 300},
        {"id": 3, "file_name": "images/broken.png", "width": 400, "height": 300},
    ], [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [100, 100, 50, 50], "attributes": {"pattern": "cystic"}},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [10, 10, 40, 40], "iscrowd": 1},  # ignore region
    ])))
    pred = _write_run(tmp_path / "det", [
        ["knee.png", [100, 100, 150, 150], 0.95],  # finds the lesion: no hard negative
        ["knee.png", [300, 200, 340, 240], 0.9],   # a false positive
        ["knee.png", [1, 1, 21, 21], 0.8],         # the region already recorded: not again
        ["knee.png", [200, 20, 240, 60], 0.7],     # a second false positive
        ["knee.png", [50, 250, 70, 270], 0.3],     # below the operating threshold (0.5)
        ["hip.png", [12, 12, 48, 48], 0.9],        # in the ignore region: no false positive
        ["broken.png", [5, 5, 50, 50], 0.9],       # detect failed on the film: nothing mined
    ], ["knee.png", "hip.png", "broken.png"])
    out = tmp_path / "mined" / "mined.json"
    assert mine_main(["--gt", str(gt), "--pred", str(pred), "--out", str(out)]) == 0
    assert "2 hard-negative region(s) on 1 of 2 films" in capsys.readouterr().out
    written = json.loads(out.read_text())
    knee, hip, broken = written["images"]
    assert knee["hard_negatives"] == [[0, 0, 20, 20], [300, 200, 40, 40], [200, 20, 40, 40]]
    assert "hard_negatives" not in hip and "hard_negatives" not in broken
    assert knee["joint"] == "knee" and written["annotations"][0]["attributes"] == {"pattern": "cystic"}
    assert knee["file_name"] == "../data/images/knee.png"  # still the same file, seen from --out
    index = load_coco(out, check_files=False)
    assert index.images[0].path.resolve() == (data / "images/knee.png").resolve()

    # lower --min-score and --per-film 1: the highest false positive not yet recorded, per film
    again = tmp_path / "mined" / "again.json"
    assert mine_main(["--gt", str(out), "--pred", str(pred), "--out", str(again),
                      "--min-score", "0.2", "--per-film", "1"]) == 0
    assert json.loads(again.read_text())["images"][0]["hard_negatives"][-1] == [50, 250, 20, 20]
    assert mine_main(["--gt", str(gt), "--pred", str(pred), "--out", str(gt)]) == 2  # never over the ground truth
    assert "overwrite" in capsys.readouterr().err
