"""Shared fixtures: tiny synthetic films, the arguments that train on them, a checkpoint trained once,
and untrained checkpoints for tests of the detect pipeline.

Test modules share helpers through these fixtures (and the plain helper module ``tests/bad_inputs.py``),
never by importing one another.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_RADIOGRAPHS = REPO.parent / "shared" / "radiographs"


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> dict[str, Path]:
    """Train (16 films), val (8) and test (8) splits of small synthetic radiographs."""
    from calcidet.data.synth import synthesize

    root = tmp_path_factory.mktemp("synth")
    out = {}
    for split, n, seed in (("train", 16, 11), ("val", 8, 12), ("test", 8, 13)):
        synthesize(root / split, n=n, seed=seed, size_range=(256, 320), workers=1)
        out[split] = root / split / "annotations.json"
    return out


def _fit_args(splits: dict[str, Path], root: Path, *extra: str) -> list[str]:
    """``calcidet fit`` (or ``test``) arguments without the subcommand: configs/demo.yaml shrunk by
    tests/demo_small.yaml (128 px whole films), batches of 4 read in the main process, no logger or
    progress bar, everything written under ``root`` (checkpoints in ``root/ckpt``).

    Args:
        splits: COCO file per split, e.g. ``{"train": ..., "val": ...}``; each becomes ``--data.<split>_json``.
        root: the run folder.
        extra: further arguments, after the shared ones (so they win).
    """
    data = [arg for split, path in splits.items() for arg in (f"--data.{split}_json", str(path))]
    return [
        "--config", str(REPO / "configs" / "demo.yaml"),
        "--config", str(REPO / "tests" / "demo_small.yaml"),
        *data,
        "--data.batch_size", "4", "--data.num_workers", "0",
        "--trainer.default_root_dir", str(root), "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
        "--checkpoint.dirpath", str(root / "ckpt"),
        *extra,
    ]


@pytest.fixture(scope="session")
def fit_args() -> Callable[..., list[str]]:
    """``fit_args(splits, root, *extra)``: the shared training arguments (see ``_fit_args``)."""
    return _fit_args


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_synth, tmp_path_factory) -> Path:
    """``last.ckpt`` of one epoch on ``tiny_synth`` at 128 px through the real CLI, trained once per session."""
    from calcidet.train.cli import cli_main

    root = tmp_path_factory.mktemp("tiny_detector")
    splits = {"train": tiny_synth["train"], "val": tiny_synth["val"]}
    cli_main(["fit", *_fit_args(splits, root, "--trainer.max_epochs", "1")])
    return root / "ckpt" / "last.ckpt"


@pytest.fixture(scope="session")
def small_untrained_checkpoint(tmp_path_factory) -> Path:
    """A 64 px ``fcos_tiny`` with random weights and no stored threshold, written once per session.

    Its scores sit around 0.071-0.079 (torchvision's prior), so detect tests can split its boxes with a
    threshold; tests that only read it share one file.
    """
    from tests.bad_inputs import write_untrained_checkpoint

    return write_untrained_checkpoint(tmp_path_factory.mktemp("small_untrained") / "untrained.ckpt")


@pytest.fixture
def untrained_checkpoint(tmp_path) -> Path:
    """``tmp_path/c.ckpt``: an untrained 128 px ``fcos_tiny`` that boxes every blob, operating threshold 0."""
    from tests.bad_inputs import write_untrained_checkpoint

    return write_untrained_checkpoint(tmp_path / "c.ckpt", image_size=128, threshold=0.0, even_scores=True)
