"""Burned-in markers, the bright text a detector must never call calcinosis: hard negatives.

    boxes = burn_markers(rng, film, spacing_mm=0.5, blur_px=1.2, avoid=[[x, y, w, h]])

Used for real films (``data.synth_insert``). Every style seen on plain films: lead side letters
"L"/"R" (upright, mirrored when the marker was placed face down, rotated with the cassette), other
letters and digits (views, numbering, "WB"), and lead rulers with centimetre ticks and numbers. Lead
is drawn as near-white, blurred like the film; a digital annotation as crisp white. Letters are
OpenCV Hershey strokes, so no font files are needed.
"""

from __future__ import annotations

import cv2
import numpy as np

FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
         cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_COMPLEX_SMALL)
SIDE_LETTERS = ("L", "R")
OTHER_TEXT = ("A", "P", "AP", "PA", "LAT", "OBL", "WB", "ERECT", "1", "2", "3", "4", "5", "6", "7", "8", "9",
              "10", "12", "15", "30", "45")
STYLES, STYLE_WEIGHTS = ("side", "text", "ruler"), (0.55, 0.3, 0.15)
LETTER_MM = (6.0, 14.0)  # height of a marker's letters
OVERSAMPLE = 3  # draw this much finer than the film, then area-average: strokes thinner than a pixel stay grey


