"""The image-level scope check (``model.film_check``): its shipped reference, real images, and detect --image-check."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from calcidet.data.readers import read_radiograph
from calcidet.model.film_check import REFERENCE, RadiographCheck
from calcidet.train.detect_cmd import main as detect_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check() -> RadiographCheck:
    return RadiographCheck.load()


def _nema(name: str) -> np.ndarray:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not available (install pydicom-data)")
    return read_radiograph(path, max_side=512).image


def test_shipped_reference_is_the_vendored_films(check: RadiographCheck) -> None:
    with open(REPO / "data" / "films" / "manifest.csv", newline="") as f:
        films = list(csv.DictReader(f))
    assert check.reference.shape == (len(films), 1280)
    assert np.allclose(check.reference.norm(dim=1).numpy(), 1, atol=1e-2)  # stored as float16
    assert 0 < check.threshold < 1 and check.k == 5
    # A reference film is its own nearest neighbour (the same read and embedding as when it was built).
    film = read_radiograph(REPO / "data" / "films" / films[0]["file"], max_side=512).image
    similarity = (check.embed([film]) @ check.reference.T)[0]
    assert similarity.argmax() == 0 and similarity.max() > 0.99
    assert check.distances([film])[0] < check.threshold


def test_images_that_are_no_plain_film_are_out_of_scope(check: RadiographCheck) -> None:
    # Pixels only: an MR of the shoulder and an ultrasound frame, whatever their tags say.
    for name in ("MR2_UNCR.dcm", "US1_UNCR.dcm"):
        verdict = check(_nema(name))
        assert verdict.scope == "out_of_scope", name
        assert verdict.reason.startswith("image: unlike a plain radiograph (distance ")
    assert check(_nema("RG3_UNCR.dcm")).scope == "unknown"  # a real ankle CR is read


def test_save_and_load_keep_the_distances(check: RadiographCheck, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(8, 1280)).astype(np.float32)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    small = RadiographCheck(reference, threshold=0.25, k=3)
    small.save(tmp_path / "ref.npz")
    loaded = RadiographCheck.load(tmp_path / "ref.npz")
    assert (loaded.threshold, loaded.k) == (0.25, 3)
    films = [rng.random((60, 80)), rng.random((90, 40))]
    assert np.allclose(small.distances(films), loaded.distances(films), atol=1e-3)
    with pytest.raises(ValueError, match="N >= k"):
        RadiographCheck(reference[:2], threshold=0.25, k=3)


def test_reference_ships_in_the_package() -> None:
    assert REFERENCE.parent == REPO / "model" and REFERENCE.is_file()
    text = (REPO / "pyproject.toml").read_text()
    assert f'"calcidet.model" = ["{REFERENCE.name}"]' in text


@pytest.mark.slow
def test_detect_image_check_marks_an_mr_slice_saved_as_png(tiny_checkpoint, tmp_path: Path) -> None:
    films = tmp_path / "in"
    films.mkdir()
    cv2.imwrite(str(films / "mr.png"), (_nema("MR2_UNCR.dcm") * 255).astype(np.uint8))
    from pydicom.data import get_testdata_file

    shutil.copy(get_testdata_file("RG3_UNCR.dcm"), films / "ankle.dcm")
    rows = {}
    for flag in ([], ["--image-check"]):
        out = tmp_path / f"out{len(flag)}"
        assert detect_main([str(films), "--checkpoint", str(tiny_checkpoint), "--output", str(out),
                            "--threshold", "0.0", "--num-workers", "0", *flag]) == 0
        with open(out / "images.csv", newline="") as f:
            rows[bool(flag)] = {r["image"]: r for r in csv.DictReader(f)}
    assert rows[False]["mr.png"]["scope"] == "unknown"  # off by default: read like any PNG
    assert int(rows[False]["mr.png"]["num_detections"]) > 0  # threshold 0: the tiny model's every box
    mr = rows[True]["mr.png"]
    assert mr["scope"] == "out_of_scope" and mr["scope_reason"].startswith("image: unlike a plain radiograph")
    assert mr["num_detections"] == "0"
    # The ankle's tags decide before the pixels: in scope either way.
    assert rows[True]["ankle.dcm"]["scope"] == rows[False]["ankle.dcm"]["scope"] == "in_scope"
    # The journal knows which reference judged the films: a rebuilt one must not resume into these.
    settings = json.loads((tmp_path / "out1" / ".journal" / "settings.json").read_text())
    assert settings["image_check"] == hashlib.sha256(REFERENCE.read_bytes()).hexdigest()[:16]
