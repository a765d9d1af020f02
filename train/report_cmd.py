"""``calcidet report``: one self-contained HTML page over a ``calcidet detect`` output folder.

    calcidet detect films/ --checkpoint CKPT --output results/ --overlays
    calcidet report results/ [--gt annotations.json] [--out results/report.html]

The page (``train.report_html``) shows the films sorted by their highest confidence, with detect's
overlay PNGs (linked relatively, so keep the page beside the run folder) and finding sizes in mm, a
table of every image, and filters (a confidence slider, films with a finding only, out-of-scope and
failed files). With ``--gt``, detections at the run's operating threshold are matched to the lesions
by the FROC rule (``model.metrics.match_lesions``, IoU >= ``--hit-iou``): misses and false positives
are shown side by side, with the FROC and precision-recall plots over every box detect kept
(``train.report_plots``, embedded). Where the GT records the look-alikes ``calcidet synth`` inserted
(``images[].distractors``), each false positive names the one it lies on and a table counts the
look-alikes flagged at the threshold (``model.lookalikes``, as ``calcidet evaluate`` counts them). Image names are matched to the GT as ``calcidet evaluate`` does.
Exit status: 0 written, 2 the run folder or the GT cannot be used.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calcidet.data.coco import CocoFormatError, load_coco
from calcidet.model.lookalikes import lies_on, lookalike_report, recorded_lookalikes
from calcidet.model.metrics import (
    FALSE_POSITIVE,
    ImageResult,
    detection_metrics,
    froc_curve,
    match_lesions,
    pr_curve,
)
from calcidet.train.evaluate_cmd import build_results, match_names, read_detections
from calcidet.train.output_files import safe_output_path
from calcidet.train.report_html import render_report
from calcidet.train.report_plots import plot_froc, plot_pr


@dataclass
class Finding:
    """One box of ``detections.csv`` (original pixels); mm sizes are None without pixel spacing."""

    box: tuple[float, float, float, float]
    confidence: float
    label: str
    width_mm: float | None
    height_mm: float | None
    above_threshold: bool


@dataclass
class Film:
    """One row of ``images.csv``, its findings (highest confidence first) and its overlay, if any."""

    name: str
    row: dict[str, str]
    findings: list[Finding] = field(default_factory=list)
    overlay: Path | None = None

    @property
    def max_confidence(self) -> float:
        return max((f.confidence for f in self.findings), default=0.0)

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) in original pixels, None for a file that failed."""
        w, h = self.row.get("width"), self.row.get("height")
        return (int(w), int(h)) if w and h else None


@dataclass
class Review:
    """One GT image at the operating threshold: its lesions (box, found?) and the false positives
    (box, score, the kind of recorded look-alike it lies on or None)."""

    film: str  # name in the run
    size: tuple[int, int]  # (width, height) from the GT
    lesions: list[tuple[list[float], bool]]
    false_positives: list[tuple[list[float], float, str | None]]


@dataclass
class GroundTruthSummary:
    gt_path: str
    hit_iou: float
    reviews: list[Review]
    metrics: dict[str, float]
    plots: dict[str, str]  # title -> PNG as a data: URI
    notes: list[str]
    lookalikes: dict | None = None  # model.lookalikes.lookalike_report at the threshold, where the GT records them


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="calcidet report", description=__doc__.split("\n")[0].replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("run_dir", metavar="RUN_DIR", help="output folder of calcidet detect")
    p.add_argument("--gt", default=None, metavar="ANNOTATIONS_JSON", help="COCO ground truth: misses, FPs, FROC")
    p.add_argument("--out", default=None, help="HTML file to write (default: RUN_DIR/report.html)")
    p.add_argument("--hit-iou", type=float, default=0.3, help="IoU at which a detection finds a lesion")
    p.add_argument("--gallery", type=int, default=200, help="films shown as pictures, highest confidence first")
    return p.parse_args(argv)


def _float(text: str) -> float | None:
    return float(text) if text else None


def read_run(run_dir: Path) -> tuple[dict, list[Film]]:
    """run.json and the films of ``images.csv`` with their findings and overlays, highest confidence first."""
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    with open(run_dir / "images.csv", newline="", encoding="utf-8") as f:
        films = {row["image"]: Film(row["image"], row) for row in csv.DictReader(f)}
    with open(run_dir / "detections.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            films[row["image"]].findings.append(Finding(
                tuple(float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max")), float(row["confidence"]),
                row["label"], _float(row["width_mm"]), _float(row["height_mm"]), row["above_threshold"] == "true"))
    for film in films.values():
        film.findings.sort(key=lambda f: -f.confidence)
        overlay = safe_output_path(run_dir / "overlays", film.name, ".png")  # where detect writes it
        film.overlay = overlay if overlay.is_file() else None
    return run, sorted(films.values(), key=lambda f: (-f.max_confidence, f.name))