def _text_canvas(rng: np.random.Generator, text: str, height_px: float) -> np.ndarray:
    """White text on black, drawn ``OVERSAMPLE`` times finer than ``height_px``, with a margin."""
    font = int(rng.choice(FONTS))
    scale = height_px * OVERSAMPLE / max(cv2.getTextSize("L", font, 1.0, 1)[0][1], 1)
    thick = max(1, int(round(scale * rng.uniform(1.2, 3.0))))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    pad = int(0.4 * th) + thick
    canvas = np.zeros((th + base + 2 * pad, tw + 2 * pad), np.uint8)
    cv2.putText(canvas, text, (pad, pad + th), font, scale, 255, thick, cv2.LINE_AA)
    if rng.random() < 0.35:  # the marker's plastic/lead frame
        cv2.rectangle(canvas, (1, 1), (canvas.shape[1] - 2, canvas.shape[0] - 2), 255, max(1, thick // 2))
    return canvas


def _ruler_canvas(rng: np.random.Generator, spacing: float) -> np.ndarray:
    """A lead ruler: centimetre ticks (longer every 5), numbers every 5 or 10 cm, drawn finer than the film."""
    px_mm = OVERSAMPLE / spacing
    length_mm, width_mm = rng.uniform(60, 250), rng.uniform(6, 12)
    canvas = np.zeros((int(width_mm * px_mm * 2) + 4, int(length_mm * px_mm) + 4), np.uint8)
    thick = max(1, int(round(0.6 * px_mm)))
    every = int(rng.choice([5, 10]))
    font = int(rng.choice(FONTS))
    for cm in range(int(length_mm // 10) + 1):
        x = int(2 + cm * 10 * px_mm)
        tall = width_mm * (1.0 if cm % 5 == 0 else 0.55) * px_mm
        cv2.line(canvas, (x, 2), (x, int(2 + tall)), 255, thick, cv2.LINE_AA)
        if cm % every == 0 and cm:
            scale = 0.8 * width_mm * px_mm / max(cv2.getTextSize("0", font, 1.0, 1)[0][1], 1)
            cv2.putText(canvas, str(cm), (x + thick, canvas.shape[0] - 2), font, scale, 255, thick, cv2.LINE_AA)
    if rng.random() < 0.5:  # millimetre ticks
        for mm in range(int(length_mm) + 1):
            x = int(2 + mm * px_mm)
            cv2.line(canvas, (x, 2), (x, int(2 + 0.3 * width_mm * px_mm)), 255, max(1, thick // 2), cv2.LINE_AA)
    return canvas


def _pose(rng: np.random.Generator, canvas: np.ndarray, style: str) -> np.ndarray:
    """Mirror (marker face down), turn by quarter turns, or tilt by a few degrees."""
    if rng.random() < 0.25:
        canvas = canvas[:, ::-1]
    canvas = np.rot90(canvas, int(rng.integers(4)) if style != "ruler" or rng.random() < 0.5 else 0).copy()
    if rng.random() < 0.4:
        h, w = canvas.shape
        side = int(np.hypot(h, w)) + 2
        big = np.zeros((side, side), np.uint8)
        big[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = canvas
        turn = cv2.getRotationMatrix2D((side / 2, side / 2), rng.uniform(-35, 35), 1.0)
        canvas = cv2.warpAffine(big, turn, (side, side), flags=cv2.INTER_LINEAR)
        ys, xs = np.nonzero(canvas)
        canvas = canvas[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if len(xs) else canvas
    return canvas


def _overlaps(box: tuple[int, int, int, int], avoid: list) -> bool:
    x, y, w, h = box
    return any(x < bx + bw and bx < x + w and y < by + bh and by < y + h for bx, by, bw, bh in avoid)


def burn_markers(rng: np.random.Generator, film: np.ndarray, spacing: float, blur_px: float, avoid: list,
                 count: int | None = None) -> list[dict]:
    """Burn 0-3 markers into ``film`` (display units, in place), clear of the ``avoid`` boxes (COCO xywh).

    Returns:
        ``[{"kind": "marker" | "ruler", "text": ..., "bbox": [x, y, w, h]}]`` in film pixels, never labelled.
    """
    h, w = film.shape
    count = int(rng.choice([0, 1, 2, 3], p=[0.2, 0.45, 0.25, 0.1])) if count is None else count
    out: list[dict] = []
    for _ in range(count):
        style = str(rng.choice(STYLES, p=STYLE_WEIGHTS))
        letter_px = max(7.0, rng.uniform(*LETTER_MM) / spacing)
        if style == "ruler":
            text, canvas = "ruler", _ruler_canvas(rng, spacing)
        else:
            text = str(rng.choice(SIDE_LETTERS if style == "side" else OTHER_TEXT))
            canvas = _text_canvas(rng, text, letter_px)
        canvas = _pose(rng, canvas, style)
        mw, mh = max(1, round(canvas.shape[1] / OVERSAMPLE)), max(1, round(canvas.shape[0] / OVERSAMPLE))
        if mw >= w - 4 or mh >= h - 4:
            continue
        alpha = cv2.resize(canvas, (mw, mh), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        lead = rng.random() < 0.75  # lead on the cassette: blurred like the film; else a digital overlay
        if lead:
            alpha = cv2.GaussianBlur(np.pad(alpha, 3), (0, 0), blur_px)
            mh, mw = alpha.shape
        for _ in range(10):  # mostly near the film's edges and corners, sometimes anywhere
            edge = rng.random() < 0.8
            fx = rng.choice([rng.uniform(0.0, 0.15), rng.uniform(0.85, 1.0)]) if edge else rng.uniform(0, 1)
            fy = rng.uniform(0, 1) if edge and rng.random() < 0.5 else rng.choice([rng.uniform(0, 0.15), rng.uniform(0.85, 1)])
            x0, y0 = int(fx * (w - mw)), int(fy * (h - mh))
            if not _overlaps((x0, y0, mw, mh), avoid):
                break
        else:
            continue
        value = rng.uniform(0.88, 1.0) if lead else 1.0
        roi = film[y0:y0 + mh, x0:x0 + mw]
        roi += np.clip(alpha * 1.3, 0, 1) * np.maximum(value - roi, 0)  # lead stops the beam: near white
        ys, xs = np.nonzero(alpha > 0.1)
        if len(xs):
            box = [float(x0 + xs.min()), float(y0 + ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            out.append({"kind": "ruler" if style == "ruler" else "marker", "text": text, "bbox": box})
            avoid = [*avoid, box]
    return out
