"""The synthetic generator: valid COCO, deterministic per seed, realistic contents, every format."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from data.coco import load_coco
from data.readers import read_radiograph
from data.synth import synthesize

SMALL = {"size_range": (256, 384)}


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "a"
    synthesize(out, n=16, seed=5, workers=1, dicom_fraction=0.3, **SMALL)
    return out


def test_coco_loads_with_pycocotools_and_calcidet(dataset: Path) -> None:
    from pycocotools.coco import COCO

    coco = COCO(str(dataset / "annotations.json"))
    assert len(coco.getImgIds()) == 16 and coco.getCatIds() == [1]
    index = load_coco(dataset / "annotations.json")  # full validation: files, boxes inside images
    assert len(index) == 16
    positives = sum(len(im.boxes) > 0 for im in index.images)
    assert 0 < positives < 16  # both lesion films and negatives
    for im in index.images:
        assert im.patient_id and im.extra["joint"]
        if len(im.boxes):
            assert (im.boxes[:, 2] > im.boxes[:, 0]).all() and (im.boxes[:, 3] <= im.height).all()


def test_same_seed_identical_files_other_seed_different(dataset: Path, tmp_path: Path) -> None:
    synthesize(tmp_path / "b", n=16, seed=5, workers=2, dicom_fraction=0.3, **SMALL)  # parallel this time
    assert _digests(dataset) == _digests(tmp_path / "b")
    synthesize(tmp_path / "c", n=16, seed=6, workers=1, dicom_fraction=0.3, **SMALL)
    other = _digests(tmp_path / "c")
    assert other["annotations.json"] != _digests(dataset)["annotations.json"]


def test_lesions_are_brighter_than_the_tissue_around_them(dataset: Path) -> None:
    coco = json.loads((dataset / "annotations.json").read_text())
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    contrasts = []
    for ann in coco["annotations"]:
        image = read_radiograph(dataset / files[ann["image_id"]]).image
        x, y, w, h = (int(round(v)) for v in ann["bbox"])
        inner = image[y:y + h, x:x + w]
        pad = max(w, h) // 2
        ring = image[max(0, y - pad):y + h + pad, max(0, x - pad):x + w + pad].copy()
        ring[pad if y >= pad else y:, :][: h, pad if x >= pad else x:][:, :w] = np.nan
        contrasts.append(float(np.percentile(inner, 90)) - float(np.nanmedian(ring)))
    assert contrasts and np.median(contrasts) > 0.1


def test_every_format_written_and_dicom_reads_bone_bright(dataset: Path) -> None:
    suffixes = {p.suffix for p in (dataset / "images").iterdir()}
    assert ".dcm" in suffixes and ".png" in suffixes
    for path in sorted((dataset / "images").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        assert ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
        assert 10 <= ds.BitsStored <= 16
        image = read_radiograph(path).image
        raw = cv2.resize(image, (64, 64))
        # Bone is brighter than air whatever the stored photometric: the film's darkest tenth is air.
        assert np.percentile(raw, 95) - np.percentile(raw, 5) > 0.3


def test_backgrounds_mode_inserts_lesions_into_given_films(tmp_path: Path) -> None:
    films = tmp_path / "films"
    films.mkdir()
    for k in range(2):  # a crude film: dark air, grey limb, bright bone band
        img = np.full((300, 240), 15, np.uint8)
        img[:, 40:200] = 100
        img[:, 100:140] = 200
        cv2.imwrite(str(films / f"f{k}.png"), img)
    synthesize(tmp_path / "out", n=6, seed=1, backgrounds=films, workers=1)
    index = load_coco(tmp_path / "out" / "annotations.json")
    assert len(index) == 6 and all(im.extra.get("background") for im in index.images)
    assert all((im.width, im.height) == (240, 300) for im in index.images)


@pytest.mark.slow
def test_backgrounds_from_real_radiographs(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "shared" / "radiographs" / "fracatlas" / "lower_limb_knee_ankle_foot"
    if not root.is_dir():
        pytest.skip("../shared/radiographs not present")
    subset = tmp_path / "real"
    subset.mkdir()
    for p in sorted(root.glob("*.jpg"))[:3]:
        (subset / p.name).symlink_to(p)
    synthesize(tmp_path / "out", n=4, seed=2, backgrounds=subset, workers=1)
    assert len(load_coco(tmp_path / "out" / "annotations.json")) == 4
