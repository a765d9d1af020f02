"""Results of ``calcidet detect``: a crash-safe journal while it runs, the final files at the end.

    calcidet detect INPUT... --checkpoint CKPT --output DIR

Each batch's results are appended to ``DIR/.journal/rank<R>.jsonl`` (one JSON line per image, flushed
and fsynced per batch) beside ``DIR/.journal/settings.json``, which holds what the results depend on
(checkpoint SHA-256, score floor, threshold, TTA). A rerun reads the journal, skips what is done and
appends the rest. At the end the journal becomes the final files, each written to a temporary file and
renamed over the old one, so no reader ever sees half a file; ``run.json`` is removed first and written
last, so its presence means the other files are complete. Rows are sorted by image name, so a resumed
run writes the same files as an uninterrupted one. Every box down to the score floor is kept; the
operating threshold marks some of them:

- ``detections.csv``: one row per box, in original-image pixels (``data.contract``), with
  ``above_threshold`` (``true``/``false``: the box scores at least the operating threshold);
- ``images.csv``: one row per image found, failed ones included, with the reason, and its ``scope``
  (``in_scope``, ``out_of_scope`` or ``unknown``; see ``data.scope``) with ``scope_reason``;
  ``num_detections`` counts boxes at the operating threshold, ``max_confidence`` is over all boxes;
- ``detections.json`` and ``detections_coco.json``: COCO results and a COCO dataset
  (``train.detect_coco``).

A write that fails (a full disk) raises ``OutputWriteError`` naming the file; no partial file is left.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sys
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from calcidet.data.scope import ScopeVerdict
from calcidet.model.inference import Detections
from calcidet.train.detect_coco import CocoIds, coco_dataset, results_list

JOURNAL_DIR = ".journal"
MAX_PART_BYTES = 200  # of an output path's parts: leaves room for a suffix and ".NAME.tmp" within 255
FINAL_FILES = ("detections.csv", "images.csv", "detections.json", "detections_coco.json", "run.json")
DETECTION_COLUMNS = ["image", "x_min", "y_min", "x_max", "y_max", "confidence", "label", "width_mm", "height_mm",
                     "above_threshold"]
IMAGE_COLUMNS = ["image", "status", "reason", "width", "height", "pixel_spacing_row_mm", "pixel_spacing_col_mm",
                 "spacing_source", "format", "num_detections", "max_confidence", "scope", "scope_reason"]


class JournalMismatchError(RuntimeError):
    """The output folder holds results made with different settings."""


class OutputWriteError(OSError):
    """An output file could not be written (a full disk, no permission); ``filename`` names it."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))


def file_stamp(path: str | Path) -> list[int] | None:
    """Size and modification time (a journal record is reused only while the file is unchanged)."""
    try:
        st = os.stat(path)
    except OSError:
        return None  # vanished since it was listed: the reader will say so
    return [st.st_size, st.st_mtime_ns]


def package_versions() -> dict[str, str]:
    """Versions that shape the results, for run.json."""
    out = {"python": sys.version.split()[0]}
    for pkg in ("calcidet", "torch", "torchvision", "pytorch-lightning"):
        try:
            out[pkg.replace("-", "_")] = version(pkg)
        except PackageNotFoundError:
            out[pkg.replace("-", "_")] = "unknown"
    return out


