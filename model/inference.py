"""Python API for inference: load a calcidet checkpoint once, call it on files or arrays.

    >>> from calcidet.model.inference import CalcinosisPredictor
    >>> predictor = CalcinosisPredictor.from_checkpoint("runs/demo/checkpoints/last.ckpt")
    >>> found = predictor.predict_paths(["knee.dcm", "hip.png"], batch_size=4)   # one result per path
    >>> found[0].boxes, found[0].scores, found[0].labels, found[0].error   # original pixels, xyxy

This is the one detection path: ``calcidet detect``, ``CalcinosisDetector.predict_step`` and the
ONNX Runtime backend (``model.onnx_export``) all go through ``CalcinosisPredictor.detect_batch``:
pre-processing (``FolderDataset``/``prepare_image``), flip TTA, extra sizes, the threshold, and the
mapping of boxes back to original-image pixels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision.ops import batched_nms

from calcidet.data.contract import scale_boxes
from calcidet.data.dataset import FolderDataset, detection_collate, resize_longest
from calcidet.model.builder import RadiographDetector, build_detector
from calcidet.model.checkpoint import load_checkpoint, model_state_dict
from calcidet.model.intended_use import training_data

DEFAULT_THRESHOLD = 0.3  # used when a checkpoint carries no validated operating threshold
# Lowest score ``calcidet detect`` keeps: the training score floor, where evaluation curves start. Boxes
# between it and the operating threshold are kept (marked) so that the threshold can move afterwards.
DEFAULT_SCORE_FLOOR = 0.05


def _merge_into(outputs: list[dict[str, Tensor]], more: list[dict[str, Tensor]], iou: float = 0.5) -> None:
    """Merge a second set of detections of the same images into ``outputs`` (per class NMS)."""
    for out, extra in zip(outputs, more):
        boxes = torch.cat([out["boxes"], extra["boxes"]])
        scores = torch.cat([out["scores"], extra["scores"]])
        labels = torch.cat([out["labels"], extra["labels"]])
        keep = batched_nms(boxes, scores, labels, iou)
        out.update(boxes=boxes[keep], scores=scores[keep], labels=labels[keep])


@dataclass
class Detections:
    """Findings on one image, in original-image pixels (``data.contract``).

    ``error`` is None, or why the image has no result (an unreadable file, the network failing on
    it); the arrays are then empty. A batch never raises for one bad image.
    """

    boxes: np.ndarray  # float32 [N, 4] xyxy
    scores: np.ndarray  # float32 [N]
    labels: np.ndarray  # int64 [N], 1..K
    error: str | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def failed(cls, reason: str) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), reason)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_image(image: np.ndarray, image_size: int) -> Tensor:
    """A float 0..1 H x W array resized for the network, as a 1 x h x w tensor."""
    if image.ndim != 2:
        raise ValueError(f"expected a single-channel H x W image, got shape {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(resize_longest(image.astype(np.float32), image_size)))[None]


class CalcinosisPredictor:
    """A trained detector ready for inference.

    Args:
        model: the network (``RadiographDetector``).
        image_size: longest side the network was trained at.
        threshold: the operating threshold: by default detections scoring below it are dropped.
        class_names: names of labels 1..K.
        device: where the network runs.
        checkpoint: metadata of the checkpoint it came from (path, sha256, ...).
        extra_sizes: longest sides of extra (multi-scale) passes.
        score_floor: lowest score ``detect_batch(..., min_score=predictor.score_floor)`` can keep
            (the network's own score floor must not be above it); default: ``threshold``.
    """

    def __init__(self, model: RadiographDetector, image_size: int, threshold: float, class_names: list[str],
                 device: str | torch.device = "cpu", checkpoint: dict[str, Any] | None = None,
                 extra_sizes: Sequence[int] = (), score_floor: float | None = None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_size = image_size
        self.threshold = threshold
        self.score_floor = threshold if score_floor is None else min(score_floor, threshold)
        self.class_names = class_names
        self.checkpoint = checkpoint or {}
        # Multi-scale inference: the network also runs with the image's longest side at each of these
        # sizes, and the boxes of every size are merged. Small masses gain from a larger size, large
        # ones keep the size the network was trained at.
        self.extra_sizes = tuple(int(s) for s in extra_sizes)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu",
                        threshold: float | None = None, image_size: int | None = None,
                        score_floor: float = DEFAULT_SCORE_FLOOR) -> CalcinosisPredictor:
        """Load a calcidet checkpoint safely (no pickled code runs; see ``model.checkpoint``).

        ``threshold`` defaults to the operating point stored in the checkpoint (validation FROC at
        the configured FP rate), else ``DEFAULT_THRESHOLD``. ``image_size`` defaults to the size the
        network was trained at; a larger one shows small masses with more pixels (the stored
        operating point was measured at the training size). ``score_floor`` is the lowest score the
        network reports (capped at the threshold); ``detect_batch`` filters at the threshold unless
        asked for ``min_score=predictor.score_floor``.
        """
        ckpt = load_checkpoint(path)
        hp = ckpt.get("hyper_parameters", {})
        meta = ckpt.get("calcidet", {})
        class_names = list(meta.get("class_names") or hp.get("class_names") or ["calcinosis"])
        image_size = int(image_size or meta.get("image_size") or hp.get("image_size", 384))
        arch = meta.get("arch") or hp.get("arch", "fcos_tiny")
        stored = meta.get("operating_threshold")
        chosen = threshold if threshold is not None else (stored if stored is not None else DEFAULT_THRESHOLD)
        floor = min(float(score_floor), float(chosen))  # a stored operating point may sit under the floor
        model = build_detector(arch=arch, num_classes=len(class_names) + 1, min_size=image_size,
                               max_size=image_size, score_thresh=floor)
        model.load_state_dict(model_state_dict(ckpt))
        info = {"path": str(path), "sha256": sha256_file(path), "arch": arch, "image_size": image_size,
                "operating_threshold": stored, "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"),
                "training_data": training_data(ckpt)}
        return cls(model, image_size, float(chosen), class_names, device, info, score_floor=floor)

    @torch.inference_mode()
    def detect_batch(self, images: Sequence[Tensor], original_sizes: Sequence[tuple[int, int]],
                     tta: bool = False, min_score: float | None = None) -> list[Detections]:
        """Run the network on prepared images (``prepare_image``) and map boxes to original pixels.

        ``min_score``: lowest score kept (default: the operating threshold; ``self.score_floor`` keeps
        everything the network reports, as ``calcidet detect`` does). When the batch fails, each image
        is retried alone, so only the one that breaks it comes back with ``error`` set.
        """
        if not images:
            return []
        try:
            return self._detect(images, original_sizes, tta, min_score)
        except Exception as exc:  # noqa: BLE001 - reported in the result, never raised for the batch
            if len(images) == 1:
                return [Detections.failed(f"model failed: {type(exc).__name__}: {exc}")]
        # Isolate the image that breaks the batch: the others still get their results.
        return [self.detect_batch([img], [size], tta, min_score)[0] for img, size in zip(images, original_sizes)]

    def _detect(self, images: Sequence[Tensor], original_sizes: Sequence[tuple[int, int]], tta: bool,
                min_score: float | None) -> list[Detections]:
        min_score = self.threshold if min_score is None else min_score
        batch = [img.to(self.device, non_blocking=True) for img in images]
        outputs = self._run(batch, tta)
        if self.extra_sizes:
            transform = self.model.net.transform  # torchvision's resize step: its target sizes are public
            trained = (transform.min_size, transform.max_size)
            try:
                for size in self.extra_sizes:
                    transform.min_size, transform.max_size = (size,), size
                    _merge_into(outputs, self._run(batch, tta))
            finally:
                transform.min_size, transform.max_size = trained
        results = []
        for out, img, size in zip(outputs, batch, original_sizes):
            boxes = scale_boxes(out["boxes"].float(), tuple(img.shape[-2:]), tuple(size))
            # Boxes clipped flat against the border, or under a pixel across, outline nothing (and
            # torchvision's NMS treats such slivers differently with more or fewer boxes around).
            keep = (out["scores"] >= min_score) & (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
            results.append(Detections(boxes[keep].cpu().numpy().astype(np.float32),
                                      out["scores"][keep].float().cpu().numpy(),
                                      out["labels"][keep].cpu().numpy().astype(np.int64)))
        return results

    def detect_samples(self, images: Sequence[Tensor], metas: Sequence[dict[str, Any]], tta: bool = False,
                       min_score: float | None = None) -> list[Detections]:
        """``detect_batch`` on a ``data.dataset.FolderDataset`` batch; unreadable files keep their reason."""
        ok = [i for i, m in enumerate(metas) if m["error"] is None]
        found = self.detect_batch([images[i] for i in ok], [metas[i]["original_size"] for i in ok], tta,
                                  min_score) if ok else []
        results = [Detections.failed(str(m["error"])) for m in metas]
        for i, det in zip(ok, found):
            results[i] = det
        return results

    def _run(self, batch: list[Tensor], tta: bool) -> list[dict[str, Tensor]]:
        """The network on a batch; boxes in the batch images' pixels."""
        outputs = self.model(batch)
        if tta:  # horizontal flip: left/right limbs are mirror images of each other
            flipped = self.model([img.flip(-1) for img in batch])
            for flip, img in zip(flipped, batch):
                boxes = flip["boxes"].clone()
                boxes[:, [0, 2]] = img.shape[-1] - flip["boxes"][:, [2, 0]]
                flip["boxes"] = boxes
            _merge_into(outputs, flipped)
        return outputs

    def __call__(self, images: Sequence[np.ndarray], tta: bool = False) -> list[Detections]:
        """Detect on float 0..1 H x W arrays (already windowed, bone bright)."""
        prepared = [prepare_image(im, self.image_size) for im in images]
        return self.detect_batch(prepared, [im.shape[:2] for im in images], tta=tta)

    def predict_paths(self, paths: Sequence[str | Path], batch_size: int = 4, tta: bool = False,
                      min_score: float | None = None, num_workers: int = 0) -> list[Detections]:
        """Read radiograph files and detect on them, ``batch_size`` at a time.

        Args:
            paths: PNG, JPEG, TIFF or DICOM files (read as ``calcidet detect`` reads them).
            batch_size: images per network call.
            tta: add horizontally flipped inference.
            min_score: lowest score kept (default: the operating threshold).
            num_workers: decoding processes (0: decode in this process).

        Returns:
            One ``Detections`` per path, in order; a file that cannot be read, or that the network
            fails on, has ``error`` set and no boxes (nothing is raised for the batch).
        """
        files = [Path(p) for p in paths]
        loader = DataLoader(FolderDataset(files, [str(p) for p in files], self.image_size), batch_size=batch_size,
                            num_workers=num_workers, collate_fn=detection_collate)
        results: list[Detections] = []
        for images, metas in loader:
            results += self.detect_samples(images, metas, tta=tta, min_score=min_score)
        return results
