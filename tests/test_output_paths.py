"""Outputs stay inside the output folder whatever the inputs are called; decompression bombs are refused.

    .venv/bin/python -m pytest tests/test_output_paths.py -q

Overlays are the only outputs whose paths come from input names (``train.output_files.safe_output_path``).
Names with ``..`` segments, leading ``//`` or ``\\\\``, drive letters, newlines, 255-byte names and
bytes that are not UTF-8 must all land under DIR, and nothing may be created anywhere else.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from calcidet.data.readers import MAX_PIXELS
from calcidet.train.output_files import safe_output_path
from tests.bad_inputs import (
    dicom_bytes,
    encode,
    jpeg_declaring,
    noise_image,
    png_declaring,
    tiff_declaring,
)

REPO = Path(__file__).resolve().parents[1]
NAME_MAX = 255

HOSTILE_NAMES = [
    "../../etc/passwd", "..", "../", "/", "//", "//etc/passwd", "///etc/passwd", "/abs/x.dcm",
    "\\\\server\\share\\x.png", "\\..\\..\\x.png", "C:\\Windows\\x.png", "C:/x.png", "a/./../../../b.png",
    "..foo/x.png", "..png", "...", "a b\tc\nd.png", "x" * 300 + ".png", "é" * 200 + ".png",
    os.fsdecode(b"\xff\xfe/..\xe9/x.png"), "~/x.png", "$HOME/x.png",
]


def _inside(path: Path, root: Path) -> bool:
    path, root = os.path.normpath(path), os.path.normpath(root)
    return os.path.commonpath([path, root]) == root and path != root


def _check_output_path(root: Path, name: str) -> Path:
    path = safe_output_path(root, name, ".png")
    assert _inside(path, root), (name, path)
    relative = path.relative_to(root).parts
    assert ".." not in relative and "." not in relative
    # each part fits NAME_MAX with room for the ".NAME.tmp" of atomic writes
    assert all(len(os.fsencode(p)) + len("..tmp") <= NAME_MAX for p in relative), (name, path)
    return path


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_overlay_path_of_hostile_names_stays_inside(tmp_path, name: str) -> None:
    _check_output_path(tmp_path / "out", name)


@settings(max_examples=150, deadline=None)
@given(name=st.text(st.characters(blacklist_characters="\x00"), max_size=400))
@example(name="//x")
@example(name="\\\\x")
@example(name="é" * 150)
def test_overlay_path_of_any_name_stays_inside(name: str) -> None:
    _check_output_path(Path("/srv/out"), name)


def test_long_names_stay_distinct() -> None:
    a, b = "x" * 300 + "a.png", "x" * 300 + "b.png"
    assert safe_output_path(Path("/o"), a) != safe_output_path(Path("/o"), b)
    assert safe_output_path(Path("/o"), "short.png", ".png") == Path("/o/short.png.png")


def _snapshot(root: Path) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        found.update(os.path.join(dirpath, n) for n in dirnames + filenames)
    return found


def _run_detect(argv: list[str]) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from calcidet.train.detect_cmd import main

        return main(argv)


@pytest.mark.slow
def test_detect_writes_only_inside_its_output_folder(tmp_path, small_untrained_checkpoint, monkeypatch) -> None:
    png = encode(".png", noise_image())
    inp, outside = tmp_path / "in", tmp_path / "outside"
    names = ["-rf.png", "a b\tc\nd.png", "back\\..\\..\\slash.png", "\\\\server\\share.png", "C:evil.png",
             "x" * 251 + ".png", "é漢字.png", "x.png", "x.png.png/y.png", "..foo/z.png"]
    for name in names:
        (inp / name).parent.mkdir(parents=True, exist_ok=True)
        (inp / name).write_bytes(png)
    with open(os.fsencode(inp / "latin1-") + b"\xe9.png", "wb") as f:
        f.write(png)
    outside.mkdir()
    (outside / "far.png").write_bytes(png)
    (tmp_path / "..png").write_bytes(png)
    escape = Path(f"/calcidet-escape-{os.getpid()}")  # where "\\\\calcidet-escape-PID\\x.png" once went
    lone = tmp_path / f"\\\\{escape.name}\\x.png"
    lone.write_bytes(png)

    out = tmp_path / "out"
    before = _snapshot(tmp_path)
    monkeypatch.chdir(inp)
    try:
        # relative, hidden (..foo), outside the input root via "..", absolute, a dotted file name
        assert _run_detect([".", "..foo", "../outside/far.png", str(tmp_path / "..png"), "--checkpoint",
                            str(small_untrained_checkpoint), "--output", str(out), "--overlays", "--num-workers", "0"]) == 0
        # a single file whose name starts with "\\": its overlay once went to /NAME/x.png.png
        assert _run_detect([str(lone), "--checkpoint", str(small_untrained_checkpoint), "--output", str(out / "lone"),
                            "--overlays", "--num-workers", "0"]) == 0
        assert not escape.exists()
    finally:
        if escape.exists():  # clean up what an unfixed writer left at the file-system root
            for p in sorted(escape.rglob("*"), reverse=True):
                p.unlink()
            escape.rmdir()

    created = _snapshot(tmp_path) - before - {str(out)}
    assert created and all(_inside(Path(p), out) for p in created), sorted(created - _snapshot(out))
    for p in _snapshot(out):
        assert not os.path.islink(p) and _inside(Path(os.path.realpath(p)), out.resolve()), p

    rows = {}
    for folder in (out, out / "lone"):
        with open(folder / "images.csv", newline="", encoding="utf-8") as f:
            rows.update({(folder, r["image"]): r for r in csv.DictReader(f)})
    expected = {f"in/{n}" for n in names if not n.startswith("..foo")} | {
        "in/latin1-\\xe9.png", "..foo/z.png", "far.png", "..png"}
    assert {name for folder, name in rows if folder == out} == expected
    assert {name for folder, name in rows if folder != out} == {lone.name}
    for (folder, name), row in rows.items():
        assert row["status"] == "ok", row
        overlay = safe_output_path(folder / "overlays", name, ".png")
        # "x.png" and the folder "x.png.png/" want the same overlay path: the second goes without one
        assert overlay.is_file() or name == "in/x.png.png/y.png", name


# ---------------------------------------------------------------- decompression bombs

_BOMB_PROBE = """
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
from calcidet.data.readers import RadiographReadError, read_radiograph
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
for path in sys.argv[1:]:
    if "warm" in path:
        read_radiograph(path)  # load each decoder before measuring
