"""What calcidet is for, and what a checkpoint learnt from: written into every ``run.json``.

    >>> intended_use(CalcinosisPredictor.from_checkpoint(CKPT).checkpoint)["statement"]
    'research software, not a medical device; not for clinical decisions'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATEMENT = "research software, not a medical device; not for clinical decisions"
SHIPPED_CONFIGS = ("the shipped configs (configs/demo.yaml) train on procedural synthetic films and on real "
                   "FracAtlas films (data/films) with synthetic masses inserted; no film with real calcinosis "
                   "has been used to train or test them")


def describe_coco(path: str | Path) -> str:
    """What kind of films a training COCO file holds, from its ``info`` (``calcidet synth`` fills it)."""
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8")).get("info") or {}
    except (OSError, ValueError, AttributeError):
        return "unknown (the file is not readable here)"
    if info.get("generator") == "calcidet.data.synth":
        return ("real films with synthetic masses inserted (calcidet synth --backgrounds)" if info.get("backgrounds")
                else "procedural synthetic films (calcidet synth)")
    return "annotated films (not made by calcidet synth)"


def training_data(checkpoint: dict[str, Any]) -> list[dict[str, str]] | None:
    """The COCO files a Lightning checkpoint was trained and validated on, each described; None: not recorded."""
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    found = []
    for split in ("train_json", "val_json"):
        files = data.get(split) or []
        for f in [files] if isinstance(files, str) else files:
            found.append({"split": split.removesuffix("_json"), "file": str(f), "films": describe_coco(f)})
    return found or None


def intended_use(checkpoint_info: dict[str, Any]) -> dict[str, Any]:
    """The ``intended_use`` entry of ``run.json`` for a predictor's ``checkpoint`` metadata."""
    return {"statement": STATEMENT,
            "trained_on": checkpoint_info.get("training_data") or "unknown: the checkpoint names no training files",
            "shipped_configs": SHIPPED_CONFIGS}
