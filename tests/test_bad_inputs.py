"""Broken, hostile and odd files (``tests.bad_inputs``) through the reader, detect and the training dataset.

    .venv/bin/python -m pytest tests/test_bad_inputs.py -q

``calcidet detect`` on a folder of the whole corpus plus three good films must finish and write one
``images.csv`` row per listed file: ``error`` with a readable reason for what cannot be read, ``ok``
for the odd-but-valid kinds and the good films, nothing for what is not a file (symlink loops, a
directory named ``x.png``). For training, a COCO file that points at a bad image fails naming it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from pathlib import Path

import pytest

from calcidet.data.coco import CocoFormatError, load_coco
from calcidet.data.dataset import RadiographDataset
from calcidet.data.readers import RadiographReadError, read_radiograph
from calcidet.train.detect_cmd import main as detect_main
from calcidet.train.output_files import safe_output_path
from tests.bad_inputs import (
    KINDS,
    Expectation,
    encode,
    make_bad_corpus,
    make_good_images,
    noise_image,
)

FILE_KINDS = [k.name for k in KINDS if k.expect.status != "absent"]
MIN_KINDS = 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Expectation]]:
    root = tmp_path_factory.mktemp("bad_corpus")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns while writing the odd elements on purpose
        kinds = make_bad_corpus(root)
    kinds.update(make_good_images(root))
    return root, kinds


def _reason_is_readable(reason: str) -> bool:
    """One line of words, without a Python object repr or memory address in it."""
    return bool(reason.strip()) and "\n" not in reason and not re.search(r"\b0x[0-9a-f]{6,}|<\w+[. ]", reason)


def test_corpus_has_enough_kinds(corpus) -> None:
    assert len(KINDS) >= MIN_KINDS + 10
    root, kinds = corpus
    assert sum(1 for e in kinds.values() if e.kind != "good film") >= MIN_KINDS
    for name in kinds:  # everything promised is on disk (as a file, a link or a folder)
        assert os.path.lexists(root / name), name


@pytest.mark.parametrize("name", FILE_KINDS)
def test_reader_gives_an_image_or_a_readable_error(corpus, name: str) -> None:
    root, kinds = corpus
    if name not in kinds:
        pytest.skip("running as root: a chmod 0 file is readable")
    expect = kinds[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if expect.status == "ok":
            rad = read_radiograph(root / name)
            assert rad.image.min() >= 0.0 and rad.image.max() <= 1.0
            return
        with pytest.raises(RadiographReadError) as info:
            read_radiograph(root / name)
    err = info.value
    assert err.path == str(root / name)
    assert all(w in err.reason.lower() for w in expect.words), err.reason
    assert _reason_is_readable(err.reason), err.reason


def test_jpeg_with_a_long_trailer_reads(tmp_path) -> None:
    # Phones append a video to "motion photos": the end marker is far from the end of the file.
    path = tmp_path / "trailer.jpg"
    path.write_bytes(encode(".jpg", noise_image()) + bytes(70_000))
    assert read_radiograph(path).original_size == (96, 96)


def test_truncated_jpeg_with_a_complete_thumbnail_is_refused(tmp_path) -> None:
    # An EXIF thumbnail is a whole JPEG (with its own end marker) inside the header: it must not count.
    thumb = encode(".jpg", noise_image(16, 16))
    full = encode(".jpg", noise_image())
    app1 = b"Exif\x00\x00" + thumb
    with_thumb = full[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + full[2:]
    path = tmp_path / "thumb.jpg"
    path.write_bytes(with_thumb[: len(with_thumb) * 3 // 4])
    with pytest.raises(RadiographReadError, match="truncated JPEG"):
        read_radiograph(path)
    path.write_bytes(with_thumb)  # the same file whole reads
    assert read_radiograph(path).original_size == (96, 96)


def test_absurd_dicom_spacing_is_dropped_not_believed(corpus) -> None:
    root, _ = corpus
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rad = read_radiograph(root / "absurd_spacing.dcm")
    assert rad.pixel_spacing_mm is None and rad.spacing_source is None


@pytest.mark.slow
def test_detect_finishes_and_records_every_file(corpus, small_untrained_checkpoint, tmp_path) -> None:
    root, kinds = corpus
    out = tmp_path / "out"
    argv = [str(root), "--checkpoint", str(small_untrained_checkpoint), "--output", str(out), "--threshold", "0.5",
            "--batch-size", "4", "--num-workers", "1", "--overlays"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert detect_main(argv) == 0
    with open(out / "images.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_name = {r["image"]: r for r in rows}
    assert len(by_name) == len(rows), "duplicate rows"
    listed = {os.fsencode(n).decode("utf-8", "backslashreplace"): e for n, e in kinds.items()
              if e.status != "absent"}
    assert set(by_name) == set(listed), "rows differ from the files that can be listed"
    for name, expect in listed.items():
        row = by_name[name]
        assert row["status"] == expect.status, (expect.kind, row)
        if expect.status == "error":
            assert all(w in row["reason"].lower() for w in expect.words), (expect.kind, row["reason"])
            assert _reason_is_readable(row["reason"]), row["reason"]
        else:
            assert row["reason"] == "" and int(row["width"]) > 0 and int(row["height"]) > 0, row
            assert safe_output_path(out / "overlays", name, ".png").is_file(), name
    run = json.loads((out / "run.json").read_text())
    errors = sum(e.status == "error" for e in listed.values())
    assert run["counts"]["error"] == errors and run["counts"]["ok"] == len(listed) - errors
    coco = json.loads((out / "detections_coco.json").read_text())  # the readable films, no others
    assert sorted(im["file_name"] for im in coco["images"]) == sorted(n for n, e in listed.items()
                                                                       if e.status != "error")


def _coco_for(root: Path, entries: list[tuple[str, int, int]]) -> Path:
    """A COCO file (no annotations: negatives) listing ``(file_name, width, height)`` under ``root``."""
    images = [{"id": i + 1, "file_name": name, "width": w, "height": h} for i, (name, w, h) in enumerate(entries)]
    path = root.parent / f"{root.name}_coco_{len(entries)}.json"
    path.write_text(json.dumps({"images": images, "annotations": [],
                                "categories": [{"id": 1, "name": "calcinosis"}]}))
    return path


@pytest.mark.parametrize("name", [k.name for k in KINDS if k.expect.status == "error"])
def test_training_dataset_names_the_bad_file(corpus, name: str) -> None:
    root, kinds = corpus
    if name not in kinds:
        pytest.skip("running as root: a chmod 0 file is readable")
    index = load_coco(_coco_for(root, [(name, 64, 64)]), image_root=root)
    dataset = RadiographDataset(index.images, image_size=64, preload_threads=0)
    with warnings.catch_warnings(), pytest.raises(RadiographReadError) as info:
        warnings.simplefilter("ignore")
        dataset[0]
    assert info.value.path == str(root / name) and name in str(info.value)
    assert "image id 1" in info.value.reason


def test_training_preload_fails_naming_the_bad_file_among_good_ones(corpus) -> None:
    root, _ = corpus
    entries = [("good/film.png", 100, 120), ("truncated.dcm", 40, 48), ("good/film.jpg", 120, 100)]
    index = load_coco(_coco_for(root, entries), image_root=root)
    with warnings.catch_warnings(), pytest.raises(RadiographReadError, match=r"truncated\.dcm"):
        warnings.simplefilter("ignore")
        RadiographDataset(index.images, image_size=64, preload_threads=2)


@pytest.mark.parametrize("name", ["missing.png", "loop_a.png", "dangling.png", "folder.png"])
def test_coco_pointing_at_what_is_not_a_file_names_it(corpus, name: str) -> None:
    root, _ = corpus
    with pytest.raises(CocoFormatError, match=re.escape(str(root / name))):
        load_coco(_coco_for(root, [(name, 64, 64)]), image_root=root)


@pytest.mark.parametrize("name", ["rgba.png", "palette.png", "cmyk.jpg", "one_pixel.png", "aspect_4000x3.png"])
def test_odd_but_valid_files_train(corpus, name: str) -> None:
    root, _ = corpus
    height, width = read_radiograph(root / name).original_size
    index = load_coco(_coco_for(root, [(name, width, height)]), image_root=root)
    image, target = RadiographDataset(index.images, image_size=64, preload_threads=0)[0]
    assert image.shape[0] == 1 and max(image.shape[1:]) == 64 and target["boxes"].shape == (0, 4)
