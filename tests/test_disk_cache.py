"""The disk cache of decoded films: same pixels as the in-RAM cache, invalidated by edits, repaired when damaged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from calcidet.data.coco import CocoImage, load_coco
from calcidet.data.datamodule import CalcinosisDataModule
from calcidet.data.dataset import RadiographDataset
from calcidet.data.disk_cache import (
    HEADER_SIZE,
    STALE_TEMP_S,
    CacheEntryWarning,
    DiskImageCache,
    temp_path,
)

IMAGE_SIZE = 32
REPO = Path(__file__).resolve().parents[1]
# (height, width, dtype): landscape, portrait, already small, 16-bit
FILMS = [(48, 64, np.uint8), (80, 40, np.uint8), (20, 30, np.uint8), (60, 60, np.uint16)]


STORED = [cv2.IMWRITE_PNG_COMPRESSION, 0]


def write_film(path: Path, height: int, width: int, dtype: type, seed: int, params: list[int] | None = None) -> None:
    top = np.iinfo(dtype).max
    rng = np.random.default_rng(seed)
    film = rng.integers(0, top, (height, width), endpoint=True).astype(dtype)
    assert cv2.imwrite(str(path), film, params or [])


def write_films(root: Path, films: list[tuple[int, int, type]] = FILMS) -> Path:
    """PNG films under ``root/images`` and their COCO file (one box on the first film); returns the JSON."""
    (root / "images").mkdir(parents=True)
    images = []
    for i, (h, w, dtype) in enumerate(films):
        write_film(root / f"images/film{i}.png", h, w, dtype, seed=i)
        images.append({"id": i + 1, "file_name": f"images/film{i}.png", "width": w, "height": h})
    coco = {"images": images, "categories": [{"id": 1, "name": "calcinosis"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 10, 8]}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root / "annotations.json"


@pytest.fixture
def films(tmp_path: Path) -> list[CocoImage]:
    return load_coco(write_films(tmp_path / "coco")).images


def disk_dataset(images: list[CocoImage], cache_dir: Path, threads: int = 2) -> RadiographDataset:
    return RadiographDataset(images, IMAGE_SIZE, cache="disk", cache_dir=cache_dir, preload_threads=threads)


def pixels(dataset: RadiographDataset) -> list[torch.Tensor]:
    return [dataset[i][0] for i in range(len(dataset))]


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and torch.equal(x, y)


@pytest.mark.parametrize("threads", [2, 0])  # built up front, or entry by entry on first access
@pytest.mark.parametrize("mode", ["disk", "none"])
def test_every_mode_gives_the_memory_pixels(films, tmp_path, mode, threads) -> None:
    memory = pixels(RadiographDataset(films, IMAGE_SIZE))
    other = RadiographDataset(films, IMAGE_SIZE, cache=mode, cache_dir=tmp_path / "cache", preload_threads=threads)
    assert_same(pixels(other), memory)
    assert max(max(t.shape[1:]) for t in memory) == IMAGE_SIZE
    entries = sorted((tmp_path / "cache").glob("*.u8")) if mode == "disk" else []
    assert len(entries) == (len(films) if mode == "disk" else 0)


def test_a_built_cache_is_read_not_rewritten(films, tmp_path) -> None:
    disk_dataset(films, tmp_path / "cache")
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.u8")}
    cache = DiskImageCache(tmp_path / "cache", IMAGE_SIZE)
    assert cache.build([f.path for f in films], lambda i: pytest.fail("decoded a cached film")) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.u8")} == stamps
    assert DiskImageCache(tmp_path / "cache", IMAGE_SIZE + 1).entry_path(films[0].path) not in stamps


@pytest.mark.parametrize("edit", ["new content and size", "same size, newer mtime"])
def test_editing_a_film_invalidates_its_entry(tmp_path, edit) -> None:
    images = load_coco(write_films(tmp_path / "coco")).images
    path = images[0].path
    write_film(path, *FILMS[0], seed=0, params=STORED)  # uncompressed: the same size whatever the pixels
    old_mtime = path.stat().st_mtime_ns
    before = pixels(disk_dataset(images, tmp_path / "cache"))
    old_entry = DiskImageCache(tmp_path / "cache", IMAGE_SIZE).entry_path(path)
    if edit == "new content and size":
        assert cv2.imwrite(str(path), np.zeros((48, 64), np.uint8))  # compresses to far fewer bytes
    else:
        size = path.stat().st_size
        assert cv2.imwrite(str(path), 255 - cv2.imread(str(path), cv2.IMREAD_UNCHANGED), STORED)
        assert path.stat().st_size == size
        os.utime(path, ns=(time.time_ns(), old_mtime + 10**9))  # a coarse clock could leave mtime as it was
    assert DiskImageCache(tmp_path / "cache", IMAGE_SIZE).entry_path(path) != old_entry
    after = pixels(disk_dataset(images, tmp_path / "cache"))
    fresh = pixels(RadiographDataset(images, IMAGE_SIZE))
    assert_same(after, fresh)
    assert not torch.equal(after[0], before[0])
    assert_same(after[1:], before[1:])


def _truncate(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes()[: HEADER_SIZE + 10])


def _flip_pixel(entry: Path) -> None:
    data = bytearray(entry.read_bytes())
    data[HEADER_SIZE + 7] ^= 0x01
    entry.write_bytes(bytes(data))


def _flip_height(entry: Path) -> None:
    data = bytearray(entry.read_bytes())
    data[24] ^= 0x01  # after the 8-byte magic and the 16-byte key digest
    entry.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_pixel, _flip_height, lambda e: e.write_bytes(b"")])
def test_a_damaged_entry_is_reported_and_rebuilt(films, tmp_path, damage) -> None:
    dataset = disk_dataset(films, tmp_path / "cache")
    good = pixels(dataset)
    entry = DiskImageCache(tmp_path / "cache", IMAGE_SIZE).entry_path(films[0].path)
    damage(entry)
    with pytest.warns(CacheEntryWarning, match=entry.name):
        image, _ = dataset[0]
    assert torch.equal(image, good[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten entry is whole again: no second warning
        assert_same(pixels(dataset), good)


def test_build_repairs_an_entry_whose_length_is_wrong(films, tmp_path) -> None:
    disk_dataset(films, tmp_path / "cache")
    entry = DiskImageCache(tmp_path / "cache", IMAGE_SIZE).entry_path(films[1].path)
    _truncate(entry)
    with pytest.warns(CacheEntryWarning, match=entry.name):
        dataset = disk_dataset(films, tmp_path / "cache")
    assert entry.stat().st_size > HEADER_SIZE + 10
    assert_same(pixels(dataset), pixels(RadiographDataset(films, IMAGE_SIZE)))


def test_a_killed_write_leaves_a_temp_file_that_is_never_read(films, tmp_path) -> None:
    cache = DiskImageCache(tmp_path / "cache", IMAGE_SIZE)
    entry = cache.entry_path(films[0].path)
    disk_dataset(films[:1], tmp_path / "cache")
    whole = entry.read_bytes()
    entry.unlink()
    fresh, stale = temp_path(entry), temp_path(entry).with_name(f".{entry.name}.1.2.tmp")
    fresh.write_bytes(whole[: len(whole) // 2])  # what a write killed half-way leaves
    stale.write_bytes(whole[:100])
    os.utime(stale, (time.time() - 2 * STALE_TEMP_S,) * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = disk_dataset(films, tmp_path / "cache")
    assert entry.read_bytes() == whole
    assert not stale.exists()  # an hour old: its writer is dead
    assert_same(pixels(dataset), pixels(RadiographDataset(films, IMAGE_SIZE)))


def test_readers_never_see_a_half_written_entry(films, tmp_path) -> None:
    cache = DiskImageCache(tmp_path / "cache", IMAGE_SIZE)
    source = films[0].path
    image = np.random.default_rng(0).integers(0, 255, (24, 32), dtype=np.uint8)
    cache.put(source, image)
    stop = threading.Event()

    def rewrite() -> None:
        while not stop.is_set():
            cache.put(source, image)

    writers = [threading.Thread(target=rewrite) for _ in range(2)]
    for t in writers:
        t.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a torn entry would warn before being rebuilt
            for _ in range(300):
                np.testing.assert_array_equal(cache.get(source, lambda: pytest.fail("entry was missing")), image)
    finally:
        stop.set()
        for t in writers:
            t.join()
    assert not list((tmp_path / "cache").glob(".*.tmp"))


# Two fresh interpreters, as two ranks would be: a fork of the test process could inherit locks held by
# the thread pools earlier tests started, and hang.
_BUILD = """
import sys
from pathlib import Path
from calcidet.data.coco import load_coco
from calcidet.data.dataset import RadiographDataset
RadiographDataset(load_coco(sys.argv[1]).images, int(sys.argv[3]), cache="disk", cache_dir=Path(sys.argv[2]))
"""


def test_two_processes_building_one_cache_end_with_a_valid_cache(tmp_path) -> None:
    films = [(40 + i % 7, 30 + i % 5, np.uint8) for i in range(60)]
    json_path = write_films(tmp_path / "coco", films)
    cmd = [sys.executable, "-c", _BUILD, str(json_path), str(tmp_path / "cache"), str(IMAGE_SIZE)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    images = load_coco(json_path).images
    assert len(list((tmp_path / "cache").glob("*.u8"))) == len(images)
    assert not list((tmp_path / "cache").glob(".*.tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached = RadiographDataset(images, IMAGE_SIZE, cache="disk", cache_dir=tmp_path / "cache", preload_threads=0)
        assert_same(pixels(cached), pixels(RadiographDataset(images, IMAGE_SIZE)))


def test_unknown_mode_and_missing_folder_are_refused(films, tmp_path) -> None:
    with pytest.raises(ValueError, match="cache must be one of memory, disk, none, got 'ram'"):
        RadiographDataset(films, IMAGE_SIZE, cache="ram")
    with pytest.raises(ValueError, match="needs cache_dir"):
        RadiographDataset(films, IMAGE_SIZE, cache="disk")
    with pytest.raises(ValueError, match="data.cache must be one of"):
        CalcinosisDataModule(train_json="x.json", cache="RAM")


def test_datamodule_disk_cache_defaults_beside_the_training_json(tmp_path) -> None:
    json_path = write_films(tmp_path / "coco")
    dm = CalcinosisDataModule(train_json=str(json_path), val_json=str(json_path), image_size=IMAGE_SIZE,
                              augment="train", batch_size=2, num_workers=0, cache="disk")
    dm.setup("fit")
    folder = tmp_path / "coco" / ".calcidet_cache"
    assert len(list(folder.glob("*.u8"))) == len(FILMS)  # train and val share the entries
    images, targets = next(iter(dm.train_dataloader()))
    assert len(images) == 2 and all(im.dtype == torch.float32 and im.max() <= 1.0 for im in images)
    assert targets[0]["boxes"].shape[1] == 4
