"""The data contract every part of calcidet speaks, written down once and enforced here.

An image is a float32 array or tensor in 0..1, single channel (H x W, or 1 x H x W as a tensor).
A target is a dict, as torchvision's detection models expect it:

- ``boxes``: ``FloatTensor[N, 4]`` as ``[x1, y1, x2, y2]`` in pixels of the image it belongs to
  (x to the right, y down, ``0 <= x1 < x2 <= W``, ``0 <= y1 < y2 <= H``);
- ``labels``: ``Int64Tensor[N]``, 1..K (0 is the background, never a label);
- ``image_id``: ``int``, the COCO image id.

An image without findings has ``boxes = torch.zeros((0, 4))`` and ``labels = torch.zeros((0,))``:
most radiographs have no calcinosis, so this is the normal case, not an edge case.

Detections (model output, detect's CSV) use the same box layout, in *original-image* pixels:
every resize applied on the way in is undone on the way out (``scale_boxes``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def empty_boxes() -> Tensor:
    """Boxes of an image with no findings: shape (0, 4), float32."""
    return torch.zeros((0, 4), dtype=torch.float32)


def make_target(
    boxes: np.ndarray | Tensor | Sequence[Sequence[float]],
    labels: np.ndarray | Tensor | Sequence[int],
    image_id: int,
) -> dict[str, Tensor | int]:
    """Build a target dict in the contract's dtypes and shapes, empty inputs included."""
    boxes_t = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64)).reshape(-1)
    if len(boxes_t) != len(labels_t):
        raise ValueError(f"image {image_id}: {len(boxes_t)} boxes but {len(labels_t)} labels")
    return {"boxes": boxes_t, "labels": labels_t, "image_id": int(image_id)}


def check_target(target: dict, height: int, width: int, tol: float = 1e-3) -> None:
    """Raise ValueError if ``target`` breaks the contract for an image of ``height`` x ``width``."""
    boxes, labels = target["boxes"], target["labels"]
    name = f"image {target.get('image_id', '?')}"
    if boxes.dtype != torch.float32 or boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}: boxes must be float32 [N, 4], got {boxes.dtype} {tuple(boxes.shape)}")
    if labels.dtype != torch.int64 or labels.shape != (boxes.shape[0],):
        raise ValueError(f"{name}: labels must be int64 [N], got {labels.dtype} {tuple(labels.shape)}")
    if len(boxes) == 0:
        return
    x1, y1, x2, y2 = boxes.unbind(1)
    if bool((x2 <= x1).any() or (y2 <= y1).any()):
        raise ValueError(f"{name}: boxes need x1 < x2 and y1 < y2: {boxes.tolist()}")
    if bool((x1 < -tol).any() or (y1 < -tol).any() or (x2 > width + tol).any() or (y2 > height + tol).any()):
        raise ValueError(f"{name}: boxes leave the {width}x{height} image: {boxes.tolist()}")
    if bool((labels < 1).any()):
        raise ValueError(f"{name}: labels start at 1 (0 is background): {labels.tolist()}")


def scale_boxes(boxes: Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> Tensor:
    """Map xyxy boxes from an image of ``from_size`` (H, W) to one of ``to_size`` (H, W).

    The one place where a resize is undone: detections made on a resized image go back to
    original-image pixels through here.
    """
    sy = to_size[0] / from_size[0]
    sx = to_size[1] / from_size[1]
    factor = boxes.new_tensor([sx, sy, sx, sy])
    out = boxes * factor
    out[:, 0::2] = out[:, 0::2].clamp(0, to_size[1])
    out[:, 1::2] = out[:, 1::2].clamp(0, to_size[0])
    return out
