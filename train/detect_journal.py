"""The crash-safe journal of ``calcidet detect``: one JSON line per image, appended as batches finish.

    calcidet detect INPUT... --checkpoint CKPT --output DIR

Each batch's results are appended to ``DIR/.journal/rank<R>.jsonl`` (one JSON line per image, flushed
and fsynced per batch) beside ``DIR/.journal/settings.json``, which holds what the results depend on
(checkpoint SHA-256, score floor, threshold, TTA). A rerun reads the journal, skips what is done and
appends the rest; ``train.detect_writer`` turns the journal into the final files at the end. A record
is reused only while its file's ``file_stamp`` (size, mtime) is unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from calcidet.data.scope import ScopeVerdict
from calcidet.model.inference import Detections
from calcidet.train.detect_overlay import write_overlay
from calcidet.train.detect_writer import FINAL_FILES
from calcidet.train.output_files import OutputWriteError, atomic_write_text, safe_output_path

JOURNAL_DIR = ".journal"


class JournalMismatchError(RuntimeError):
    """The output folder holds results made with different settings."""


def file_stamp(path: str | Path) -> list[int] | None:
    """Size and modification time (a journal record is reused only while the file is unchanged)."""
    try:
        st = os.stat(path)
    except OSError:
        return None  # vanished since it was listed: the reader will say so
    return [st.st_size, st.st_mtime_ns]


def prepare_journal(out_dir: Path, settings: dict[str, Any], overwrite: bool) -> Path:
    """Create ``out_dir/.journal`` for ``settings``, or check that an existing one was made with them.

    Raises:
        JournalMismatchError: the journal's settings differ and ``overwrite`` is False.
    """
    journal = out_dir / JOURNAL_DIR
    settings_file = journal / "settings.json"
    if overwrite:
        shutil.rmtree(journal, ignore_errors=True)
        for name in FINAL_FILES:
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / "overlays", ignore_errors=True)
    elif settings_file.is_file():
        old = json.loads(settings_file.read_text())
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            lines = "\n".join(f"  {k}: before {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise JournalMismatchError(
                f"{out_dir} holds results made with other settings:\n{lines}\n"
                "Use another --output folder, or --overwrite to discard the earlier results."
            )
        return journal
    journal.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings_file, json.dumps(settings, indent=2, sort_keys=True))
    return journal


def read_journal(journal: Path) -> dict[str, dict[str, Any]]:
    """One record per image from all ranks' journals (a later line wins); torn lines are skipped."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(journal.glob("rank*.jsonl")):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last line of a killed run
                if isinstance(record, dict) and "image" in record:
                    records[record["image"]] = record
    return records


def image_record(meta: dict[str, Any], found: Detections | None, class_names: list[str],
                 error: str | None = None, verdict: ScopeVerdict | None = None) -> dict[str, Any]:
    """One journal line: what ``images.csv`` and ``detections.csv`` need about an image.

    ``verdict`` is the film's scope (``data.scope.assess_scope``); None records ``unknown``.
    """
    error = error or meta.get("error")
    verdict = verdict or ScopeVerdict("unknown")
    record: dict[str, Any] = {
        "image": meta["name"], "path": meta["path"], "stamp": meta["stamp"],
        "status": "error" if error else "ok", "reason": error or "",
        "height": None, "width": None, "pixel_spacing_mm": meta.get("pixel_spacing_mm"),
        "spacing_source": meta.get("spacing_source"), "format": meta.get("source_format"),
        "boxes": [], "scores": [], "labels": [], "scope": verdict.scope, "scope_reason": verdict.reason,
    }
    if meta.get("original_size") is not None:
        record["height"], record["width"] = (int(v) for v in meta["original_size"])
    if record["pixel_spacing_mm"] is not None:
        record["pixel_spacing_mm"] = [float(v) for v in record["pixel_spacing_mm"]]
    if found is not None and not error:
        record["boxes"] = np.round(found.boxes.astype(np.float64), 3).tolist()
        record["scores"] = np.round(found.scores.astype(np.float64), 6).tolist()
        record["labels"] = [class_names[int(k) - 1] for k in found.labels]
    return record


class JournalWriter(BasePredictionWriter):
    """Appends each batch's records to this rank's journal (and draws overlays) as they come.

    ``predict_step`` returns a list of ``image_record`` dicts; a record may carry ``preview`` (a
    uint8 image for the overlay), which is drawn and dropped before the record is journaled.
    """

    def __init__(self, journal: Path, overlay_dir: Path | None = None, threshold: float = 0.0) -> None:
        super().__init__(write_interval="batch")
        self.journal = journal
        self.overlay_dir = overlay_dir
        self.threshold = threshold  # overlays show the boxes at the operating threshold
        self.images_done, self.torch_threads = 0, 0
        self.started = self.finished = 0.0
        self._path = journal
        self._fd: int | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._path = path = self.journal / f"rank{trainer.global_rank}.jsonl"
        try:
            if path.exists():  # cut a torn last line so that the next record starts on a line of its own
                data = path.read_bytes()
                if data and not data.endswith(b"\n"):
                    with open(path, "r+b") as f:
                        f.truncate(data.rfind(b"\n") + 1)
            # Unbuffered: a failed write leaves nothing in a buffer for close() to fail on again.
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputWriteError(path, exc) from exc
        self.started, self.torch_threads = time.perf_counter(), torch.get_num_threads()

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        lines = []
        for record in prediction:
            preview = record.pop("preview", None)
            if self.overlay_dir is not None and preview is not None:
                try:
                    write_overlay(safe_output_path(self.overlay_dir, record["image"], ".png"), preview, record,
                                  self.threshold)
                except OSError as exc:  # no overlay beats no results (a full disk; "x.png" and "x.png.png/")
                    warnings.warn(f"no overlay for {record['image']}: {exc}", stacklevel=1)
            lines.append(json.dumps(record) + "\n")
        assert self._fd is not None
        data = memoryview("".join(lines).encode("utf-8"))
        try:
            while data:  # a full disk may take part of the batch: the torn line is cut on the rerun
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)  # a batch on disk survives a kill or a power cut
        except OSError as exc:
            self._close()
            raise OutputWriteError(self._path, exc) from exc
        self.images_done += len(lines)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.finished = time.perf_counter()
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close()
