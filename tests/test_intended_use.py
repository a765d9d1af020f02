"""run.json states the intended use and what the checkpoint was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from calcidet.model.intended_use import STATEMENT, describe_coco
from calcidet.train.detect_cmd import main as detect_main
from tests.bad_inputs import write_blurred_film


def _coco(path: Path, info: dict) -> Path:
    path.write_text(json.dumps({"info": info, "images": [], "annotations": [], "categories": []}))
    return path


def test_run_json_states_intended_use_and_training_films(untrained_checkpoint, tmp_path) -> None:
    procedural = _coco(tmp_path / "synth.json", {"generator": "calcidet.data.synth", "backgrounds": False})
    inserted = _coco(tmp_path / "real.json", {"generator": "calcidet.data.synth", "backgrounds": True})
    ckpt = untrained_checkpoint
    state = torch.load(ckpt)
    state["datamodule_hyper_parameters"] = {"train_json": [str(procedural), str(inserted)],
                                            "val_json": str(tmp_path / "gone.json")}
    torch.save(state, ckpt)
    images = tmp_path / "images"
    images.mkdir()
    write_blurred_film(images / "a.png", (300, 200), 0)
    out = tmp_path / "out"
    assert detect_main([str(images), "--checkpoint", str(ckpt), "--output", str(out), "--num-workers", "0"]) == 0
    use = json.loads((out / "run.json").read_text())["intended_use"]
    assert use["statement"] == STATEMENT and "not a medical device" in use["statement"]
    assert "FracAtlas" in use["shipped_configs"]
    films = {(d["split"], Path(d["file"]).name): d["films"] for d in use["trained_on"]}
    assert films[("train", "synth.json")] == "procedural synthetic films (calcidet synth)"
    assert films[("train", "real.json")].startswith("real films with synthetic masses inserted")
    assert films[("val", "gone.json")].startswith("unknown")


def test_checkpoint_without_data_record_says_unknown(untrained_checkpoint, tmp_path) -> None:
    out = tmp_path / "out"
    images = tmp_path / "images"
    images.mkdir()
    write_blurred_film(images / "a.png", (200, 200), 1)
    assert detect_main([str(images), "--checkpoint", str(untrained_checkpoint), "--output", str(out),
                        "--num-workers", "0"]) == 0
    use = json.loads((out / "run.json").read_text())["intended_use"]
    assert use["trained_on"].startswith("unknown")
    assert describe_coco(_coco(tmp_path / "labelled.json", {"description": "our hospital"})).startswith("annotated")
