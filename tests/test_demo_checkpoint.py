"""The trained demo checkpoint on real films nobody labelled: the CR DICOMs that pydicom-data ships.

A chest film is not what calcidet reads (out of scope, no boxes); a normal ankle film must get no box
at the stored operating threshold. These need a trained model, so they run where ``make demo`` has
left its checkpoint (or ``CALCIDET_CHECKPOINT`` names one) and skip elsewhere, e.g. in CI.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest

from calcidet.train.detect_cmd import main as detect_main

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = Path(os.environ.get("CALCIDET_CHECKPOINT", REPO / "demo_out" / "runs" / "checkpoints" / "last.ckpt"))

pytestmark = pytest.mark.skipif(not CHECKPOINT.is_file(), reason=f"no trained checkpoint at {CHECKPOINT}")


def _detect_pydicom_films(tmp_path: Path, *extra: str) -> dict[str, dict[str, str]]:
    data = pytest.importorskip("pydicom.data")
    films = tmp_path / "films"
    films.mkdir()
    for name in ("RG1_UNCR.dcm", "RG3_UNCR.dcm"):  # chest PA; ankle (BodyPartExamined=EXTREMITY)
        try:
            shutil.copy(data.get_testdata_file(name), films / name)
        except (TypeError, OSError, ValueError):
            pytest.skip(f"pydicom-data does not hold {name}")
    out = tmp_path / "out"
    assert detect_main([str(films), "--checkpoint", str(CHECKPOINT), "--output", str(out), *extra]) == 0
    with open(out / "images.csv", newline="") as f:
        return {row["image"]: row for row in csv.DictReader(f)}


def test_chest_film_is_out_of_scope_and_the_ankle_film_has_no_box(tmp_path: Path) -> None:
    rows = _detect_pydicom_films(tmp_path)
    chest, ankle = rows["RG1_UNCR.dcm"], rows["RG3_UNCR.dcm"]
    assert chest["scope"] == "out_of_scope" and "CHEST" in chest["scope_reason"]
    assert int(chest["num_detections"]) == 0
    assert ankle["status"] == "ok" and ankle["scope"] != "out_of_scope"
    assert int(ankle["num_detections"]) == 0, f"a normal ankle film got boxes: {ankle}"