def review_image(result: ImageResult, threshold: float, hit_iou: float) -> tuple[list[bool], list[int]]:
    """Which lesions a box at the threshold finds, and which of those boxes are false positives.

    Returns:
        (found flag per GT lesion, indices into ``result.boxes`` of the false positives).
    """
    keep = np.flatnonzero(result.scores >= threshold)
    kept = ImageResult(result.image_id, result.gt_boxes, result.boxes[keep], result.scores[keep],
                       ignore_boxes=result.ignore_boxes)  # a box in an ignore region is no false positive
    _, lesion = match_lesions(kept, hit_iou)
    order = keep[np.argsort(-kept.scores, kind="stable")]  # match_lesions' order, as indices into result
    found = [bool(np.any(lesion == j)) for j in range(len(result.gt_boxes))]
    return found, [int(i) for i in order[lesion == FALSE_POSITIVE]]


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def review_against_gt(gt: str, run_dir: Path, threshold: float, hit_iou: float) -> GroundTruthSummary:
    """Misses and false positives at ``threshold``; metrics and plots over every box detect kept.

    Raises:
        CocoFormatError, OSError, ValueError: the GT or the run cannot be read or matched.
    """
    index = load_coco(gt, check_files=False)
    found = read_detections(run_dir / "detections.csv")
    with open(run_dir / "images.csv", newline="", encoding="utf-8") as f:
        status = {row["image"]: row["status"] for row in csv.DictReader(f)}
    to_gt, rule = match_names([im.file_name for im in index.images], sorted(status))
    to_gt = {p: g for p, g in to_gt.items() if status[p] == "ok"}  # failed files have no result to judge
    if not to_gt:
        raise ValueError(f"no readable image of {run_dir} matches a file_name in {gt}")
    results = build_results(index, sorted(to_gt.values()), found, to_gt)
    by_id = {im.id: im for im in index.images}
    to_run = {g: p for p, g in to_gt.items()}
    lookalikes = recorded_lookalikes(json.loads(Path(gt).read_text(encoding="utf-8")))
    reviews = []
    for r in results:
        hits, fps = review_image(r, threshold, hit_iou)
        im = by_id[r.image_id]
        items = lookalikes.get(r.image_id, [])
        on = [items[k][0] if k >= 0 else None for k in lies_on(r.boxes[fps], items)]
        reviews.append(Review(to_run[im.file_name], (im.width, im.height),
                              [(b.tolist(), h) for b, h in zip(r.gt_boxes, hits)],
                              [(r.boxes[i].tolist(), float(r.scores[i]), kind) for i, kind in zip(fps, on)]))
    recorded = any(r.image_id in lookalikes for r in results)
    flagged = lookalike_report(results, lookalikes, {"operating": threshold}, hit_iou) if recorded else None
    metrics = detection_metrics(results, hit_iou)
    curve = froc_curve(results, hit_iou)
    recall, precision = pr_curve(results)
    with tempfile.TemporaryDirectory() as tmp:  # the plotting code writes files; the page embeds them
        plot_froc(curve, Path(tmp) / "froc.png")
        plot_pr(recall, precision, Path(tmp) / "pr.png", metrics["map_50"])
        plots = {"FROC": _png_uri(Path(tmp) / "froc.png"), "Precision-recall": _png_uri(Path(tmp) / "pr.png")}
    notes = [f"names matched: {rule} ({len(to_gt)} readable images of the run are in the ground truth)"]
    if len(index.images) > len(to_gt):
        notes.append(f"{len(index.images) - len(to_gt)} GT images are not in the run or failed to read: left out")
    return GroundTruthSummary(str(gt), hit_iou, reviews, metrics, plots, notes, flagged)


def main(argv: list[str] | None = None) -> int:
    """Run ``calcidet report``; returns the exit status (0 written, 2 unusable inputs)."""
    args = parse_args(argv)
    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / "report.html"
    try:
        run, films = read_run(run_dir)
    except (OSError, ValueError, KeyError) as exc:  # KeyError: a CSV without the columns detect writes
        print(f"calcidet report: {run_dir} is not a complete calcidet detect output: {exc!r}", file=sys.stderr)
        return 2
    threshold = float(run["threshold"])
    review = None
    if args.gt:
        try:
            review = review_against_gt(args.gt, run_dir, threshold, args.hit_iou)
        except (CocoFormatError, OSError, ValueError) as exc:
            print(f"calcidet report: {exc}", file=sys.stderr)
            return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(run, films, review, run_dir, out.parent, args.gallery), encoding="utf-8")
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
