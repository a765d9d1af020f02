"""The labelling round trip: ``export-images`` writes what the model sees; ``convert`` brings boxes back.

    .venv/bin/python -m pytest tests/test_export_convert.py -q

Each converter reads a hand-made export of the same two images (one with three boxes of two
classes, one negative) whose COCO is written out below by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
import tifffile
from pydicom.data import get_testdata_file

from calcidet.data.coco import load_coco
from calcidet.data.readers import read_radiograph
from calcidet.train import convert_cmd, export_images_cmd
from calcidet.train.cli import main as calcidet

# ------------------------------------------------------------------ export-images


def write_films(folder: Path) -> Path:
    """A PNG, a 16-bit TIFF and a CR DICOM (MONOCHROME1, windowed) in sub-folders, and a corrupt PNG."""
    rng = np.random.default_rng(0)
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    cv2.imwrite(str(folder / "a" / "knee.png"), rng.integers(0, 256, (40, 50), dtype=np.uint8))
    tifffile.imwrite(folder / "b" / "hip.tif", rng.integers(0, 65536, (30, 60), dtype=np.uint16))
    ds = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"))
    pixels = ds.pixel_array[::16, ::16].astype("<u2")  # 110 x 110: small, same tags and window
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()
    ds.save_as(folder / "ankle.dcm")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return folder


@pytest.mark.parametrize("bits, dtype", [(8, np.uint8), (16, np.uint16)])
def test_export_images_writes_what_the_model_sees(tmp_path, capsys, bits: int, dtype: type) -> None:
    films, out = write_films(tmp_path / "films"), tmp_path / "out"
    assert calcidet(["export-images", str(films), "--output", str(out), "--bits", str(bits)]) == 0

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("calcidet: WARNING: export-images: skipped broken.png: ")
    for source, png in [("a/knee.png", "a/knee.png"), ("b/hip.tif", "b/hip.png"), ("ankle.dcm", "ankle.png")]:
        written = cv2.imread(str(out / png), cv2.IMREAD_UNCHANGED)
        expected = np.rint(read_radiograph(films / source).image * (2**bits - 1)).astype(dtype)
        assert written.dtype == dtype
        np.testing.assert_array_equal(written, expected)

    coco = json.loads((out / "annotations.json").read_text())
    assert coco["annotations"] == [] and coco["categories"] == [{"id": 1, "name": "calcinosis"}]
    by_name = {im["file_name"]: im for im in coco["images"]}
    assert sorted(by_name) == ["a/knee.png", "ankle.png", "b/hip.png"]
    assert (by_name["b/hip.png"]["width"], by_name["b/hip.png"]["height"]) == (60, 30)
    header = pydicom.dcmread(films / "ankle.dcm", stop_before_pixels=True)
    assert by_name["ankle.png"] | {"id": 0} == {
        "id": 0, "file_name": "ankle.png", "width": 110, "height": 110, "source": "ankle.dcm",
        "patient_id": "11RG3", "study_instance_uid": header.StudyInstanceUID,
        "series_instance_uid": header.SeriesInstanceUID, "sop_instance_uid": header.SOPInstanceUID,
    }
    assert "patient_id" not in by_name["a/knee.png"]
    assert len(load_coco(out / "annotations.json")) == 3


def test_export_images_fails_only_when_nothing_is_readable(tmp_path, capsys) -> None:
    (tmp_path / "films").mkdir()
    (tmp_path / "films" / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\1" * 10)
    out = tmp_path / "out"
    assert export_images_cmd.main([str(tmp_path / "films"), "--output", str(out)]) == 1
    assert "skipped bad.dcm: " in capsys.readouterr().err
    assert not (out / "annotations.json").exists()


def test_export_names_never_collide_and_categories_are_kept(tmp_path) -> None:
    taken: set[Path] = set()
    names = ["knee", "knee.dcm", "knee.png", "../up.jpg", "scan.1.2.840"]
    paths = [export_images_cmd.png_path(tmp_path, n, taken).relative_to(tmp_path).as_posix() for n in names]
    assert paths == ["knee.png", "knee.dcm.png", "knee.png.png", "up.png", "scan.1.2.840.png"]

    films = write_films(tmp_path / "films")
    out = tmp_path / "out"
    assert export_images_cmd.main([str(films / "a"), "--output", str(out), "--categories", "calcinosis, vascular"]) == 0
    categories = json.loads((out / "annotations.json").read_text())["categories"]
    assert categories == [{"id": 1, "name": "calcinosis"}, {"id": 2, "name": "vascular"}]


# ------------------------------------------------------------------ convert

EXPECTED = {
    "images": [{"id": 1, "file_name": "knee1.png", "width": 100, "height": 80},
               {"id": 2, "file_name": "knee2.png", "width": 64, "height": 48}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10.0, 20.0, 30.0, 16.0], "area": 480.0, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50.0, 0.0, 20.0, 40.0], "area": 800.0, "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0.0, 60.0, 100.0, 20.0], "area": 2000.0, "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "calcinosis"}, {"id": 2, "name": "vascular"}],
}

YOLO_KNEE1 = "0 0.25 0.35 0.3 0.2\n1 0.6 0.25 0.2 0.5\n0 0.5 0.875 1.0 0.25\n"

VOC = """<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height><depth>1</depth></size>
{objects}</annotation>"""
VOC_OBJECT = "<object><name>{}</name><difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"

CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
<meta><task><labels>
  <label><name>calcinosis</name><attributes><attribute><name>certain</name></attribute></attributes></label>
  <label><name>vascular</name></label>
</labels></task></meta>
<image id="0" name="task7/knee1.png" width="100" height="80">
  <box label="calcinosis" occluded="0" xtl="10" ytl="20" xbr="40" ybr="36" z_order="0"></box>
  <box label="vascular" occluded="0" xtl="50.00" ytl="0.00" xbr="70.00" ybr="40.00" z_order="0"></box>
  <box label="calcinosis" occluded="0" xtl="0" ytl="60" xbr="100" ybr="80" z_order="0"></box>
</image>
<image id="1" name="task7/knee2.png" width="64" height="48"></image>
</annotations>
"""