results = {}
for path in sys.argv[1:]:
    if "warm" in path:
        continue
    before, start = peak_mb(), time.perf_counter()
    try:
        read_radiograph(path)
        reason = None
    except RadiographReadError as exc:
        reason = exc.reason
    results[path] = {"seconds": time.perf_counter() - start, "peak_growth_mb": peak_mb() - before,
                     "reason": reason}
print(json.dumps(results))
"""


def test_max_pixels_is_explicit() -> None:
    from PIL import Image

    assert isinstance(MAX_PIXELS, int) and 10_000_000 <= MAX_PIXELS <= 1_000_000_000
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS  # PIL's own guard is set to ours


def test_bombs_are_refused_fast_without_allocating(tmp_path) -> None:
    """Files declaring just over MAX_PIXELS (a 200 MB 16-bit image) and far over it, in every format."""
    side = int(MAX_PIXELS ** 0.5) + 1
    bombs = {
        "png16_just_over.png": png_declaring(side, side, bit_depth=16),
        "png_100k.png": png_declaring(100_000, 100_000),
        "jpeg_just_over.jpg": jpeg_declaring(side, side),
        "jpeg_65k.jpg": jpeg_declaring(65_000, 65_000),
        "tiff_just_over.tif": tiff_declaring(side, side),
        "dicom_just_over.dcm": dicom_bytes(Rows=side, Columns=side),
        "dicom_65k.dcm": dicom_bytes(Rows=65535, Columns=65535),
    }
    warm = {"warm.png": encode(".png", noise_image()), "warm.jpg": encode(".jpg", noise_image()),
            "warm.tif": tiff_declaring(4, 4), "warm.dcm": dicom_bytes()}
    paths = []
    for name, data in {**warm, **bombs}.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _BOMB_PROBE, *paths], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(bombs)
    for path, r in results.items():
        assert r["reason"] and "MAX_PIXELS" in r["reason"], (path, r)
        assert r["seconds"] < 1.0, (path, r)
        assert r["peak_growth_mb"] < 50, (path, r)  # just over the limit would be >= 200 MB decoded
