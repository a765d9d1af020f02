"""Checkpoints load without running pickled code; crafted or broken files get a clear error."""

from __future__ import annotations

import os
import pickle
import zipfile

import pytest
import torch

from calcidet.model.checkpoint import CheckpointError, load_checkpoint, model_state_dict


class _RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()  # the command never ran


def test_plain_pickle_with_code_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_RunsCode(str(marker))))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04broken zip"])
def test_broken_files_name_the_path(tmp_path, content: bytes) -> None:
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="broken.ckpt"):
        load_checkpoint(path)


def test_missing_file_and_non_checkpoint_dict(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.ckpt")
    path = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="no state_dict"):
        load_checkpoint(path)


def test_lightning_style_checkpoint_loads_and_prefers_ema(tmp_path) -> None:
    path = tmp_path / "ok.ckpt"
    state = {"model.w": torch.ones(2), "ema.module.w": torch.full((2,), 3.0), "ema.n_averaged": torch.tensor(5)}
    torch.save({"state_dict": state, "hyper_parameters": {"arch": "fcos_tiny"}}, path)
    ckpt = load_checkpoint(path)
    assert ckpt["hyper_parameters"]["arch"] == "fcos_tiny"
    assert torch.equal(model_state_dict(ckpt)["w"], torch.full((2,), 3.0))
    assert zipfile.is_zipfile(path)
