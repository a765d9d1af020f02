"""load_coco reports every problem of a broken file at once, round-trips a valid file, splits by patient."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from calcidet.data.coco import CocoFormatError, concat_indexes, load_coco, patient_split
from calcidet.data.contract import check_target, make_target


def write_coco(tmp_path: Path, data: dict, files: list[str], name: str = "annotations.json") -> Path:
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"not decoded by load_coco")
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def valid_coco() -> dict:
    return {
        "images": [
            {"id": 7, "file_name": "images/knee.png", "width": 200, "height": 100, "patient_id": "P1",
             "joint": "knee", "pixel_spacing_mm": 0.14},
            {"id": 3, "file_name": "images/hip.png", "width": 300, "height": 150, "patient_id": 42},
            {"id": 5, "file_name": "images/normal.png", "width": 64, "height": 64},  # a negative
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 9, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [150.5, 60, 50, 40.5]},  # 0.5 px over: clipped
            {"id": 3, "image_id": 3, "category_id": 5, "bbox": [0, 0, 300, 150]},
            {"id": 4, "image_id": 3, "category_id": 5, "bbox": [1, 1, 5, 5], "iscrowd": 1},  # ignore region
        ],
        "categories": [{"id": 9, "name": "tumoral"}, {"id": 5, "name": "calcinosis"}],
    }


def test_broken_file_names_every_problem_in_one_error(tmp_path: Path) -> None:
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 100, "height": 80},
            {"id": 1, "file_name": "dup.png", "width": 100, "height": 80},
            {"id": 2, "file_name": "missing.png", "width": 100, "height": 80},
            {"id": 3, "file_name": "c.png", "width": "wide", "height": 80},
            {"id": 4, "file_name": "d.png", "height": 80},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5]},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [90, 10, 30, 10]},
            {"id": 12, "image_id": 1, "category_id": 1, "bbox": [10, 5, 0, 20]},
            {"id": 13, "image_id": 1, "category_id": 1, "bbox": [10, 5, 8, -3]},
            {"id": 14, "image_id": 1, "category_id": 1, "bbox": [10, "5", 8, 3]},
            {"id": 14, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
            {"id": 15, "image_id": 77, "category_id": 1, "bbox": [1, 1, 2, 2]},
            {"id": 16, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2]},
            {"id": "x", "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
            {"id": 17, "image_id": 1, "category_id": 1, "bbox": [95, 70, 30, 30], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "calcinosis"}, {"id": 1, "name": "again"}],
    }
    path = write_coco(tmp_path, data, ["a.png", "dup.png", "c.png", "d.png"])
    with pytest.raises(CocoFormatError) as info:
        load_coco(path)
    msg = str(info.value)
    expected = [
        "image 1 'dup.png': duplicate image id (also used by 'a.png')",
        "image 2 'missing.png': image file not found",
        "image 3 'c.png': width 'wide' is not a positive integer",
        "image 4 'd.png': width is missing",
        "category 1: duplicate category id",
        "annotation 10 (image 1 'a.png'): unknown category id 99",
        "annotation 11 (image 1 'a.png'): box [90, 10, 30, 10] lies outside the 100x80 image",
        "annotation 12 (image 1 'a.png'): box [10, 5, 0, 20] has zero or negative size",
        "annotation 13 (image 1 'a.png'): box [10, 5, 8, -3] has zero or negative size",
        "annotation 14 (image 1 'a.png'): bbox [10, '5', 8, 3] has a non-numeric value",
        "annotation 14 (image 1 'a.png'): duplicate annotation id",
        "annotation 15 (image 77): refers to an unknown image id 77",
        "annotation 16 (image 1 'a.png'): bbox [1, 1, 2] is not a list of 4 numbers",
        "annotation 'x' (image 1 'a.png'): id is not an integer",
        "annotation 17 (image 1 'a.png'): box [95, 70, 30, 30] lies outside the 100x80 image",  # ignore regions too
    ]
    for fragment in expected:
        assert fragment in msg, f"{fragment!r} not reported in:\n{msg}"
    assert len(info.value.problems) == len(expected)
    assert len(msg.splitlines()) == len(expected) + 1  # a header, then one problem per line
    assert all(p.startswith(f"{path}: ") for p in info.value.problems)  # each names the file
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "top level is a list"),
        (json.dumps({"images": [], "categories": []}), "'annotations' is missing"),
    ],
)
def test_unusable_files_are_reported(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "annotations.json"
    path.write_text(text)
    with pytest.raises(CocoFormatError, match=fragment) as info:
        load_coco(path)
    assert str(path) in str(info.value)
    with pytest.raises(CocoFormatError, match="cannot read"):
        load_coco(tmp_path / "absent.json")


def test_valid_file_loads_as_the_contract_says(tmp_path: Path) -> None:
    path = write_coco(tmp_path, valid_coco(), ["images/knee.png", "images/hip.png", "images/normal.png"])
    index = load_coco(path)
    assert [im.id for im in index.images] == [3, 5, 7] and len(index) == 3
    assert index.category_to_label == {5: 1, 9: 2} and index.label_to_category == {1: 5, 2: 9}
    assert index.class_names == ["calcinosis", "tumoral"]
    hip, normal, knee = index.images
    assert knee.path == tmp_path / "images/knee.png" and knee.file_name == "images/knee.png"
    assert (knee.width, knee.height, knee.patient_id) == (200, 100, "P1")
    assert knee.extra == {"joint": "knee", "pixel_spacing_mm": 0.14}
    np.testing.assert_allclose(knee.boxes, [[10, 20, 40, 60], [150.5, 60, 200, 100]])  # xywh -> xyxy, clipped
    assert knee.boxes.dtype == np.float32 and knee.labels.dtype == np.int64
    assert knee.labels.tolist() == [2, 1] and knee.annotation_ids == [1, 2]
    assert hip.patient_id == "42" and hip.annotation_ids == [3]  # the crowd annotation is no lesion...
    np.testing.assert_allclose(hip.ignore_boxes, [[1, 1, 6, 6]])  # ...but an ignore region, xyxy
    assert hip.ignore_labels.tolist() == [1] and hip.ignore_boxes.dtype == np.float32
    assert knee.ignore_boxes.shape == (0, 4) and normal.ignore_labels.shape == (0,)
    assert normal.boxes.shape == (0, 4) and normal.labels.shape == (0,) and normal.patient_id is None
    for im in index.images:
        check_target(make_target(im.boxes, im.labels, im.id), im.height, im.width)
    other = load_coco(path, image_root=tmp_path / "elsewhere", check_files=False)
    assert other.images[0].path == tmp_path / "elsewhere/images/hip.png"


def test_to_coco_dict_loads_in_pycocotools_and_round_trips(tmp_path: Path) -> None:
    path = write_coco(tmp_path, valid_coco(), ["images/knee.png", "images/hip.png", "images/normal.png"])
    index = load_coco(path)
    knee_only = index.subset([7])
    d = knee_only.to_coco_dict()
    coco = COCO()
    coco.dataset = d
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    assert coco.getImgIds() == [7] and sorted(coco.getAnnIds()) == [1, 2]
    assert coco.loadAnns([1])[0]["bbox"] == [10, 20, 30, 40] and coco.loadAnns([1])[0]["category_id"] == 9
    assert coco.loadImgs([7])[0]["joint"] == "knee"
    again = load_coco(write_coco(tmp_path, index.to_coco_dict(), [], name="again.json"))
    assert [im.id for im in again.images] == [3, 5, 7]
    for a, b in zip(index.images, again.images, strict=True):
        np.testing.assert_allclose(a.boxes, b.boxes)
        assert a.labels.tolist() == b.labels.tolist() and a.patient_id == b.patient_id
        np.testing.assert_allclose(a.ignore_boxes, b.ignore_boxes)  # written back as iscrowd: 1
    with pytest.raises(KeyError, match="123"):
        index.subset([123])


def synthetic_index(tmp_path: Path):
    """48 images of 16 patients (3 each) plus 8 without patient id; 6 patients have lesions."""
    rng = np.random.default_rng(1)
    images, anns = [], []
    for i in range(56):
        patient = f"P{i % 16}" if i < 48 else None
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 64, "height": 64, "patient_id": patient})
        if (patient is not None and i % 16 < 6 and rng.random() < 0.7) or (patient is None and i % 3 == 0):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": [5, 5, 10, 10]})
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "calcinosis"}]}
    return load_coco(write_coco(tmp_path, data, []), check_files=False)


def test_patient_split_keeps_patients_on_one_side(tmp_path: Path) -> None:
    index = synthetic_index(tmp_path)

    def patients(part):
        return {im.patient_id or f"image {im.id}" for im in part.images}

    for seed in range(30):
        train, val = patient_split(index, val_fraction=0.2, seed=seed)
        assert not patients(train) & patients(val), seed
        assert sorted(im.id for im in train.images + val.images) == list(range(1, 57))
        assert abs(len(val) / len(index) - 0.2) <= 0.08, (seed, len(val))
        for part in (train, val):  # both sides keep patients with and without lesions
            by_patient: dict[str, bool] = {}
            for im in part.images:
                key = im.patient_id or f"image {im.id}"
                by_patient[key] = by_patient.get(key, False) or len(im.boxes) > 0
            assert set(by_patient.values()) == {True, False}, (seed, by_patient)
        assert val.class_names == index.class_names
    first, second = patient_split(index, 0.2, seed=3), patient_split(index, 0.2, seed=3)
    assert [im.id for im in first[1].images] == [im.id for im in second[1].images]
    splits = {tuple(im.id for im in patient_split(index, 0.2, seed=s)[1].images) for s in range(5)}
    assert len(splits) > 1  # the seed matters
    with pytest.raises(ValueError, match="val_fraction"):
        patient_split(index, val_fraction=1.0)


def test_concat_indexes_reads_several_files_as_one_set(tmp_path: Path) -> None:
    files = ["images/knee.png", "images/hip.png", "images/normal.png"]
    a = load_coco(write_coco(tmp_path / "a", valid_coco(), files))
    data = valid_coco()
    data["categories"] = [{"id": 19, "name": "tumoral"}, {"id": 15, "name": "calcinosis"}]  # other ids, same names
    for ann in data["annotations"]:
        ann["category_id"] += 10
    b = load_coco(write_coco(tmp_path / "b", data, files))
    both = concat_indexes([a, b])
    assert [im.id for im in both.images] == list(range(1, len(a) + len(b) + 1))
    assert [str(im.path) for im in both.images] == [str(im.path) for im in a.images + b.images]
    assert len({im.file_name for im in both.images}) == len(both)  # same names in two folders stay apart
    ann_ids = [k for im in both.images for k in im.annotation_ids]
    assert len(ann_ids) == 6 and ann_ids == list(range(1, 7))
    for merged, orig in zip(both.images, a.images + b.images):
        np.testing.assert_array_equal(merged.boxes, orig.boxes)
        np.testing.assert_array_equal(merged.labels, orig.labels)
    data["categories"][0]["name"] = "vascular"
    other = load_coco(write_coco(tmp_path / "c", data, files))
    with pytest.raises(ValueError, match="vascular"):
        concat_indexes([a, other])


def test_ignore_regions_reach_validation_targets_but_not_the_lesions(tmp_path: Path) -> None:
    import cv2

    from calcidet.data.dataset import RadiographDataset
    from calcidet.data.transforms import build_transforms

    path = write_coco(tmp_path, valid_coco(), ["images/normal.png"])
    for name, (w, h) in {"images/knee.png": (200, 100), "images/hip.png": (300, 150)}.items():
        cv2.imwrite(str(tmp_path / name), np.full((h, w), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "images/normal.png"), np.full((64, 64), 90, np.uint8))
    index = load_coco(path)
    dataset = RadiographDataset(index.images, image_size=150, transforms=build_transforms("eval", 150),
                                preload_threads=0)
    _, hip = dataset[0]  # id 3: 300x150 shown at 150x75, one lesion and one ignore region
    np.testing.assert_allclose(hip["boxes"].numpy(), [[0, 0, 150, 75]], atol=1e-4)
    assert hip["labels"].tolist() == [1]  # the region is not a lesion to learn
    np.testing.assert_allclose(hip["ignore_boxes"].numpy(), [[0.5, 0.5, 3, 3]], atol=1e-4)
    check_target(hip, 75, 150)
    _, knee = dataset[2]
    assert "ignore_boxes" not in knee and knee["labels"].tolist() == [2, 1]