def atomic_write(path: Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: all or nothing.

    Raises:
        OutputWriteError: naming ``path``; the temporary file is removed.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the original error is the one to report
        raise OutputWriteError(path, exc) from exc


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write`` of UTF-8 text."""
    atomic_write(path, text.encode("utf-8"))


def safe_output_path(root: Path, name: str, suffix: str = "") -> Path:
    """``root/name+suffix`` with ``..``, absolute parts and drive letters removed: always inside root.

    A part longer than ``MAX_PART_BYTES`` is cut and given a hash of the whole (names stay distinct):
    the file system's limit is 255 bytes, and a 255-byte input name plus ``suffix`` would not fit.
    """
    try:
        os.fsencode(name)
    except UnicodeEncodeError:  # lone surrogates no file system takes: write them as \uXXXX escapes
        name = name.encode("utf-8", "backslashreplace").decode("utf-8")
    # strip("/"): POSIX keeps a leading "//" as a part of its own, and joinpath("//") leaves root
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p.strip("/") not in ("", ".", "..")]
    parts = [p.replace(":", "_") for p in parts] or ["_"]
    return root.joinpath(*(_fit(p) for p in parts[:-1]), _fit(parts[-1]) + suffix)


def _fit(part: str) -> str:
    raw = os.fsencode(part)
    if len(raw) <= MAX_PART_BYTES:
        return part
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return raw[:MAX_PART_BYTES - 13].decode("utf-8", "ignore") + "~" + digest


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


def write_overlay(path: Path, preview: np.ndarray, record: dict[str, Any], threshold: float = 0.0) -> None:
    """Draw ``record``'s boxes scoring at least ``threshold`` on ``preview`` (a downscaled uint8 copy)."""
    canvas = cv2.cvtColor(preview, cv2.COLOR_GRAY2BGR)
    scale = preview.shape[1] / record["width"]  # boxes are in original pixels
    thick = max(1, round(preview.shape[1] / 500))
    found = sorted(((s, b) for s, b in zip(record["scores"], record["boxes"], strict=True) if s >= threshold),
                   key=lambda sb: sb[0])
    for score, (x1, y1, x2, y2) in found:  # highest score drawn last, on top
        p1, p2 = (round(x1 * scale), round(y1 * scale)), (round(x2 * scale), round(y2 * scale))
        cv2.rectangle(canvas, p1, p2, (0, 200, 255), thick, cv2.LINE_AA)
        label, font, font_scale = f"{score:.2f}", cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thick
        (tw, th), base = cv2.getTextSize(label, font, font_scale, thick)
        top = p1[1] - th - base - thick if p1[1] - th - base - thick >= 0 else p1[1] + thick  # inside at the edge
        cv2.rectangle(canvas, (p1[0], top), (p1[0] + tw, top + th + base), (0, 0, 0), -1)  # legible on bone
        cv2.putText(canvas, label, (p1[0], top + th), font, font_scale, (0, 200, 255), thick, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, png = cv2.imencode(".png", canvas)
    if ok:
        atomic_write(path, png.tobytes(), sync=False)  # a viewing aid: not worth an fsync each


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


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_final_files(records: list[dict[str, Any]], out_dir: Path, threshold: float, ids: CocoIds) -> dict[str, int]:
    """Write ``detections.csv``, ``images.csv``, ``detections.json`` and ``detections_coco.json``.

    ``run.json`` is removed first (the caller writes it last). ``threshold`` is the operating
    threshold, ``ids`` the COCO ids (``train.detect_coco.assign_ids``).

    Returns:
        counts of images ``ok`` and ``error``, of ``out_of_scope`` images, of ``detections`` at the
        threshold and of all ``boxes`` kept.

    Raises:
        OutputWriteError: a file could not be written.
    """
    try:
        (out_dir / "run.json").unlink(missing_ok=True)  # its presence says the set is complete
    except OSError as exc:
        raise OutputWriteError(out_dir / "run.json", exc) from exc
    records = sorted(records, key=lambda r: r["image"])
    det_csv, img_csv = io.StringIO(), io.StringIO()
    det_rows, img_rows = csv.writer(det_csv, lineterminator="\n"), csv.writer(img_csv, lineterminator="\n")
    det_rows.writerow(DETECTION_COLUMNS)
    img_rows.writerow(IMAGE_COLUMNS)
    counts = {"ok": 0, "error": 0, "out_of_scope": 0, "detections": 0, "boxes": 0}
    for r in records:
        counts[r["status"]] += 1
        counts["out_of_scope"] += r["scope"] == "out_of_scope"
        above = [s >= threshold for s in r["scores"]]
        counts["detections"] += sum(above)
        counts["boxes"] += len(above)
        row_mm, col_mm = r["pixel_spacing_mm"] or (None, None)
        for (x1, y1, x2, y2), score, label, hit in zip(r["boxes"], r["scores"], r["labels"], above, strict=True):
            w_mm = (x2 - x1) * col_mm if col_mm else None
            h_mm = (y2 - y1) * row_mm if row_mm else None
            det_rows.writerow([r["image"], _fmt(x1, 2), _fmt(y1, 2), _fmt(x2, 2), _fmt(y2, 2), _fmt(score, 4),
                               label, _fmt(w_mm, 2), _fmt(h_mm, 2), "true" if hit else "false"])
        img_rows.writerow([
            r["image"], r["status"], r["reason"], r["width"] or "", r["height"] or "",
            _fmt(row_mm, 6), _fmt(col_mm, 6), r["spacing_source"] or "", r["format"] or "",
            sum(above), _fmt(max(r["scores"]) if r["scores"] else None, 4),
            r["scope"], r["scope_reason"],
        ])
    atomic_write_text(out_dir / "detections.csv", det_csv.getvalue())
    atomic_write_text(out_dir / "images.csv", img_csv.getvalue())
    atomic_write_text(out_dir / "detections.json", json.dumps(results_list(records, ids, threshold)))
    atomic_write_text(out_dir / "detections_coco.json", json.dumps(coco_dataset(records, ids, threshold)))
    return counts