def write_export(tmp_path: Path, fmt: str) -> Path:
    """The images, and the tool's export of them in ``fmt``; returns SRC."""
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "knee1.png"), np.zeros((80, 100), np.uint8))
    cv2.imwrite(str(images / "knee2.png"), np.zeros((48, 64), np.uint8))
    if fmt == "yolo":  # Label Studio's layout: classes.txt and labels/; no file for the negative
        (tmp_path / "export" / "labels").mkdir(parents=True)
        (tmp_path / "export" / "classes.txt").write_text("calcinosis\nvascular\n")
        (tmp_path / "export" / "labels" / "knee1.txt").write_text(YOLO_KNEE1)
        return tmp_path / "export"
    if fmt == "voc":  # knee2 by its Label Studio upload name
        (tmp_path / "voc").mkdir()
        objects = [VOC_OBJECT.format(*o) for o in
                   [("calcinosis", 10, 20, 40, 36), ("vascular", 50, 0, 70, 40), ("calcinosis", 0, 60, 100, 80)]]
        (tmp_path / "voc" / "knee1.xml").write_text(VOC.format(name="knee1.png", w=100, h=80, objects="".join(objects)))
        (tmp_path / "voc" / "knee2.xml").write_text(VOC.format(name="0a1b2c3d-knee2.png", w=64, h=48, objects=""))
        return tmp_path / "voc"
    (tmp_path / "annotations.xml").write_text(CVAT)
    return tmp_path / "annotations.xml"


@pytest.mark.parametrize("fmt", ["yolo", "voc", "cvat"])
def test_convert_gives_the_hand_written_coco(tmp_path, capsys, fmt: str) -> None:
    src = write_export(tmp_path, fmt)
    out = tmp_path / "images" / "labelled.json"
    assert calcidet(["convert", "--from", fmt, str(src), "--images", str(tmp_path / "images"),
                     "--output", str(out)]) == 0
    assert json.loads(out.read_text()) == EXPECTED
    index = load_coco(out)
    assert [len(im.boxes) for im in index.images] == [3, 0] and index.class_names == ["calcinosis", "vascular"]
    assert "2 images (1 with boxes, 1 negatives), 3 boxes" in capsys.readouterr().out


