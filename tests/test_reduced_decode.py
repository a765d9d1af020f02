"""JPEGs decoded at 1/2, 1/4, 1/8 scale (``read_radiograph(max_side=...)``) match a full decode.

    .venv/bin/python -m pytest tests/test_reduced_decode.py -q
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from calcidet.data.dataset import FolderDataset, resize_longest
from calcidet.data.raster import jpeg_reduction
from calcidet.data.readers import read_radiograph

FRACATLAS = Path(__file__).resolve().parents[2] / "shared" / "radiographs" / "fracatlas"


def _large_film(path: Path, long_side: int = 2500, orientation: int | None = None) -> np.ndarray:
    """A real film upscaled to ``long_side`` (a synthetic one if the shared films are absent)."""
    films = sorted(FRACATLAS.glob("hand_wrist_forearm/*.jpg"))[:1]
    if films:
        small = cv2.imread(str(films[0]), cv2.IMREAD_GRAYSCALE)
    else:  # smooth structure at several scales, as bone and soft tissue have (not pixel noise,
        # which no film holds and which a reduced decode cannot keep)
        rng = np.random.default_rng(0)
        layers = [cv2.GaussianBlur(rng.random((300, 240), dtype=np.float32), (0, 0), s) for s in (3, 6, 12)]
        mixed = sum((x - x.min()) / (x.max() - x.min()) for x in layers) / len(layers)
        small = (mixed * 255).astype(np.uint8)
    scale = long_side / max(small.shape)
    big = cv2.resize(small, (round(small.shape[1] * scale), round(small.shape[0] * scale)),
                     interpolation=cv2.INTER_CUBIC)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(big).save(path, quality=92, exif=exif.tobytes())
    return big


@pytest.mark.parametrize("max_side, denom", [(300, 8), (384, 4), (1024, 2), (1300, 1), (None, 1)])
def test_reduction_is_the_largest_that_covers_max_side(max_side, denom) -> None:
    assert jpeg_reduction(1873, 2500, max_side)[0] == denom


@pytest.mark.parametrize("max_side", [300, 384, 1024])
def test_reduced_decode_matches_full_decode_resized(tmp_path, max_side) -> None:
    path = tmp_path / "film.jpg"
    big = _large_film(path)
    full = read_radiograph(path)
    reduced = read_radiograph(path, max_side=max_side)
    assert reduced.original_size == full.original_size == big.shape
    assert max(reduced.image.shape) >= max_side
    assert max(reduced.image.shape) < max(big.shape)  # it did decode smaller
    assert reduced.pixel_spacing_mm == full.pixel_spacing_mm
    # what the model sees: both resized to max_side
    a = resize_longest(full.image, max_side)
    b = resize_longest(reduced.image, max_side, reduced.original_size)
    assert a.shape == b.shape
    assert float(np.abs(a - b).mean()) < 0.01  # of the 0..1 range


def test_exif_rotated_jpeg_reports_the_displayed_full_size(tmp_path) -> None:
    path = tmp_path / "rotated.jpg"
    big = _large_film(path, orientation=6)  # 90 degrees: width and height swap on display
    full = read_radiograph(path)
    reduced = read_radiograph(path, max_side=384)
    assert full.original_size == (big.shape[1], big.shape[0])
    assert reduced.original_size == full.original_size
    # rotated like the full decode: the same shape once both are brought to one size
    assert resize_longest(reduced.image, 384, reduced.original_size).shape == resize_longest(full.image, 384).shape


def test_png_ignores_max_side_and_folder_dataset_keeps_original_size(tmp_path) -> None:
    jpg, png = tmp_path / "a.jpg", tmp_path / "b.png"
    big = _large_film(jpg)
    cv2.imwrite(str(png), big)
    assert read_radiograph(png, max_side=384).image.shape == big.shape
    data = FolderDataset([jpg, png], ["a.jpg", "b.png"], image_size=384)
    for i in range(2):
        image, meta = data[i]
        assert meta["error"] is None
        assert tuple(meta["original_size"]) == big.shape
        assert max(image.shape[1:]) == 384  # decoded at 1/2 (1250 px >= 2 x 384), then area-resized
