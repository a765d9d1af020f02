"""The synthetic generator: valid COCO, deterministic per seed, visible lesions, every file format.

    .venv/bin/python -m pytest tests/test_synth.py -q
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from calcidet.data.synth import FilmOptions, _plan, make_image, synthesize
from calcidet.data.synth_anatomy import JOINT_WEIGHTS
from calcidet.data.synth_lesions import PATTERNS, render_calcinosis

SMALL = {"size_range": (256, 384), "verbose": False}
REAL_FILMS = Path(__file__).resolve().parents[2] / "shared" / "radiographs"


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _coco(root: Path) -> dict:
    return json.loads((root / "annotations.json").read_text())


def _contrast(image: np.ndarray, bbox: list[float], q: float | None = None) -> float:
    """Inside the box (its mean, or percentile ``q``) minus the ring of half the box's size around it.

    The ring's mean goes with the box's mean; a percentile is compared with the ring's median
    (a lobulated mass fills its box with lucent clefts between dense nodules).
    """
    x, y, w, h = (int(round(v)) for v in bbox)
    pad = max(4, max(w, h) // 2)
    y0, x0 = max(0, y - pad), max(0, x - pad)
    outer = image[y0:y + h + pad, x0:x + w + pad].astype(np.float64)
    ring = np.ones(outer.shape, bool)
    ring[y - y0:y - y0 + h, x - x0:x - x0 + w] = False
    box = image[y:y + h, x:x + w].astype(np.float64)
    if q is None:
        return float(box.mean() - outer[ring].mean())
    return float(np.percentile(box, q) - np.median(outer[ring]))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "a"
    synthesize(out, n=12, seed=5, workers=1, dicom_fraction=0.3, **SMALL)
    return out


def test_coco_loads_with_pycocotools_and_boxes_lie_inside_images(dataset: Path) -> None:
    from pycocotools.coco import COCO

    coco = COCO(str(dataset / "annotations.json"))
    assert sorted(coco.getImgIds()) == list(range(1, 13)) and coco.getCatIds() == [1]
    assert coco.loadCats(1)[0]["name"] == "calcinosis"
    for ann in coco.loadAnns(coco.getAnnIds()):
        im = coco.loadImgs(ann["image_id"])[0]
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]
        assert ann["attributes"]["pattern"] in PATTERNS and 10 <= ann["attributes"]["diameter_mm"] <= 120
    for im in coco.loadImgs(coco.getImgIds()):
        assert (dataset / im["file_name"]).is_file() and im["patient_id"]
        assert 256 <= max(im["width"], im["height"]) <= 384
        for d in im["distractors"]:
            assert d["kind"] in {"vascular", "tendinitis", "osteophyte", "bone_island", "metal"}
            assert d["bbox"][2] > 0 and d["bbox"][3] > 0


def test_negatives_and_positives_both_present(dataset: Path) -> None:
    coco = _coco(dataset)
    with_lesion = {a["image_id"] for a in coco["annotations"]}
    assert 0 < len(with_lesion) < len(coco["images"])


def test_same_seed_gives_identical_files_in_parallel_other_seed_differs(dataset: Path, tmp_path: Path) -> None:
    synthesize(tmp_path / "b", n=12, seed=5, workers=2, dicom_fraction=0.3, **SMALL)
    assert _digests(tmp_path / "b") == _digests(dataset)
    synthesize(tmp_path / "c", n=12, seed=6, workers=1, dicom_fraction=0.3, **SMALL)
    other = _digests(tmp_path / "c")
    assert other["annotations.json"] != _digests(dataset)["annotations.json"]
    assert other["images/000001" + Path(_coco(tmp_path / "c")["images"][0]["file_name"]).suffix] != \
        _digests(dataset).get("images/000001" + Path(_coco(dataset)["images"][0]["file_name"]).suffix)


def test_lesions_are_brighter_than_the_tissue_around_them(dataset: Path) -> None:
    from calcidet.data.readers import read_radiograph

    coco = _coco(dataset)
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    images = [read_radiograph(dataset / files[a["image_id"]]).image for a in coco["annotations"]]
    means = [_contrast(im, a["bbox"]) for im, a in zip(images, coco["annotations"])]
    peaks = [_contrast(im, a["bbox"], q=90) for im, a in zip(images, coco["annotations"])]
    assert means and np.median(means) > 0.03 and np.mean(np.array(peaks) > 0.02) >= 0.8


def test_dicom_monochrome1_is_stored_inverted(tmp_path: Path) -> None:
    synthesize(tmp_path / "d", n=10, seed=3, workers=1, dicom_fraction=1.0, **SMALL)
    coco = _coco(tmp_path / "d")
    specs = _plan(3, 10, None)
    photometrics, peaks = set(), []
    for im in coco["images"]:
        ds = pydicom.dcmread(tmp_path / "d" / im["file_name"])
        assert 10 <= ds.BitsStored <= 16 and "RescaleSlope" in ds and (ds.Rows, ds.Columns) == (im["height"], im["width"])
        assert ("PixelSpacing" in ds) or ("ImagerPixelSpacing" in ds)
        values = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
        mono1 = ds.PhotometricInterpretation == "MONOCHROME1"
        shown = values.max() - values if mono1 else values
        film = make_image(3, im["id"] - 1, specs[im["id"] - 1], FilmOptions(SMALL["size_range"], 1.0))["film"]
        # The stored pixels are the film itself, inverted exactly when the header says MONOCHROME1.
        assert np.corrcoef(values.ravel(), film.ravel())[0, 1] < -0.99 if mono1 else \
            np.corrcoef(values.ravel(), film.ravel())[0, 1] > 0.99
        peaks += [_contrast(shown, a["bbox"], q=90) for a in coco["annotations"] if a["image_id"] == im["id"]]
        photometrics.add(ds.PhotometricInterpretation)
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}
    assert peaks and np.mean(np.array(peaks) > 0) >= 0.75  # bright lesions once displayed


def test_every_raster_format_reads_back(tmp_path: Path) -> None:
    synthesize(tmp_path / "f", n=16, seed=8, workers=1, dicom_fraction=0.0, **SMALL)
    suffixes = {Path(im["file_name"]).suffix for im in _coco(tmp_path / "f")["images"]}
    assert {".png", ".jpg", ".tif"} <= suffixes
    depths = {cv2.imread(str(p), cv2.IMREAD_UNCHANGED).dtype for p in (tmp_path / "f" / "images").glob("*.png")}
    assert depths == {np.dtype("uint8"), np.dtype("uint16")}


@pytest.mark.parametrize("joint_view", list(JOINT_WEIGHTS))
@pytest.mark.parametrize("size", [(260, 300), (900, 1000)])
def test_every_joint_renders_a_plausible_film(joint_view: tuple[str, str], size: tuple[int, int]) -> None:
    joint, view = joint_view
    spec = {"patient": 1, "joint": joint, "view": view, "side": "L", "patient_id": "p"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow, no NaN on the way
        item = make_image(4, 7, spec, FilmOptions(size, 0.0))
    film = item["film"]
    assert film.dtype == np.float32 and np.isfinite(film).all() and 0 <= film.min() and film.max() <= 1
    assert max(film.shape) == size[0] if size[0] == size[1] else size[0] <= max(film.shape) <= size[1]
    assert film.std() > 0.08 and 0.02 < (film > 0.5).mean() < 0.9  # air, tissue and bone, not a flat field
    assert item["joint"] == joint and item["side"] == "L" and 0.05 < item["spacing"] < 1.5


@pytest.mark.parametrize("pattern", PATTERNS)
def test_render_calcinosis_size_follows_the_pixel_spacing(pattern: str) -> None:
    fine = render_calcinosis(np.random.default_rng(0), 40, 0.1, pattern)
    coarse = render_calcinosis(np.random.default_rng(0), 40, 0.4, pattern)
    assert fine.shape[0] > 3.5 * coarse.shape[0] and fine.max() > 0.2 and coarse.max() > 0.2
    ys, xs = np.nonzero(fine > 0.1 * fine.max())
    assert 25 / 0.1 < xs.max() - xs.min() < 60 / 0.1  # about 40 mm across


def _fake_films(folder: Path, count: int) -> None:
    """Crude films: dark air, a grey limb with a bright bone inside, a bright label."""
    folder.mkdir(parents=True)
    for k in range(count):
        img = np.full((300, 240), 12, np.uint8)
        cv2.ellipse(img, (120, 150), (70, 170), 0, 0, 360, 95, -1)
        cv2.ellipse(img, (120 + 5 * k, 150), (22, 170), 0, 0, 360, 205, -1)
        cv2.putText(img, "R", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2)
        img = cv2.GaussianBlur(img, (0, 0), 1.5)
        path = folder / ("sub" if k % 2 else ".") / f"film{k}.png"  # odd ones in a subfolder: search recurses
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), img)


def test_backgrounds_mode_inserts_lesions_into_given_films(tmp_path: Path) -> None:
    films = tmp_path / "films"
    _fake_films(films, 2)
    synthesize(tmp_path / "out", n=6, seed=1, backgrounds=films, workers=1, dicom_fraction=0.0, verbose=False)
    coco = _coco(tmp_path / "out")
    assert all((im["width"], im["height"]) == (240, 300) for im in coco["images"])
    assert {im["background"] for im in coco["images"]} == {"film0.png", "sub/film1.png"}
    assert len({im["patient_id"] for im in coco["images"]}) == 2  # a film's copies are one patient
    assert coco["annotations"], "six films at a 63% positive rate should carry lesions"
    from calcidet.data.readers import read_radiograph

    lifts = []
    for a in coco["annotations"]:  # the mass adds density to the film it was put into, where it is boxed
        im = coco["images"][a["image_id"] - 1]
        added = read_radiograph(tmp_path / "out" / im["file_name"]).image - read_radiograph(films / im["background"]).image
        x, y, w, h = (int(round(v)) for v in a["bbox"])
        contrast = a["attributes"]["contrast"]  # from barely visible to dense, by design
        assert contrast > 0 and added[y:y + h, x:x + w].max() > 0.5 * contrast
        lifts.append(np.percentile(added[y:y + h, x:x + w], 90))
    assert np.median(lifts) > 0.02


@pytest.mark.slow
def test_backgrounds_from_real_radiographs(tmp_path: Path) -> None:
    root = REAL_FILMS / "fracatlas" / "lower_limb_knee_ankle_foot"
    if not root.is_dir():
        pytest.skip("../shared/radiographs is not present")
    subset = tmp_path / "real"
    subset.mkdir()
    for p in sorted(root.glob("*.jpg"))[:3]:
        (subset / p.name).symlink_to(p)
    report = synthesize(tmp_path / "out", n=6, seed=2, backgrounds=subset, workers=1, verbose=False)
    coco = _coco(tmp_path / "out")
    assert report.images == 6 and report.lesions == len(coco["annotations"]) > 0
    sizes = {p.name: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).shape for p in subset.iterdir()}
    for im in coco["images"]:
        assert (im["height"], im["width"]) == sizes[im["background"]]
        assert 0.05 < im["pixel_spacing_mm"][0] < 2.0
