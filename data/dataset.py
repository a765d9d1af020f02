"""Torch datasets over radiographs: annotated (COCO) for training/evaluation, plain folders for detection.

Samples follow ``data.contract``: a float32 ``1 x H x W`` tensor in 0..1 and a target dict whose boxes
are in the pixels of *that* tensor. Images are resized once so that their longest side is
``image_size`` (the model's input size); ``meta["original_size"]`` keeps (H, W) of the file so that
detections can be mapped back with ``data.contract.scale_boxes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from calcidet.data.coco import CocoImage
from calcidet.data.contract import make_target
from calcidet.data.disk_cache import DiskImageCache
from calcidet.data.readers import RadiographReadError, read_radiograph
from calcidet.data.transforms import HARD_NEGATIVE

Sample = tuple[Tensor, dict[str, Any]]
CacheMode = Literal["memory", "disk", "none"]
CACHE_MODES: tuple[str, ...] = get_args(CacheMode)
# FolderDataset decodes JPEGs in the DCT domain (1/2..1/8 scale) down to this many times image_size, and
# area-resizes the rest: the model's input stays within ~2/255 of a full decode (99.9th percentile),
# where decoding straight to image_size moved it by up to ~14/255 and scores by up to 0.1
# (benchmarks/jpeg_decode.py: 2.2x faster reads of 2,500 px films at 384, vs 4.6x without the margin).
JPEG_DECODE_MARGIN = 2


def resize_longest(image: np.ndarray, size: int, full_size: tuple[int, int] | None = None) -> np.ndarray:
    """Resize so the longest side is ``size`` (area interpolation keeps fine calcification texture).

    ``full_size`` (H, W): the file's size when ``image`` was decoded reduced; the output then has
    the shape a full-size decode would have given (rounding from the reduced shape can differ by 1 px).
    """
    h, w = full_size or image.shape[:2]
    scale = size / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new == (image.shape[1], image.shape[0]):
        return image
    shrink = max(new) < max(image.shape[:2])
    return cv2.resize(image, new, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def detection_collate(batch: Sequence[Sample]) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """Detection batches are lists: images differ in size and targets in box count."""
    images, targets = zip(*batch)
    return list(images), list(targets)


class RadiographDataset(Dataset):
    """Annotated radiographs from a COCO index, decoded once at ``image_size`` and cached.

    Decoding a 2500 px 16-bit film costs ~100x more than augmenting its 384 px copy, so by default
    every image is read once (threads: the decoders release the GIL) and kept as uint8. Where the
    films are cached (``cache``):

    - ``memory``: a list of arrays in this process; workers share it copy-on-write, but every DDP
      rank holds its own copy (5,000 films at 1024 px: ~4 GB per rank).
    - ``disk``: ``data.disk_cache.DiskImageCache`` in ``cache_dir``, built once up front and
      memory-mapped on read, so the page cache holds one copy for all ranks and workers on a node
      and the OS can drop it under memory pressure.
    - ``none``: decoded on every access, in the DataLoader worker.

    Args:
        images: the index's images (``CocoIndex.images``).
        image_size: longest side fed to the model.
        transforms: an albumentations pipeline from ``data.transforms.build_transforms`` or None.
        preload_threads: threads used to fill the cache up front (0: fill it lazily, on first access).
        cache: ``memory``, ``disk`` or ``none`` (above).
        cache_dir: the disk cache folder; required with ``cache="disk"``, may be shared by datasets.

    Raises:
        ValueError: for an unknown ``cache``, or ``disk`` without ``cache_dir``.
    """

    def __init__(
        self,
        images: Sequence[CocoImage],
        image_size: int,
        transforms: Callable[..., dict[str, Any]] | None = None,
        preload_threads: int = 2,
        cache: CacheMode = "memory",
        cache_dir: str | Path | None = None,
    ) -> None:
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
        if cache == "disk" and cache_dir is None:
            raise ValueError("cache='disk' needs cache_dir, the folder that holds the decoded films")
        self.images = list(images)
        self.image_size = image_size
        self.transforms = transforms
        self.cache = cache
        self._cache: list[np.ndarray | None] = [None] * len(self.images) if cache == "memory" else []
        self._disk = DiskImageCache(cache_dir, image_size) if cache == "disk" else None
        if preload_threads > 0 and self.images:
            if self._disk is not None:
                self._disk.build([r.path for r in self.images], self._decode, preload_threads)
            elif cache == "memory":
                with ThreadPoolExecutor(preload_threads) as pool:
                    self._cache = list(pool.map(self._decode, range(len(self.images))))

    def __len__(self) -> int:
        return len(self.images)

    def _decode(self, index: int) -> np.ndarray:
        record = self.images[index]
        try:
            image = read_radiograph(record.path).image
        except RadiographReadError as exc:
            raise RadiographReadError(exc.path, f"{exc.reason} (image id {record.id})") from exc
        if image.shape != (record.height, record.width):
            raise RadiographReadError(
                str(record.path),
                f"is {image.shape[1]}x{image.shape[0]} but the annotations say {record.width}x{record.height} "
                f"(image id {record.id})",
            )
        return to_uint8(resize_longest(image, self.image_size))

    def _image(self, index: int) -> np.ndarray:
        """The uint8 film at ``image_size``, from wherever ``cache`` keeps it."""
        if self._disk is not None:
            return self._disk.get(self.images[index].path, lambda: self._decode(index))
        if self.cache == "none":
            return self._decode(index)
        image = self._cache[index]
        if image is None:
            image = self._cache[index] = self._decode(index)
        return image

    def __getitem__(self, index: int) -> Sample:
        record = self.images[index]
        image = self._image(index)
        scale = image.shape[0] / record.height, image.shape[1] / record.width
        # Ignore regions ride through the transforms as label 0 (no class has it), then get their own key:
        # validation scores by them and the FCOS loss leaves them out (model.ignore_regions). Mined
        # hard negatives ride as HARD_NEGATIVE for the crop to aim at, and are dropped after it.
        ignore, hard = len(record.ignore_boxes), len(record.hard_negatives) if self.transforms is not None else 0
        boxes = np.concatenate([record.boxes, record.ignore_boxes, record.hard_negatives[:hard]]) * np.array(
            [scale[1], scale[0], scale[1], scale[0]], dtype=np.float32)
        labels = np.concatenate([record.labels, np.zeros(ignore, np.int64), np.full(hard, HARD_NEGATIVE, np.int64)])
        if self.transforms is not None:
            out = self.transforms(image=image, bboxes=boxes, labels=labels)
            image = out["image"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64)
        target = make_target(boxes[labels > 0], labels[labels > 0], record.id)
        if ignore:
            target["ignore_boxes"] = torch.from_numpy(boxes[labels == 0].reshape(-1, 4))
        target["original_size"] = (record.height, record.width)
        return torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)[None], target


class FolderDataset(Dataset):
    """Radiograph files for detection; a file that cannot be read yields an error record, not a crash.

    Each sample is ``(image 1 x H x W, meta)`` with ``meta``: ``path``, ``name`` (POSIX path relative
    to the input root), ``original_size`` (H, W), ``pixel_spacing_mm``, ``spacing_source``,
    ``source_format``, ``tags`` (``Radiograph.tags``: what a DICOM file says it shows) and ``error``
    (None, or the reason the file was skipped; the image is then 1x1).
    """

    def __init__(self, files: Sequence[Path], names: Sequence[str], image_size: int) -> None:
        if len(files) != len(names):
            raise ValueError("files and names differ in length")
        self.files = list(files)
        self.names = list(names)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        meta: dict[str, Any] = {"path": str(self.files[index]), "name": self.names[index], "error": None,
                                "original_size": None, "pixel_spacing_mm": None, "spacing_source": None,
                                "source_format": None, "tags": {}}
        try:
            rad = read_radiograph(self.files[index], max_side=JPEG_DECODE_MARGIN * self.image_size)
        except RadiographReadError as exc:
            meta["error"] = exc.reason
            return torch.zeros((1, 1, 1)), meta
        except Exception as exc:  # noqa: BLE001 - one odd file must never stop a folder of thousands
            meta["error"] = f"unexpected {type(exc).__name__}: {exc}"
            return torch.zeros((1, 1, 1)), meta
        meta.update(original_size=rad.original_size, pixel_spacing_mm=rad.pixel_spacing_mm,
                    spacing_source=rad.spacing_source, source_format=rad.source_format, tags=rad.tags)
        image = resize_longest(rad.image, self.image_size, rad.original_size)
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None], meta
