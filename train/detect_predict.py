"""The network over the files for ``calcidet detect``: Lightning ``Trainer.predict``, journaled as it goes.

    calcidet detect scans/ --checkpoint CKPT --output results/   (train.detect_cmd calls ``run_predict``)

Files are decoded in DataLoader workers, a whole batch per item (``RadiographBatches``), while the
network runs (``DetectionModule``, on torch or ONNX Runtime); each batch's records go to this rank's
journal (``train.detect_journal.JournalWriter``) as they come, so an interrupted run resumes with the
batches still ``pending_batches``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from calcidet.data.dataset import FolderDataset, detection_collate, resize_longest, to_uint8
from calcidet.data.readers import read_radiograph
from calcidet.data.scope import ImageScopeCheck, ScopeVerdict, assess_scope
from calcidet.model.film_check import RadiographCheck
from calcidet.model.inference import CalcinosisPredictor, Detections
from calcidet.train.detect_journal import JournalWriter, image_record
from calcidet.train.output_files import safe_output_path


class RadiographBatches(Dataset):
    """Item k is the k-th batch of files, decoded and collated in one worker.

    Batches are fixed slices of the sorted file list, so a resumed run feeds the network exactly the
    batches an uninterrupted one does (padding inside a batch nudges scores) and writes the same files.
    """

    def __init__(self, images: FolderDataset, stamps: list[list[int] | None], batches: list[list[int]],
                 preview_size: int | None) -> None:
        self.images = images
        self.stamps = stamps
        self.batches = batches
        self.preview_size = preview_size

    def __len__(self) -> int:
        return len(self.batches)

    def _preview(self, index: int) -> Any:
        try:  # read again rather than widen FolderDataset: overlays are an occasional viewing aid
            image = read_radiograph(self.images.files[index]).image
        except Exception:  # noqa: BLE001 - no overlay is better than no result
            return None
        return to_uint8(resize_longest(image, min(self.preview_size, max(image.shape))))

    def __getitem__(self, k: int) -> tuple[list[Tensor], list[dict[str, Any]]]:
        samples = []
        for i in self.batches[k]:
            image, meta = self.images[i]
            meta["stamp"] = self.stamps[i]
            if self.preview_size and meta["error"] is None:
                meta["preview"] = self._preview(i)
            samples.append((image, meta))
        return detection_collate(samples)


def _as_collated(batch: Any) -> Any:
    return batch  # items are whole batches already; the default would turn previews into tensors


class DetectionModule(pl.LightningModule):
    """``CalcinosisPredictor`` as a LightningModule: ``predict_step`` returns journal records.

    Args:
        predictor: the detector.
        tta: add horizontally flipped inference.
        all_films: search out-of-scope films too (``data.scope``); by default they get no boxes.
        image_check: judges films whose tags say nothing (``data.scope.assess_scope``); None: unknown.
    """

    def __init__(self, predictor: CalcinosisPredictor, tta: bool, all_films: bool = False,
                 image_check: ImageScopeCheck | None = None) -> None:
        super().__init__()
        self.predictor = predictor
        self.model = predictor.model  # registered, so Lightning moves it to the rank's device
        self.tta = tta
        self.all_films = all_films
        self.image_check = image_check

    def _scope(self, image: Tensor, meta: dict[str, Any]) -> ScopeVerdict:
        if meta["error"] is not None:
            return ScopeVerdict("unknown")
        pixels = image[0].cpu().numpy() if self.image_check is not None else None
        return assess_scope(meta.get("tags") or {}, pixels, self.image_check)

    def on_predict_start(self) -> None:
        self.predictor.device = self.device

    def predict_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> list[dict[str, Any]]:
        images, metas = batch
        verdicts = [self._scope(image, meta) for image, meta in zip(images, metas, strict=True)]
        ok = [i for i, m in enumerate(metas) if m["error"] is None
              and (self.all_films or verdicts[i].scope != "out_of_scope")]
        # The predictor isolates an image that breaks the batch (its result carries the error).
        dets = self.predictor.detect_batch([images[i] for i in ok], [metas[i]["original_size"] for i in ok],
                                           tta=self.tta, min_score=self.predictor.score_floor)  # threshold marks later
        found: dict[int, Detections] = dict(zip(ok, dets, strict=True))
        records = []
        for i, meta in enumerate(metas):
            det = found.get(i)
            error = det.error if det is not None else None
            record = image_record(meta, det, self.predictor.class_names, error, verdicts[i])
            if meta.get("preview") is not None:
                record["preview"] = meta["preview"]
            records.append(record)
        return records


class ImagesPerSecondBar(TQDMProgressBar):
    """Lightning's bar (one step per batch) with images per second in the postfix."""

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        self._images, self._start = 0, time.perf_counter()

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                             batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._images += len(outputs)
        rate = self._images / max(time.perf_counter() - self._start, 1e-9)
        self.predict_progress_bar.set_postfix({"img/s": f"{rate:.1f}"}, refresh=False)
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)


