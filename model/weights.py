"""Pretrained weights for the torchvision detectors: enums, the TORCH_HOME cache, local files.

calcidet never downloads on its own (``allow_download=False``): clusters and hospital machines are
often offline, and a silent multi-hundred-MB download inside a training job is a surprise. Weights
are found, in order, as

1. a local file path (``weights="/data/weights/fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth"``);
2. a torchvision enum (``"DEFAULT"``, ``"COCO_V1"`` or ``"FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1"``)
   whose file already lies in torch's hub cache, ``$TORCH_HOME/hub/checkpoints/`` (``~/.cache/torch``
   when TORCH_HOME is unset);

and otherwise a ``WeightsUnavailableError`` says which file is needed and how to pre-fetch it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import torch
from torchvision.models import WeightsEnum


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but are not on this machine."""


def resolve_weights(spec: str | WeightsEnum | None, enum_cls: type[WeightsEnum]) -> WeightsEnum | Path | None:
    """Turn a config value into a weights enum member, a local file, or None.

    Args:
        spec: None, an enum member, its name (``"DEFAULT"``, ``"COCO_V1"``, optionally prefixed by the
            enum class name), or a path to a ``.pth``/``.pt`` file.
        enum_cls: the torchvision weights enum of the architecture (e.g. ``ResNet50_Weights``).
    """
    if spec is None or isinstance(spec, WeightsEnum):
        return spec
    text = str(spec)
    if text.lower() in ("", "none", "null"):
        return None
    name = text.split(".", 1)[1] if text.startswith(enum_cls.__name__ + ".") else text
    if name == "DEFAULT" or name in enum_cls.__members__:
        return enum_cls[name] if name != "DEFAULT" else enum_cls.DEFAULT  # type: ignore[attr-defined]
    path = Path(text).expanduser()
    if path.suffix in (".pth", ".pt", ".bin") or os.sep in text:
        if not path.is_file():
            raise WeightsUnavailableError(f"weights file not found: {path}")
        return path
    raise ValueError(
        f"unknown weights {text!r} for {enum_cls.__name__}: use one of "
        f"{['DEFAULT', *enum_cls.__members__]} or a path to a .pth file"
    )


def cached_weights_path(weights: WeightsEnum) -> Path:
    """Where torch's hub cache keeps the file of ``weights`` (it may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def ensure_available(weights: WeightsEnum, allow_download: bool) -> None:
    """Raise a WeightsUnavailableError naming the file if it is not cached and may not be fetched."""
    path = cached_weights_path(weights)
    if path.is_file() or allow_download:
        return
    enum_name = f"{type(weights).__name__}.{weights.name}"
    raise WeightsUnavailableError(
        f"pretrained weights {enum_name} are not on this machine and downloads are off.\n"
        f"  needed file: {path}\n"
        f"  pre-fetch it on a machine with network:\n"
        f"    python -c \"from torchvision.models import get_weight; "
        f"get_weight('{enum_name}').get_state_dict(progress=True)\"\n"
        f"  then copy ~/.cache/torch/hub/checkpoints/{path.name} to {path.parent}/ here "
        f"(or set TORCH_HOME), or pass the file's path as the weights,\n"
        f"  or allow the download (allow_download=true), or train without (weights=null)."
    )


@contextlib.contextmanager
def weights_file_as_cache(path: Path, weights: WeightsEnum) -> Iterator[None]:
    """Let torchvision's builders load a local file as if it were ``weights``' cached download.

    torchvision loads enum weights only through the hub cache; pointing a temporary hub directory at
    the user's file keeps the builders' own logic (frozen BatchNorm, trainable layers) unchanged.
    """
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="calcidet-weights-") as tmp:
        link = Path(tmp) / "checkpoints" / cached_weights_path(weights).name
        link.parent.mkdir(parents=True)
        link.symlink_to(path.resolve())
        torch.hub.set_dir(tmp)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)
