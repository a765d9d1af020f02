"""Overlays of ``calcidet detect --overlays``: a film's boxes drawn on a downscaled copy of it.

    calcidet detect scans/ --checkpoint CKPT --output results/ --overlays   (writes results/overlays/)

A viewing aid, not a result: boxes are drawn at the operating threshold, the highest score on top,
and the PNG is written atomically but without an fsync.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calcidet.train.output_files import atomic_write


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
