"""``calcidet split``: train/val/test COCO files by patient (``data.split``, ``train.split_cmd``).

    .venv/bin/python -m pytest tests/test_split.py -q

A hand-made COCO of 3 patients (3, 2 and 2 films, boxes on some) plus films that fall back to their
study UID or their file name.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from calcidet.data.coco import load_coco
from calcidet.data.split import patient_key, split_by_patient
from calcidet.train.cli import main as calcidet

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def films_coco() -> dict:
    """P1: 3 films (one box), P2: 2 films (two boxes on one), P3: 2 negative films."""
    names = [("P1", "p1/knee_l.png"), ("P1", "p1/knee_r.png"), ("P1", "p1/hip.png"),
             ("P2", "p2/elbow.png"), ("P2", "p2/shoulder.png"), ("P3", "p3/hand.png"), ("P3", "p3/foot.png")]
    images = [{"id": i, "file_name": f, "width": 64, "height": 48, "patient_id": p}
              for i, (p, f) in enumerate(names, start=1)]
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 10, 8], "area": 80, "iscrowd": 0},
                   {"id": 2, "image_id": 4, "category_id": 1, "bbox": [20, 10, 6, 6], "area": 36, "iscrowd": 0},
                   {"id": 3, "image_id": 4, "category_id": 1, "bbox": [30, 30, 8, 8], "area": 64, "iscrowd": 0}]
    return {"info": {"description": "hand-made"}, "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "calcinosis"}]}


def patients(coco: dict) -> set[str]:
    return {im["patient_id"] for im in coco["images"]}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_patients_are_disjoint_and_every_image_is_kept(seed: int) -> None:
    coco = films_coco()
    splits = split_by_patient(coco, FRACTIONS, seed=seed)
    assert list(splits) == ["train", "val", "test"]
    assert [patients(splits[s]) for s in splits] != [set(), set(), set()]
    seen = [p for s in splits.values() for p in patients(s)]
    assert sorted(seen) == ["P1", "P2", "P3"]  # each patient in exactly one split, every split filled
    ids = sorted(im["id"] for s in splits.values() for im in s["images"])
    assert ids == [im["id"] for im in coco["images"]]
    for s in splits.values():  # annotations follow their images, records and other keys verbatim
        kept = {im["id"] for im in s["images"]}
        assert all(a["image_id"] in kept for a in s["annotations"])
        assert all(im in coco["images"] for im in s["images"])
        assert list(s) == list(coco) and s["info"] == coco["info"] and s["categories"] == coco["categories"]
    assert sum(len(s["annotations"]) for s in splits.values()) == len(coco["annotations"])


def many_patients(n: int = 40, positive: int = 10) -> dict:
    """One film per patient P1..Pn, a box on the first ``positive``."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 8, "height": 8, "patient_id": f"P{i}"} for i in range(1, n + 1)]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 2, 2]} for i in range(1, positive + 1)]
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "calcinosis"}]}


def test_same_seed_same_split_and_seeds_differ() -> None:
    assert split_by_patient(films_coco(), FRACTIONS, seed=5) == split_by_patient(films_coco(), FRACTIONS, seed=5)
    first = split_by_patient(many_patients(), FRACTIONS, seed=5)
    assert split_by_patient(many_patients(), FRACTIONS, seed=5) == first
    assert split_by_patient(many_patients(), FRACTIONS, seed=6) != first  # the seed does choose


def test_fallback_to_study_uid_then_file_name() -> None:
    records = [{"id": 1, "file_name": "a.png", "study_instance_uid": "1.2.3"},
               {"id": 2, "file_name": "b.png", "study_instance_uid": "1.2.3", "patient_id": " "},
               {"id": 3, "file_name": "c.png"}, {"id": 4, "file_name": "d.png"}]
    assert [patient_key(r) for r in records] == [("study_instance_uid", "1.2.3"), ("study_instance_uid", "1.2.3"),
                                                 ("file_name", "c.png"), ("file_name", "d.png")]
    coco = {"images": [r | {"width": 8, "height": 8} for r in records], "annotations": [], "categories": []}
    for seed in range(5):
        splits = split_by_patient(coco, {"train": 0.5, "val": 0.5}, seed=seed)
        together = [s for s in splits.values() if {1, 2} & {im["id"] for im in s["images"]}]
        assert len(together) == 1  # one study, one split
        assert all(s["images"] for s in splits.values())


