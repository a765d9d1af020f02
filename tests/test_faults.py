"""Training faults: a killed run resumes to the same result; SIGTERM saves; non-finite loss stops."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from calcidet.model.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


# Not conftest's tiny_checkpoint: these tests kill, signal and resume training itself, so each one
# trains in a subprocess of its own (192 px, no augmentation, so that resumed runs can be compared).
@pytest.fixture
def fit_cmd(tiny_synth, fit_args) -> Callable[..., list[str]]:
    """``fit_cmd(root, *extra)``: ``calcidet fit`` in a fresh interpreter, 4 epochs of 192 px films, no augmentation."""
    splits = {"train": tiny_synth["train"], "val": tiny_synth["val"]}

    def command(root: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "calcidet.train.cli", "fit",
                *fit_args(splits, root, "--data.image_size", "192", "--data.augment", "none",
                          "--trainer.max_epochs", "4", "--checkpoint.save_top_k", "0", *extra)]

    return command


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "training ended before the checkpoint appeared"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_sigkill_then_resume_matches_uninterrupted_run(fit_cmd, tmp_path) -> None:
    straight = subprocess.run(fit_cmd(tmp_path / "a"), cwd=REPO, capture_output=True, text=True,
                              timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]

    # last.ckpt after every step: the kill lands mid-epoch, so resuming must also restore the
    # position inside the epoch, not only the weights and counters.
    proc = subprocess.Popen(fit_cmd(tmp_path / "b", "--last_checkpoint.every_n_train_steps", "1"),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "b" / "ckpt" / "last.ckpt"
    _wait_for(last, proc)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up, as when a node dies
    assert proc.wait(timeout=60) == -signal.SIGKILL
    killed_at = load_checkpoint(last)["global_step"]
    assert 0 < killed_at < 16  # really part-way (4 epochs x 4 steps)

    resumed = subprocess.run(fit_cmd(tmp_path / "b", "--last_checkpoint.every_n_train_steps", "1",
                                      "--ckpt_path", "last"), cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_checkpoint(tmp_path / "a" / "ckpt" / "last.ckpt")
    b = load_checkpoint(last)
    assert a["global_step"] == b["global_step"] == 16
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-4), key
    # The validation results the checkpoints carry agree too.
    assert a["calcidet"]["operating_threshold"] == pytest.approx(b["calcidet"]["operating_threshold"], abs=1e-3)


def test_sigterm_saves_last_checkpoint_and_exits_cleanly(fit_cmd, tmp_path) -> None:
    proc = subprocess.Popen(fit_cmd(tmp_path, "--trainer.max_epochs", "200"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(tmp_path / "ckpt" / "last.ckpt", proc)  # training is under way
    first = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")["global_step"]
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-2000:]
    assert "SIGTERM received" in out
    saved = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")["global_step"]
    assert saved > first  # written at the signal, not the older epoch-end checkpoint


def test_non_finite_loss_names_step_and_images() -> None:
    from calcidet.model.module import CalcinosisDetector

    module = CalcinosisDetector(image_size=64)
    images = [torch.rand(1, 64, 64), torch.rand(1, 64, 64)]
    bad = torch.tensor([[10.0, 10.0, float("nan"), 30.0]])
    targets = [{"boxes": bad, "labels": torch.tensor([1]), "image_id": 17},
               {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64), "image_id": 18}]
    with pytest.raises(FloatingPointError, match=r"step 0.*image ids \[17, 18\]"):
        module.training_step((images, targets), 0)
