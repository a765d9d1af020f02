"""``calcidet detect`` end to end on a tiny trained checkpoint: outputs, broken files, naming, resuming."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calcidet.train.detect_cmd import main as detect_main
from calcidet.train.detect_journal import read_journal
from calcidet.train.detect_writer import DETECTION_COLUMNS, IMAGE_COLUMNS
from calcidet.train.output_files import safe_output_path

REPO = Path(__file__).resolve().parents[1]


def _synth_images(tiny_synth: dict[str, Path]) -> list[Path]:
    return sorted(p for p in (tiny_synth["test"].parent / "images").iterdir() if p.is_file())


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _nested_folder(tiny_synth: dict[str, Path], root: Path) -> dict[str, str]:
    """Synthetic films in nested folders (mixed formats) plus broken files; returns name -> kind."""
    kinds = {}
    for i, src in enumerate(_synth_images(tiny_synth)):
        name = f"{'p1' if i % 2 else 'p2/knee'}/{src.name}"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / name)
        kinds[name] = "ok"
    dicom = next((n for n in kinds if n.endswith(".dcm")), None)
    if dicom:  # PACS exports often have no extension
        shutil.copy(root / dicom, root / "p1" / "IM000123")
        kinds["p1/IM000123"] = "ok"
    png = next(n for n in kinds if n.endswith(".png"))
    (root / "broken").mkdir()
    (root / "broken" / "empty.png").write_bytes(b"")
    (root / "broken" / "truncated.png").write_bytes((root / png).read_bytes()[:400])
    (root / "broken" / "notes.png").write_text("not an image at all\n")
    kinds.update({"broken/empty.png": "error", "broken/truncated.png": "error", "broken/notes.png": "error"})
    return kinds


@pytest.mark.slow
def test_detect_writes_all_files_and_records_broken_ones(tiny_synth, tiny_checkpoint, tmp_path) -> None:
    kinds = _nested_folder(tiny_synth, tmp_path / "in")
    out = tmp_path / "out"
    assert detect_main([str(tmp_path / "in"), "--checkpoint", str(tiny_checkpoint), "--output", str(out),
                        "--threshold", "0.01", "--num-workers", "1", "--overlays"]) == 0
    for name in ("detections.csv", "images.csv", "detections.json", "detections_coco.json", "run.json"):
        assert (out / name).is_file(), name

    columns, images = _read_csv(out / "images.csv")
    assert columns == IMAGE_COLUMNS
    assert [r["image"] for r in images] == sorted(kinds)  # one row per file, sorted, no duplicates
    for row in images:
        assert row["status"] == kinds[row["image"]], row
        assert bool(row["reason"]) == (row["status"] == "error"), row
        overlay = safe_output_path(out / "overlays", row["image"], ".png")
        assert overlay.is_file() == (row["status"] == "ok")
    sizes = {r["image"]: (float(r["width"]), float(r["height"])) for r in images if r["status"] == "ok"}

    columns, dets = _read_csv(out / "detections.csv")
    assert columns[:7] == ["image", "x_min", "y_min", "x_max", "y_max", "confidence", "label"]
    assert columns == DETECTION_COLUMNS
    assert dets, "the tiny model should find something at threshold 0.01"
    for d in dets:
        w, h = sizes[d["image"]]  # only readable images have boxes
        x1, y1, x2, y2 = (float(d[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h, d
        assert float(d["confidence"]) >= 0.01 and d["label"] == "calcinosis"
        assert d["above_threshold"] == "true"  # --threshold 0.01 also sets the score floor
    per_image = {r["image"]: int(r["num_detections"]) for r in images}
    assert sum(per_image.values()) == len(dets)

    # Without --gt an image's id is 1 + its place among all names, failed ones included.
    coco = json.loads((out / "detections_coco.json").read_text())
    ids = {name: i + 1 for i, name in enumerate(sorted(kinds))}
    assert {im["file_name"]: im["id"] for im in coco["images"]} == {n: ids[n] for n in kinds if kinds[n] == "ok"}
    assert len(coco["annotations"]) == len(dets)
    results = json.loads((out / "detections.json").read_text())
    assert isinstance(results, list) and len(results) == len(dets)
    assert set(results[0]) == {"image_id", "category_id", "bbox", "score", "above_threshold"}
    assert {r["image_id"] for r in results} == {ids[d["image"]] for d in dets}
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["error"] == 3 and run["counts"]["ok"] == len(kinds) - 3
    assert run["threshold"] == 0.01 and run["threshold_source"] == "--threshold" and run["score_floor"] == 0.01
    assert len(run["checkpoint"]["sha256"]) == 64 and run["versions"]["torch"]


@pytest.mark.slow
def test_rerun_with_other_settings_is_refused(tiny_synth, tiny_checkpoint, tmp_path, capsys) -> None:
    shutil.copy(_synth_images(tiny_synth)[0], tmp_path / _synth_images(tiny_synth)[0].name)
    args = [str(tmp_path), "--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path / "out"), "--num-workers", "0"]
    assert detect_main([*args, "--threshold", "0.2"]) == 0
    assert detect_main([*args, "--threshold", "0.3"]) == 2
    assert "threshold: before 0.2, now 0.3" in capsys.readouterr().err
    assert detect_main([*args, "--threshold", "0.3", "--overwrite"]) == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["threshold"] == 0.3


def _detect_args(images: Path, checkpoint: Path, out: Path) -> list[str]:
    return [str(images), "--checkpoint", str(checkpoint), "--output", str(out), "--threshold", "0.01",
            "--batch-size", "2", "--num-workers", "0"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_files(tiny_synth, tiny_checkpoint, tmp_path) -> None:
    images = tmp_path / "in"
    for copy in range(4):  # 32 files, 16 batches
        for src in _synth_images(tiny_synth):
            (images / f"set{copy}").mkdir(parents=True, exist_ok=True)
            shutil.copy(src, images / f"set{copy}" / src.name)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "calcidet.train.cli", "detect", *_detect_args(images, tiny_checkpoint, killed)]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = killed / ".journal" / "rank0.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_file() and journal.read_bytes().count(b"\n") >= 4:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "detect finished before it could be killed"
    assert not (killed / "detections.csv").exists()
    done_before = len(read_journal(killed / ".journal"))
    assert 0 < done_before < 32

    assert detect_main(_detect_args(images, tiny_checkpoint, killed)) == 0  # rerun: resumes
    straight = tmp_path / "straight"
    assert detect_main(_detect_args(images, tiny_checkpoint, straight)) == 0

    run = json.loads((killed / "run.json").read_text())
    assert run["counts"]["reused_from_journal"] >= done_before - 1  # a torn batch is redone
    for name in ("detections.csv", "images.csv", "detections.json", "detections_coco.json"):
        assert (killed / name).read_text() == (straight / name).read_text(), name
    _, rows = _read_csv(killed / "images.csv")
    assert len(rows) == len({r["image"] for r in rows}) == 32


@pytest.mark.parametrize("name, expected", [
    ("a/b.png", "a/b.png.png"), ("../../etc/passwd", "etc/passwd.png"), ("/abs/x.dcm", "abs/x.dcm.png"),
    ("a/../../b", "a/b.png"), ("C:/x.png", "C_/x.png.png"), ("..", "_.png"),
])
def test_output_paths_stay_inside(tmp_path, name: str, expected: str) -> None:
    path = safe_output_path(tmp_path, name, ".png")
    assert path == tmp_path / expected and path.resolve().is_relative_to(tmp_path.resolve())


def test_torn_journal_line_is_ignored(tmp_path) -> None:
    lines = [json.dumps({"image": n, "status": "ok"}) for n in ("a.png", "b.png")]
    (tmp_path / "rank0.jsonl").write_text("\n".join(lines) + '\n{"image": "c.pn')
    (tmp_path / "rank1.jsonl").write_text(json.dumps({"image": "a.png", "status": "error"}) + "\n")
    records = read_journal(tmp_path)
    assert sorted(records) == ["a.png", "b.png"] and records["a.png"]["status"] == "error"


def test_help_documents_the_threshold_default(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        detect_main(["--help"])
    assert exc.value.code == 0
    assert "operating point stored in the checkpoint" in " ".join(capsys.readouterr().out.split())


def test_overlay_draws_every_box_at_its_place_on_the_downscaled_preview(tmp_path) -> None:
    import cv2
    import numpy as np

    from calcidet.train.detect_overlay import write_overlay

    # A 2000 x 1000 film shown at 1000 x 500: each box must shrink by 2, not only the first drawn.
    boxes = [[100.0, 100.0, 300.0, 300.0], [1200.0, 500.0, 1600.0, 900.0], [1700.0, 40.0, 1900.0, 240.0]]
    record = {"width": 2000, "height": 1000, "boxes": boxes, "scores": [0.9, 0.5, 0.3]}
    path = tmp_path / "o.png"
    write_overlay(path, np.zeros((500, 1000), np.uint8), record)
    drawn = cv2.imread(str(path))
    assert drawn.shape == (500, 1000, 3)
    for x1, y1, x2, y2 in boxes:  # the box's right and bottom edges (the label sits at the top left)
        xr, yb, xm, ym = round(x2 / 2), round(y2 / 2), round((x1 + x2) / 4), round((y1 + y2) / 4)
        assert drawn[ym, xr - 1 : xr + 2].max() > 100, (x1, y1, x2, y2)
        assert drawn[yb - 1 : yb + 2, xm].max() > 100, (x1, y1, x2, y2)
        assert drawn[ym, xm].max() == 0  # inside stays the film


@pytest.mark.slow
def test_two_processes_write_one_merged_result(tiny_synth, tiny_checkpoint, tmp_path) -> None:
    """``--devices 2`` on the CPU: two ranks, a journal each, merged into the files one process writes."""
    kinds = _nested_folder(tiny_synth, tmp_path / "in")
    runs = {}
    for devices in ("1", "2"):
        out = tmp_path / f"out{devices}"
        cmd = [sys.executable, "-m", "calcidet.train.cli", "detect", str(tmp_path / "in"), "--checkpoint", str(tiny_checkpoint),
               "--output", str(out), "--threshold", "0.01", "--num-workers", "0", "--devices", devices]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[devices] = (_read_csv(out / "images.csv")[1], _read_csv(out / "detections.csv")[1])
        ranks = sorted(p.name for p in (out / ".journal").glob("rank*.jsonl"))
        assert ranks == [f"rank{r}.jsonl" for r in range(int(devices))]
    (images1, dets1), (images2, dets2) = runs["1"], runs["2"]
    assert images1 == images2 and [r["image"] for r in images2] == sorted(kinds)
    assert len(dets1) == len(dets2) > 0
    # Match box for box, not by rank: other thread counts round differently in the last digit, so two
    # boxes of near-equal confidence can swap places between the runs.
    fields = ("x_min", "y_min", "x_max", "y_max", "confidence")
    unmatched = list(dets2)
    for a in dets1:
        same = [b for b in unmatched if b["image"] == a["image"] and b["label"] == a["label"]
                and all(abs(float(a[k]) - float(b[k])) <= 0.02 for k in fields)]
        assert same, f"no counterpart in the two-process run for {a}"
        unmatched.remove(same[0])
