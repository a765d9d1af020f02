"""The README's "Your own films" recipe, run on real CR films on the CPU.

    .venv/bin/python -m pytest tests/test_own_films.py -q

The README section "## Your own films" mirrors this test: RECIPE below holds its commands word for
word, a test checks that the README still shows each of them, and the recipe test runs them in a
folder laid out as the README's placeholders (``dicoms/``, ``export/``, ``to_label/``, ``split/``, ...).
Only two things differ from a user's run: the labelling tool's export is written by hand (one box on
the ankle film, in soft tissue beside the distal tibia; none on the chest film), and training and
testing add a CPU overlay (``fcos_tiny`` from scratch at 128 px, 2 steps) to ``configs/gpu.yaml``.
It checks that the path works, not that the model learns.

Films: pydicom-data's two uncompressed CR films, ``RG3_UNCR.dcm`` (an ankle, 1760x1760) and
``RG1_UNCR.dcm`` (a chest, out of calcidet's scope), each copied under patients P1, P2 and P3 so
that a patient split has a patient for train, val and test.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pydicom
import pytest

from calcidet.data.coco import load_coco
from calcidet.train.cli import cli_main
from calcidet.train.cli import main as calcidet

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
CKPT = "runs/gpu/checkpoints/last.ckpt"
RECIPE = {  # step -> the command as the README shows it (run from the folder holding configs/)
    "export": "calcidet export-images dicoms/ --output to_label/",
    "convert": "calcidet convert --from yolo export/ --images to_label/ --output to_label/labelled.json",
    "split": "calcidet split to_label/labelled.json --out split/ --fractions 0.7 0.15 0.15 --seed 0",
    "fit": "calcidet fit --config configs/gpu.yaml --data.train_json split/train.json --data.val_json split/val.json",
    "test": f"calcidet test --config configs/gpu.yaml --data.test_json split/test.json --ckpt_path {CKPT}",
    "detect_png": f"calcidet detect to_label/ --checkpoint {CKPT} --output results/ --gt split/test.json",
    "detect_dicom": f"calcidet detect dicoms/ --checkpoint {CKPT} --output results_dicom/",
    "evaluate": "calcidet evaluate --gt split/test.json --pred results/detections.csv --out report/",
}
# What a CPU can run of configs/gpu.yaml: fp32, the small from-scratch model at 128 px, 2 steps.
CPU_OVERLAY = """\
trainer: {accelerator: cpu, precision: 32-true, benchmark: false, max_steps: 2, num_sanity_val_steps: 0,
          enable_progress_bar: false}
model: {arch: fcos_tiny, weights: null, optimizer: adamw, lr: 0.003, warmup_steps: 1}
data: {image_size: 128, batch_size: 2, num_workers: 0}
"""
FILMS = {"ankle.dcm": "RG3_UNCR.dcm", "chest.dcm": "RG1_UNCR.dcm"}
PATIENTS = ("P1", "P2", "P3")
# The hand-drawn box on the ankle film, x, y, width, height in its pixels: soft tissue medial to the
# distal tibia, just above the ankle joint (where a periarticular mass would sit).
ANKLE_BOX = (512, 1280, 128, 160)


def readme_commands() -> list[str]:
    """The commands of the README's "Your own films" section, one per line, comments dropped."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Your own films\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [" ".join(line.split("#", 1)[0].split()) for line in lines if line.split("#", 1)[0].strip()]


def test_readme_shows_the_commands_this_test_runs() -> None:
    shown = readme_commands()
    missing = [cmd for cmd in RECIPE.values() if cmd not in shown]
    assert not missing, f"README 'Your own films' no longer shows: {missing}"
    # The SLURM line of the recipe passes the split files through train.sbatch's "$@" to calcidet fit.
    assert any(c.startswith("sbatch ") and "--data.train_json split/train.json" in c for c in shown)
    assert '"$@"' in (REPO / "configs" / "slurm" / "train.sbatch").read_text()


def run(step: str) -> None:
    assert calcidet(shlex.split(RECIPE[step])[1:]) == 0, step


def write_dicoms(folder: Path) -> None:
    """Each film under each patient id (the PatientID tag is what export-images records)."""
    from pydicom.data import get_testdata_file

    for name, source in FILMS.items():
        path = get_testdata_file(source)
        if path is None:
            pytest.skip(f"pydicom-data's {source} is not installed (pip install pydicom-data)")
        for patient in PATIENTS:
            ds = pydicom.dcmread(path)
            ds.PatientID = patient
            (folder / patient).mkdir(parents=True, exist_ok=True)
            ds.save_as(folder / patient / name)