def test_convert_carries_export_fields_over_and_checks_sizes(tmp_path, capsys) -> None:
    src = write_export(tmp_path, "cvat")
    skeleton = {"images": [{"id": 7, "file_name": "knee1.png", "width": 100, "height": 80, "patient_id": "P1",
                            "study_instance_uid": "1.2.3"}],
                "annotations": [], "categories": [{"id": 1, "name": "calcinosis"}]}
    (tmp_path / "images" / "annotations.json").write_text(json.dumps(skeleton))
    out = tmp_path / "labelled.json"
    args = ["--from", "cvat", str(src), "--images", str(tmp_path / "images"), "--output", str(out)]
    assert convert_cmd.main(args) == 0
    first = json.loads(out.read_text())["images"][0]
    assert first == EXPECTED["images"][0] | {"patient_id": "P1", "study_instance_uid": "1.2.3"}
    assert load_coco(out, tmp_path / "images").images[0].patient_id == "P1"

    skeleton["images"][0]["width"] = 200  # boxes drawn on another export of the film
    (tmp_path / "images" / "annotations.json").write_text(json.dumps(skeleton))
    out.unlink()
    assert convert_cmd.main(args) == 1
    assert "knee1.png: the labelling tool says 100x80" in capsys.readouterr().err and not out.exists()


def test_convert_lists_every_problem_and_writes_nothing(tmp_path, capsys) -> None:
    src = write_export(tmp_path, "yolo")
    (src / "labels" / "knee1.txt").write_text("0 0.5 0.5 0.1 0.1\n5 0.5 0.5 0.1 0.1\n0 0.5 0.5\n")
    (src / "labels" / "knee9.txt").write_text("")
    out = tmp_path / "labelled.json"
    assert convert_cmd.main(["--from", "yolo", str(src), "--images", str(tmp_path / "images"),
                             "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "knee1.txt:2: class 5 is not in the class list (0..1)" in err
    assert "knee1.txt:3: expected 'class cx cy w h', got 3 values" in err
    assert "knee9.txt: no image under" in err
    assert not out.exists()


def test_cvat_rotated_box_becomes_the_box_around_it_and_polygons_are_refused(tmp_path, capsys) -> None:
    write_export(tmp_path, "cvat")
    rotated = CVAT.replace('xbr="100" ybr="80" z_order="0"></box>',
                           'xbr="100" ybr="80" rotation="90" z_order="0"></box>')
    (tmp_path / "annotations.xml").write_text(rotated)
    out = tmp_path / "labelled.json"
    args = ["--from", "cvat", str(tmp_path / "annotations.xml"), "--images", str(tmp_path / "images"),
            "--output", str(out)]
    assert convert_cmd.main(args + ["--image-info", "none"]) == 1  # 100 x 20 turned: 20 x 100 leaves the image
    assert "lies outside the 100x80 image" in capsys.readouterr().err

    rotated = CVAT.replace('xtl="10" ytl="20" xbr="40" ybr="36"', 'xtl="10" ytl="20" xbr="40" ybr="36" rotation="90"')
    (tmp_path / "annotations.xml").write_text(rotated)
    assert convert_cmd.main(args) == 0
    assert json.loads(out.read_text())["annotations"][0]["bbox"] == [17.0, 13.0, 16.0, 30.0]

    polygon = '<polygon label="calcinosis" points="1,1;5,1;5,5"></polygon></image>\n<image id="1"'
    (tmp_path / "annotations.xml").write_text(CVAT.replace('</image>\n<image id="1"', polygon))
    assert convert_cmd.main(args) == 1
    assert "a polygon ('calcinosis') is not a box" in capsys.readouterr().err
