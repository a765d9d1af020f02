"""Out-of-scope films: keyword rules on tags, the tags real DICOMs carry, and ``calcidet detect`` skipping them."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from calcidet.data.readers import read_radiograph
from calcidet.data.scope import ScopeVerdict, assess_scope, classify_words, scope_from_tags
from calcidet.train.detect_cmd import main as detect_main
from calcidet.train.detect_writer import IMAGE_COLUMNS
from tests.bad_inputs import dicom_bytes


@pytest.mark.parametrize("tags, scope, reason", [
    ({"BodyPartExamined": "CHEST"}, "out_of_scope", "BodyPartExamined=CHEST"),
    ({"BodyPartExamined": "KNEE"}, "in_scope", "BodyPartExamined=KNEE"),
    ({"StudyDescription": "XR L-SPINE 2 views"}, "out_of_scope", "StudyDescription=XR L-SPINE 2 views"),
    ({"ProtocolName": "Hips AP"}, "in_scope", "ProtocolName=Hips AP"),  # plural
    ({"SeriesDescription": "KUB"}, "out_of_scope", "SeriesDescription=KUB"),
    ({"Modality": "MG", "BodyPartExamined": "BREAST"}, "out_of_scope", "Modality=MG (mammography)"),
    # a shoulder MR names a limb, but it is no plain film
    ({"Modality": "MR", "StudyDescription": "SHOULDER"}, "out_of_scope",
     "Modality=MR (magnetic resonance, not a plain film)"),
    ({"Modality": "CR", "BodyPartExamined": "KNEE"}, "in_scope", "BodyPartExamined=KNEE"),
    # "head" and "neck" of a limb bone are a limb film; alone they are not.
    ({"StudyDescription": "Femoral head"}, "in_scope", "StudyDescription=Femoral head"),
    ({"StudyDescription": "Radial neck"}, "in_scope", "StudyDescription=Radial neck"),
    ({"StudyDescription": "HEAD"}, "out_of_scope", "StudyDescription=HEAD"),
    # agreeing tags are all named, in the order given
    ({"BodyPartExamined": "CHEST", "ViewPosition": "PA", "StudyDescription": "THORAX"}, "out_of_scope",
     "BodyPartExamined=CHEST; StudyDescription=THORAX"),
])
def test_keyword_rules(tags: dict[str, str], scope: str, reason: str) -> None:
    assert scope_from_tags(tags) == ScopeVerdict(scope, reason)


@pytest.mark.parametrize("tags", [
    {"BodyPartExamined": "CHEST", "StudyDescription": "XR KNEE 2 VIEWS"},  # two tags disagree
    {"StudyDescription": "CT ABDOMEN PELVIS"},  # one value names both
])
def test_conflicts_are_unknown_and_name_both_sides(tags: dict[str, str]) -> None:
    verdict = scope_from_tags(tags)
    assert verdict.scope == "unknown"
    assert verdict.reason.startswith("conflict: in scope ") and " vs out of scope " in verdict.reason
    for keyword, value in tags.items():
        assert f"{keyword}={value}" in verdict.reason


@pytest.mark.parametrize("tags", [
    {}, {"ViewPosition": "AP"}, {"StudyDescription": "Modality LUT Test", "Modality": "OT"},
    {"SeriesDescription": "   "}, {"StudyDescription": "renal osteodystrophy"},  # the clinic, not a part
])
def test_empty_and_unknown_words_say_nothing(tags: dict[str, str]) -> None:
    assert scope_from_tags(tags) == ScopeVerdict("unknown", "")


def test_words_are_whole_words() -> None:
    assert classify_words("CHESTNUT FACET ARMOUR") == (set(), set())  # no substrings
    assert classify_words("c_spine/lat") == (set(), {"SPINE"})


def test_image_check_is_asked_only_when_the_tags_say_nothing() -> None:
    asked = []

    def check(image: np.ndarray) -> ScopeVerdict:
        asked.append(image.shape)
        return ScopeVerdict("out_of_scope", "image check")

    image = np.zeros((8, 6), np.float32)
    assert assess_scope({}, image, check) == ScopeVerdict("out_of_scope", "image check")
    assert assess_scope({"BodyPartExamined": "KNEE"}, image, check).scope == "in_scope"
    assert assess_scope({"BodyPartExamined": "CHEST", "StudyDescription": "KNEE"}, image, check).scope == "unknown"
    assert asked == [(8, 6)]
    assert assess_scope({}, image) == ScopeVerdict("unknown", "")  # none plugged in


def _nema(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not available (install pydicom-data)")
    return Path(path)


def test_real_chest_film_is_out_and_ankle_film_in() -> None:
    chest = scope_from_tags(read_radiograph(_nema("RG1_UNCR.dcm")).tags)
    assert chest.scope == "out_of_scope" and chest.reason.startswith("BodyPartExamined=CHEST")
    ankle = scope_from_tags(read_radiograph(_nema("RG3_UNCR.dcm")).tags)
    assert ankle.scope == "in_scope" and ankle.reason.startswith("BodyPartExamined=EXTREMITY")


def test_reader_keeps_only_nonempty_tags(tmp_path: Path) -> None:
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8)
    path = tmp_path / "x.dcm"
    path.write_bytes(dicom_bytes(pixels, BodyPartExamined="", StudyDescription="  XR  HAND "))
    assert read_radiograph(path).tags == {"StudyDescription": "XR HAND", "Modality": "CR"}
    png = tmp_path / "x.png"
    cv2.imwrite(str(png), pixels.astype(np.uint8))
    assert read_radiograph(png).tags == {}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_detect_skips_out_of_scope_films_unless_all_films(tiny_checkpoint, tmp_path) -> None:
    films = tmp_path / "in"
    films.mkdir()
    shutil.copy(_nema("RG1_UNCR.dcm"), films / "chest.dcm")
    shutil.copy(_nema("RG3_UNCR.dcm"), films / "ankle.dcm")
    rows, dets = {}, {}
    for all_films in (False, True):
        out = tmp_path / f"out{int(all_films)}"
        args = [str(films), "--checkpoint", str(tiny_checkpoint), "--output", str(out), "--threshold", "0.0",
                "--num-workers", "0", *(["--all-films"] if all_films else [])]
        assert detect_main(args) == 0
        with open(out / "images.csv", newline="") as f:
            assert next(csv.reader(f)) == IMAGE_COLUMNS
        rows[all_films] = {r["image"]: r for r in _read_csv(out / "images.csv")}
        dets[all_films] = [d["image"] for d in _read_csv(out / "detections.csv")]
        coco = json.loads((out / "detections_coco.json").read_text())
        chest_id = {im["file_name"]: im["id"] for im in coco["images"]}.get("chest.dcm")
        assert (chest_id in {a["image_id"] for a in coco["annotations"]}) == all_films
        assert json.loads((out / "run.json").read_text())["counts"]["out_of_scope"] == 1
    for all_films in (False, True):  # marked the same either way
        chest, ankle = rows[all_films]["chest.dcm"], rows[all_films]["ankle.dcm"]
        assert chest["status"] == "ok" and chest["scope"] == "out_of_scope"
        assert chest["scope_reason"].startswith("BodyPartExamined=CHEST")
        assert ankle["scope"] == "in_scope" and "BodyPartExamined=EXTREMITY" in ankle["scope_reason"]
        assert "ankle.dcm" in dets[all_films]  # threshold 0: the tiny model's every box
    assert "chest.dcm" not in dets[False] and rows[False]["chest.dcm"]["num_detections"] == "0"
    assert "chest.dcm" in dets[True] and int(rows[True]["chest.dcm"]["num_detections"]) > 0