def test_positives_reach_every_split_when_there_are_enough_patients() -> None:
    coco = many_patients(40, positive=10)
    for seed in range(5):
        splits = split_by_patient(coco, FRACTIONS, seed=seed)
        for name, s in splits.items():  # each split within a film of its share, positives included
            assert abs(len(s["images"]) - FRACTIONS[name] * 40) <= 1, name
            assert abs(len(s["annotations"]) - FRACTIONS[name] * 10) <= 1, name


@pytest.mark.parametrize("fractions, message", [
    ({"train": 0.7, "val": 0.2}, "must sum to 1"),
    ({"train": 1.2, "val": -0.2}, ">= 0"),
    ({"train": 0.25, "val": 0.25, "test": 0.25, "extra": 0.25}, "3 patient(s) cannot fill 4 splits"),
    ({}, "no splits given"),
])
def test_impossible_fractions_are_a_clear_error(fractions: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        split_by_patient(films_coco(), fractions)


def test_a_split_of_fraction_zero_is_empty() -> None:
    splits = split_by_patient(films_coco(), {"train": 0.8, "val": 0.2, "test": 0.0})
    assert splits["test"]["images"] == [] and splits["test"]["annotations"] == []
    assert patients(splits["train"]) and patients(splits["val"])


# ------------------------------------------------------------------ the command


def write_films(folder: Path) -> Path:
    """The hand-made COCO as annotations.json beside its (blank) PNGs."""
    coco = films_coco()
    for im in coco["images"]:
        (folder / im["file_name"]).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / im["file_name"]), np.zeros((im["height"], im["width"]), np.uint8))
    (folder / "annotations.json").write_text(json.dumps(coco))
    return folder / "annotations.json"


@pytest.mark.parametrize("out", ["split", "."])  # a folder of its own (names rewritten), or the images' folder
def test_split_command_writes_files_that_find_their_images(tmp_path, capsys, out: str) -> None:
    src = write_films(tmp_path / "films")
    out_dir = tmp_path / "films" / out if out == "." else tmp_path / out
    assert calcidet(["split", str(src), "--out", str(out_dir), "--seed", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[1].strip() for line in printed] == [str(out_dir / f"{s}.json") for s in FRACTIONS]
    indexes = {s: load_coco(out_dir / f"{s}.json") for s in FRACTIONS}  # checks every image file exists
    assert sorted(im.id for ix in indexes.values() for im in ix.images) == list(range(1, 8))
    original = {im["id"]: tmp_path / "films" / im["file_name"] for im in films_coco()["images"]}
    for ix in indexes.values():
        assert all(im.path.resolve() == original[im.id].resolve() for im in ix.images)
    by_split = [{im.patient_id for im in ix.images} for ix in indexes.values()]
    assert sorted(p for ps in by_split for p in ps) == ["P1", "P2", "P3"]
    if out == ".":  # beside the images: names unchanged
        assert {im.file_name for ix in indexes.values() for im in ix.images} == \
            {im["file_name"] for im in films_coco()["images"]}
    else:
        assert all(im.file_name.startswith("../films/p") for ix in indexes.values() for im in ix.images)


def test_split_command_refuses_bad_input(tmp_path, capsys) -> None:
    src = write_films(tmp_path / "films")
    (tmp_path / "films" / "p3" / "foot.png").unlink()
    assert calcidet(["split", str(src), "--out", str(tmp_path / "split")]) == 1
    assert "image file not found" in capsys.readouterr().err
    assert not (tmp_path / "split").exists()  # nothing written

    src = write_films(tmp_path / "films2")
    assert calcidet(["split", str(src), "--out", str(tmp_path / "s"), "--fractions", "0.5", "0.6"]) == 2
    assert "must sum to 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        calcidet(["split", str(src), "--out", str(tmp_path / "s"), "--fractions", "1"])
    (tmp_path / "films2" / "train.json").write_text(src.read_text())
    assert calcidet(["split", str(tmp_path / "films2" / "train.json"), "--out", str(tmp_path / "films2")]) == 2
    assert "would be overwritten" in capsys.readouterr().err