def pending_batches(names: list[str], stamps: list[list[int] | None], done: dict[str, dict],
                    batch_size: int, overlay_dir: Path | None) -> list[list[int]]:
    """The batches (fixed slices of the sorted list) holding an image without a journaled result."""
    def finished(i: int) -> bool:
        record = done.get(names[i])
        if record is None or record.get("stamp") != stamps[i]:  # new, or changed since
            return False
        return overlay_dir is None or record["status"] != "ok" or \
            safe_output_path(overlay_dir, names[i], ".png").is_file()

    batches = [list(range(s, min(s + batch_size, len(names)))) for s in range(0, len(names), batch_size)]
    return [b for b in batches if not all(finished(i) for i in b)]


def run_predict(args: argparse.Namespace, predictor: CalcinosisPredictor, dataset: RadiographBatches,
                journal: Path, overlay_dir: Path | None) -> tuple[pl.Trainer, JournalWriter]:
    """Detect on ``dataset`` with Lightning, journaling as it goes; the writer holds the timings."""
    cuda, threads = torch.cuda.is_available(), torch.get_num_threads()
    if not cuda and args.num_workers > 0 and "OMP_NUM_THREADS" not in os.environ:
        # Leave the decoding workers their cores: OpenMP threads that share a core with a decoder
        # stall the whole convolution (2 cores, 1 worker: 26 images/s with 1 thread, 19 with 2).
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // args.devices - args.num_workers))
    loader = DataLoader(dataset, batch_size=None, num_workers=args.num_workers, pin_memory=cuda,
                        collate_fn=_as_collated)
    writer = JournalWriter(journal, overlay_dir, predictor.threshold)
    trainer = pl.Trainer(accelerator="cuda" if cuda else "cpu", devices=args.devices, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, default_root_dir=args.output,
                         callbacks=[writer, ImagesPerSecondBar()])
    try:
        image_check = RadiographCheck.load() if args.image_check else None
        trainer.predict(DetectionModule(predictor, args.tta, args.all_films, image_check), dataloaders=loader,
                        return_predictions=False)
        trainer.strategy.barrier("detect-merge")  # every rank's journal is complete past this point
    finally:
        torch.set_num_threads(threads)  # callers in the same process (tests, notebooks) keep theirs
    return trainer, writer


def onnx_runtime(predictor: CalcinosisPredictor, onnx_path: str | None) -> torch.nn.Module:
    """The predictor's model with its network in ONNX Runtime; exported now (~10 s) if no file is given."""
    from calcidet.model.onnx_export import export_onnx, onnx_metadata, onnx_runtime_detector

    if onnx_path is not None:
        exported_from = onnx_metadata(onnx_path).get("checkpoint_sha256")
        if exported_from not in (None, predictor.checkpoint["sha256"]):  # other weights: other results
            raise ValueError(f"{onnx_path} was exported from another checkpoint (sha256 {exported_from[:12]}...)")
        model = onnx_runtime_detector(predictor.model, onnx_path)
    else:
        with tempfile.TemporaryDirectory(prefix="calcidet-onnx-") as tmp:
            model = onnx_runtime_detector(predictor.model, export_onnx(predictor.model, Path(tmp) / "model.onnx",
                                                                       predictor.image_size))
    # A graph traced with its side baked in reads films up to that side only (padded to it): say so
    # now, not once per film after the run has started.
    fixed = getattr(model.net.backbone, "fixed_side", None)
    too_big = [s for s in (predictor.image_size, *predictor.extra_sizes) if fixed and s > fixed]
    if too_big:
        raise ValueError(f"this arch's ONNX graph reads films up to {fixed} px only, not {too_big[0]} px: "
                         "use --backend torch for --extra-sizes or a larger --image-size")
    return model
