"""Shared fixtures: a tiny synthetic COCO dataset, generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_RADIOGRAPHS = REPO.parent / "shared" / "radiographs"


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> dict[str, Path]:
    """Train (16 films), val (8) and test (8) splits of small synthetic radiographs."""
    from data.synth import synthesize

    root = tmp_path_factory.mktemp("synth")
    out = {}
    for split, n, seed in (("train", 16, 11), ("val", 8, 12), ("test", 8, 13)):
        synthesize(root / split, n=n, seed=seed, size_range=(256, 320), workers=1)
        out[split] = root / split / "annotations.json"
    return out