def write_yolo_export(folder: Path, size: int = 1760) -> None:
    """What a labelling tool's YOLO export holds: classes.txt and labels/<image>.txt (none: no box)."""
    x, y, w, h = ANKLE_BOX
    (folder / "labels").mkdir(parents=True)
    (folder / "classes.txt").write_text("calcinosis\n")
    for patient in PATIENTS:
        (folder / "labels" / patient).mkdir()
        (folder / "labels" / patient / "ankle.txt").write_text(
            f"0 {(x + w / 2) / size} {(y + h / 2) / size} {w / size} {h / size}\n")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_recipe_from_dicom_folder_to_metrics(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    write_dicoms(tmp_path / "dicoms")
    films = sorted(f"{p}/{name}" for p in PATIENTS for name in FILMS)

    run("export")  # full-size PNGs and a COCO skeleton with the patient of each film
    skeleton = json.loads((tmp_path / "to_label" / "annotations.json").read_text())
    pngs = sorted(im["file_name"] for im in skeleton["images"])
    assert pngs == sorted(f.replace(".dcm", ".png") for f in films)
    assert {im["file_name"]: (im["width"], im["height"], im["patient_id"]) for im in skeleton["images"]}[
        "P2/ankle.png"] == (1760, 1760, "P2")

    write_yolo_export(tmp_path / "export")  # stands in for drawing boxes in CVAT / Label Studio
    run("convert")
    labelled = load_coco(tmp_path / "to_label" / "labelled.json")
    boxes = {im.file_name: im.boxes.tolist() for im in labelled.images}
    x, y, w, h = ANKLE_BOX
    assert boxes["P1/ankle.png"][0] == pytest.approx([x, y, x + w, y + h], abs=0.01)
    assert boxes["P1/chest.png"] == []
    assert {im.patient_id for im in labelled.images} == set(PATIENTS)  # carried over from the skeleton

    run("split")
    splits = {s: load_coco(tmp_path / "split" / f"{s}.json") for s in ("train", "val", "test")}  # files resolve
    patients = {s: {im.patient_id for im in ix.images} for s, ix in splits.items()}
    assert sorted(p for ps in patients.values() for p in ps) == sorted(PATIENTS)  # one patient, one split
    assert sorted(im.path.name for ix in splits.values() for im in ix.images) == sorted(
        Path(p).name for p in pngs)
    assert all(sum(len(im.boxes) for im in ix.images) == 1 for ix in splits.values())

    overlay = tmp_path / "cpu.yaml"
    overlay.write_text(CPU_OVERLAY)
    # cli_main is what `calcidet fit|test` runs; called directly, it hands back the trainer to check
    fitted = cli_main([*shlex.split(RECIPE["fit"])[1:], "--config", str(overlay)])
    assert fitted.trainer.global_step == 2
    assert (tmp_path / CKPT).is_file()
    tested = cli_main([*shlex.split(RECIPE["test"])[1:], "--config", str(overlay)])
    assert "test/map_50" in tested.trainer.callback_metrics

    run("detect_png")
    run("detect_dicom")
    for folder, suffix in (("results", ".png"), ("results_dicom", ".dcm")):
        images = {row["image"]: row for row in read_csv(tmp_path / folder / "images.csv")}
        assert sorted(images) == sorted(f.replace(".dcm", suffix) for f in films)  # a row per film
        assert all(row["status"] == "ok" for row in images.values())
        for row in read_csv(tmp_path / folder / "detections.csv"):  # boxes in the film's own pixels
            size = images[row["image"]]
            assert 0 <= float(row["x_min"]) < float(row["x_max"]) <= float(size["width"])
            assert 0 <= float(row["y_min"]) < float(row["y_max"]) <= float(size["height"])
        assert json.loads((tmp_path / folder / "run.json").read_text())
    # --gt: detections.json speaks the test file's ids, so COCO tools load it against that file
    test_ids = {im["id"] for im in json.loads((tmp_path / "split" / "test.json").read_text())["images"]}
    assert {r["image_id"] for r in json.loads((tmp_path / "results" / "detections.json").read_text())} <= test_ids
    scopes = {row["image"]: row["scope"] for row in read_csv(tmp_path / "results_dicom" / "images.csv")}
    assert scopes["P1/chest.dcm"] == "out_of_scope" and scopes["P1/ankle.dcm"] != "out_of_scope"
    assert not [r for r in read_csv(tmp_path / "results_dicom" / "detections.csv") if "chest" in r["image"]]

    run("evaluate")
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert {"map", "map_50", "froc_cpm", "auroc", "froc_sens@1fp"} <= set(report["metrics"])
    counts = report["counts"]
    assert (counts["gt_images"], counts["evaluated_images"], counts["lesions"]) == (2, 2, 1)
    assert counts["unmatched_predictions"] == 4  # the train and val films detect also ran on
    assert (tmp_path / "report" / "froc.png").is_file()
