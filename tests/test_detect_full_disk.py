"""A disk that fills up during ``calcidet detect``: a clear error, no half-written file, and a rerun
(once there is room) completes into the files an uninterrupted run writes.

    .venv/bin/python -m pytest tests/test_detect_full_disk.py -q

Two ways to run out of room: a 256 KiB tmpfs (ENOSPC; needs root, skipped without it) and
RLIMIT_FSIZE (EFBIG on any file that grows past the limit; Python ignores SIGXFSZ).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from calcidet.train.detect_cmd import main as detect_main
from tests.bad_inputs import encode, noise_image

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ("detections.csv", "images.csv", "detections.json", "detections_coco.json")
LIMIT = 4096  # bytes: settings.json fits, the journal of six films and detections.csv do not


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _fill(disk: Path, leave: int) -> None:
    """Leave ``leave`` bytes free on ``disk`` (a tmpfs counts whole 4 KiB pages)."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    st = os.statvfs(disk)
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))


def _args(images: Path, checkpoint: Path, out: Path) -> list[str]:
    return [str(images), "--checkpoint", str(checkpoint), "--output", str(out), "--num-workers", "0",
            "--batch-size", "2", "--threshold", "0.07"]


def _detect_process(args: list[str], file_size_limit: int | None) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "calcidet.train.cli", "detect", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, preexec_fn=limit if file_size_limit else None,
                          env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"))


def _assert_clean_failure(done: subprocess.CompletedProcess, out: Path, names: str) -> None:
    assert done.returncode == 1, done.stderr[-3000:]
    assert re.search(rf"cannot write {re.escape(str(out))}/({names}): ", done.stderr), done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "rerun the same command" in done.stderr
    assert not (out / "run.json").exists()  # absent: the set is not complete
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # no temporary file left behind


@pytest.mark.slow
@pytest.mark.parametrize("full", ["tmpfs", "file_size_limit"])
def test_full_disk_stops_cleanly_and_a_rerun_completes(full: str, tmp_path, request, small_untrained_checkpoint) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(16):  # enough boxes from an untrained network that the outputs outgrow LIMIT
        (images / f"film{i}.png").write_bytes(encode(".png", noise_image(96, 96, seed=i)))
    checkpoint = small_untrained_checkpoint
    straight = tmp_path / "straight"
    assert detect_main(_args(images, checkpoint, straight)) == 0
    assert (straight / ".journal" / "rank0.jsonl").stat().st_size > LIMIT
    assert (straight / "detections.csv").stat().st_size > LIMIT

    disk = request.getfixturevalue("small_disk") if full == "tmpfs" else tmp_path
    out = disk / "out"
    if full == "tmpfs":
        _fill(disk, leave=2 * 4096)  # a page for settings.json, one for the journal
    # The journal fills the disk part way through the films.
    done = _detect_process(_args(images, checkpoint, out), LIMIT if full == "file_size_limit" else None)
    _assert_clean_failure(done, out, r"\.journal/rank0\.jsonl")
    assert not any((out / name).exists() for name in OUTPUTS)

    if full == "tmpfs":
        (disk / "filler").unlink()
    assert detect_main(_args(images, checkpoint, out)) == 0  # room again: the rerun finishes the run
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (straight / name).read_bytes(), name

    # Now the final files do not fit: each file is whole (the earlier one) or absent, never half.
    if full == "tmpfs":
        _fill(disk, leave=0)
    done = _detect_process(_args(images, checkpoint, out), LIMIT if full == "file_size_limit" else None)
    _assert_clean_failure(done, out, "|".join(re.escape(n) for n in OUTPUTS))
    for name in OUTPUTS:
        assert not (out / name).exists() or (out / name).read_bytes() == (straight / name).read_bytes(), name

    if full == "tmpfs":
        (disk / "filler").unlink()
    assert detect_main(_args(images, checkpoint, out)) == 0
    assert (out / "run.json").is_file()
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (straight / name).read_bytes(), name
