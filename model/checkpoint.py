"""Loading calcidet checkpoints without executing pickled code.

A checkpoint is a pickle; an untrusted one could run arbitrary code on ``torch.load``. calcidet
loads with ``weights_only=True`` (tensors, containers and primitives only: all that a Lightning
checkpoint of ours holds). Anything else is refused with a clear error.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely or is not a calcidet checkpoint."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``: tensors, numbers, strings and containers only.

    Raises:
        CheckpointError: missing file, not a checkpoint, or a pickle that asks for code outside the
            allow-list (e.g. a crafted file that would run a command).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: the file asks to run or build objects outside calcidet's allow-list "
            f"(tensors, numbers, strings, containers). Only load checkpoints you trust. Detail: {exc}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a calcidet/Lightning checkpoint (no state_dict)")
    return ckpt


def model_state_dict(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The detector's weights (``RadiographDetector`` keys): the EMA copy when the run kept one."""
    state = ckpt["state_dict"]
    ema = {k[len("ema.module."):]: v for k, v in state.items() if k.startswith("ema.module.")}
    if ema:
        return ema
    return {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
