"""``calcidet evaluate``: score ``calcidet detect``'s CSV against COCO ground truth.

    calcidet detect synth/test/images --checkpoint CKPT --output results/
    calcidet evaluate --gt synth/test/annotations.json --pred results/detections.csv --out report/

Metrics come from ``model.metrics`` (the code validation logs with): COCO AP and AP50 (pycocotools),
lesion-level FROC at 1/8..8 false positives per image over all images (negatives included) and its
CPM, image-level AUROC, each with a bootstrap 95% interval over images. Ignore regions (COCO
``iscrowd: 1``) are honoured: a detection in one is neither a hit nor a false positive. Writes
``report/metrics.json``, ``report/froc.png`` and ``report/pr_curve.png`` and prints a table.

Breakdown (``model.breakdown``): ``--by joint view size attributes.pattern`` adds one table per
field: image fields (keys of the COCO ``images[]``, or derived ``format``/``source``) get every
metric on their images alone; lesion fields (keys of ``annotations[]`` or their ``attributes``, or
derived ``size``/``category``) get FROC sensitivities, false positives counted over all images.
Default: ``size`` and every image field with 2..20 values; ``--by`` alone: none. With more than one
class, each class is also scored alone (``per_class`` in metrics.json).

Look-alikes (``model.lookalikes``): where the ground truth records the look-alikes ``calcidet synth``
inserts (``images[].distractors``), how many of each kind a false positive lies on, and what the false
positives lie on, at detect's operating threshold and at 1 false positive per image.

Image names: the CSV's ``image`` (relative to detect's input folder) is matched to the COCO
``file_name`` (relative to the JSON's folder) exactly, or else after dropping the leading folders that
all names on one side share (detect run on ``test/images`` against ``file_name`` ``images/x.png``),
or else where one name ends with the other (detect run on ``synth/``: ``test/images/x.png``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from calcidet.data.coco import CocoFormatError, CocoIndex, load_coco
from calcidet.model.breakdown import (
    breakdown,
    default_fields,
    field_level,
    ground_truth_fields,
    per_class_metrics,
)
from calcidet.model.lookalikes import lookalike_report, recorded_lookalikes
from calcidet.model.metrics import (
    IGNORED,
    ImageResult,
    bootstrap_detection_metrics,
    detection_metrics,
    froc_curve,
    match_lesions,
    pr_curve,
    threshold_at_fp_rate,
)
from calcidet.train.detect_writer import DETECTION_COLUMNS
from calcidet.train.report_plots import plot_froc, plot_pr

EVAL_THRESHOLD = 0.05  # detect score floor we recommend for evaluation runs (the training score floor)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="calcidet evaluate", description=__doc__.split("\n")[0].replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--gt", required=True, help="COCO annotations.json (ground truth)")
    p.add_argument("--pred", required=True, help="detections.csv written by calcidet detect")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--hit-iou", type=float, default=0.3, help="IoU at which a detection finds a lesion (FROC)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap samples for 95%% intervals (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--by", nargs="*", metavar="FIELD", default=None,
                   help="GT fields to break the metrics down by, e.g. joint view size attributes.pattern "
                        "(default: size and every image field with 2..20 values; --by alone: none)")
    return p.parse_args(argv)


def read_detections(path: Path) -> dict[str, list[tuple[list[float], float, str]]]:
    """``detections.csv`` rows grouped by image: (xyxy box, confidence, label name)."""
    found: dict[str, list[tuple[list[float], float, str]]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows, [])
        if header[:7] != DETECTION_COLUMNS[:7]:
            raise ValueError(f"{path}: expected columns {','.join(DETECTION_COLUMNS[:7])}, got {','.join(header)}")
        for row in rows:
            found[row[0]].append(([float(v) for v in row[1:5]], float(row[5]), row[6]))
    return found


def read_image_table(pred: Path) -> dict[str, dict[str, str]] | None:
    """``images.csv`` beside the detections (every image detect saw), or None if absent."""
    path = pred.with_name("images.csv")
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        return {row["image"]: row for row in csv.DictReader(f)}


def _strip_common_folders(names: list[str]) -> dict[str, str]:
    parts = [PurePosixPath(n).parts for n in names]
    common = 0
    while parts and all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    return {n: "/".join(p[common:]) for n, p in zip(names, parts, strict=True)}


def match_names(gt_names: list[str], pred_names: list[str]) -> tuple[dict[str, str], str]:
    """Map predicted names to GT names by the rule that matches the most; returns (map, rule)."""
    gt_plain = {n: n for n in gt_names}
    pred_plain = {n: n for n in pred_names}
    gt_strip, pred_strip = _strip_common_folders(gt_names), _strip_common_folders(pred_names)
    best: tuple[dict[str, str], str] = ({}, "no rule matched any name")
    for rule, gt_key, pred_key in (("exact", gt_plain, pred_plain),
                                   ("common leading folders of GT names dropped", gt_strip, pred_plain),
                                   ("common leading folders of predicted names dropped", gt_plain, pred_strip),
                                   ("common leading folders dropped on both sides", gt_strip, pred_strip)):
        by_key = {k: g for g, k in gt_key.items()}
        if len(by_key) != len(gt_key):
            continue  # the rule would merge two GT images
        mapping = {p: by_key[k] for p, k in pred_key.items() if k in by_key}
        if len(mapping) > len(best[0]):
            best = (mapping, rule)
    suffix = _match_suffixes(gt_names, pred_names)  # e.g. detect run on synth/ (test/images/x.png)
    return (suffix, "one name ends with the other, unambiguously") if len(suffix) > len(best[0]) else best


def _match_suffixes(gt_names: list[str], pred_names: list[str]) -> dict[str, str]:
    by_file: dict[str, list[str]] = defaultdict(list)
    for g in gt_names:
        by_file[PurePosixPath(g).name].append(g)
    mapping = {}
    for p in pred_names:
        hits = [g for g in by_file.get(PurePosixPath(p).name, [])
                if p == g or p.endswith("/" + g) or g.endswith("/" + p)]
        if len(hits) == 1:
            mapping[p] = hits[0]
    if len(set(mapping.values())) != len(mapping):
        return {}  # two predicted images would share one GT image
    return mapping


def _clean(value: Any) -> Any:
    """NaN -> None recursively: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def build_results(index: CocoIndex, names: list[str], found: dict[str, list], to_gt: dict[str, str]) -> list[ImageResult]:
    """ImageResults of the GT images in ``names`` (GT file names), detections from ``found``."""
    by_gt = defaultdict(list)
    for pred_name, rows in found.items():
        if pred_name in to_gt:
            by_gt[to_gt[pred_name]].extend(rows)
    wanted = set(names)
    results = []
    for im in index.images:
        if im.file_name not in wanted:
            continue
        rows = by_gt[im.file_name]
        unknown = {label for _, _, label in rows} - set(index.class_names)
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} are not GT classes {index.class_names}")
        results.append(ImageResult(
            image_id=im.id, gt_boxes=im.boxes, gt_labels=im.labels,
            ignore_boxes=im.ignore_boxes, ignore_labels=im.ignore_labels,
            boxes=np.asarray([b for b, _, _ in rows], np.float32).reshape(-1, 4),
            scores=np.asarray([s for _, s, _ in rows], np.float32),
            labels=np.asarray([index.class_names.index(lab) + 1 for _, _, lab in rows], np.int64)))
    return results


def _print_table(metrics: dict[str, float], ci: dict[str, tuple[float, float]]) -> None:
    print(f"{'metric':<18}{'value':>8}   95% CI")
    for key, value in metrics.items():
        low, high = ci.get(key, (math.nan, math.nan))
        interval = f"[{low:.3f}, {high:.3f}]" if math.isfinite(low) else "-"
        print(f"{key:<18}{value:>8.3f}   {interval}")


# Columns of the breakdown tables: an image group has every metric, a lesion group only the FROC.
_GROUP_COLUMNS = {
    "image": ("n_images", "n_lesions", "map_50", "map", "froc_cpm", "froc_sens@1fp", "auroc"),
    "lesion": ("n_images", "n_lesions", "froc_sens@0.25fp", "froc_sens@1fp", "froc_sens@4fp", "froc_cpm"),
    "class": ("n_lesions", "map_50", "map", "froc_sens@1fp", "froc_cpm"),
}


def _print_groups(title: str, groups: dict[str, dict[str, float]], level: str) -> None:
    columns = _GROUP_COLUMNS[level]
    width = max([len(title), *map(len, groups)]) + 2
    print(f"\n{title:<{width}}" + "".join(f"{c.replace('froc_sens', 'sens'):>12}" for c in columns))
    for value, m in groups.items():
        cells = (f"{m[c]:>12d}" if isinstance(m[c], int) else f"{m[c]:>12.3f}" if math.isfinite(m[c]) else f"{'-':>12}"
                 for c in columns)
        print(f"{value:<{width}}" + "".join(cells))


_THRESHOLD_NAMES = {"operating": "operating", "1fp": "1 FP/image"}


def _print_lookalikes(report: dict[str, Any]) -> None:
    names = list(report["thresholds"])
    heads = [f"flagged >= {report['thresholds'][n]:.3f} ({_THRESHOLD_NAMES[n]})" for n in names]
    width = max(len("look-alikes [recorded]"), *map(len, report["recorded"])) + 2
    print(f"\n{'look-alikes [recorded]':<{width}}{'recorded':>10}" + "".join(f"{h:>32}" for h in heads))
    for kind, n in report["recorded"].items():
        cells = (f"{report['flagged'][name][kind]} ({report['flagged'][name][kind] / n:.0%})" for name in names)
        print(f"{kind:<{width}}{n:>10}" + "".join(f"{c:>32}" for c in cells))
    for name in names:
        on = report["false_positives_on"][name]
        print(f"false positives >= {report['thresholds'][name]:.3f} ({_THRESHOLD_NAMES[name]}): {sum(on.values())}, "
              "on " + (", ".join(f"{kind} {n}" for kind, n in on.items()) or "-")
              + " (none: on no recorded look-alike)")


def main(argv: list[str] | None = None) -> int:
    """Run ``calcidet evaluate``; returns the exit status (0 ok, 2 unusable inputs)."""
    args = parse_args(argv)
    pred, out = Path(args.pred), Path(args.out)
    try:
        index = load_coco(args.gt, check_files=False)
        found = read_detections(pred)
    except (CocoFormatError, OSError, ValueError) as exc:
        print(f"calcidet evaluate: {exc}", file=sys.stderr)
        return 2
    table = read_image_table(pred)
    run_file = pred.with_name("run.json")
    run = json.loads(run_file.read_text()) if run_file.is_file() else {}
    # Every row counts, above_threshold or not: the lowest score detect kept is where the curves stop
    # (an older run.json has no score_floor: that detect kept nothing below its threshold).
    threshold = run.get("score_floor", run.get("threshold"))
    pred_names = sorted(table) if table is not None else sorted(found)
    gt_names = [im.file_name for im in index.images]
    to_gt, rule = match_names(gt_names, pred_names)
    if not to_gt:
        print(f"calcidet evaluate: no image of {pred} matches a file_name in {args.gt} "
              f"(e.g. {pred_names[:3]} vs {gt_names[:3]})", file=sys.stderr)
        return 2
    unmatched = [n for n in pred_names if n not in to_gt]
    failed = [to_gt[n] for n in to_gt if table is not None and table[n]["status"] != "ok"]
    matched_gt = set(to_gt.values())
    not_run = [g for g in gt_names if g not in matched_gt] if table is not None else []
    evaluated = [g for g in gt_names if g not in set(failed) | set(not_run)]
    try:
        results = build_results(index, evaluated, found, to_gt)
    except ValueError as exc:
        print(f"calcidet evaluate: {exc}", file=sys.stderr)
        return 2
    # load_coco keeps no annotation attributes, so the breakdown reads the (now validated) records
    raw_gt = json.loads(Path(args.gt).read_text(encoding="utf-8"))
    fields = ground_truth_fields(raw_gt, [r.image_id for r in results],
                                 {im.id: im.annotation_ids for im in index.images}, index.class_names)
    by = default_fields(fields) if args.by is None else list(dict.fromkeys(args.by))
    unknown = [name for name in by if field_level(fields, name) is None]
    if unknown:
        print(f"calcidet evaluate: no evaluated image or annotation of {args.gt} has the field(s) {unknown}",
              file=sys.stderr)
        return 2

    metrics = detection_metrics(results, args.hit_iou)
    ignore_regions = int(sum(len(r.ignore_boxes) for r in results if r.ignore_boxes is not None))
    # matching again only where there is something to count: most ground truth has no ignore region
    ignored = int(sum((match_lesions(r, args.hit_iou)[1] == IGNORED).sum() for r in results
                      if r.ignore_boxes is not None and len(r.ignore_boxes)))
    curve = froc_curve(results, args.hit_iou)
    recall, precision = pr_curve(results)
    ci = bootstrap_detection_metrics(results, args.hit_iou, args.bootstrap, args.seed) if args.bootstrap > 0 else {}
    notes = [f"names matched: {rule} ({len(to_gt)} of {len(pred_names)} predicted images)"]
    if threshold is not None:
        notes.append(f"detect kept detections scoring >= {threshold:g}: curves and AP see nothing below it"
                     + ("" if threshold <= EVAL_THRESHOLD else
                        f"; for evaluation rerun detect with --score-floor {EVAL_THRESHOLD}"))
    if unmatched:
        notes.append(f"{len(unmatched)} images of the detect run are not in the ground truth (ignored), e.g. {unmatched[:5]}")
    if failed:
        notes.append(f"{len(failed)} images failed in detect and are left out, e.g. {failed[:5]}")
    if not_run:
        notes.append(f"{len(not_run)} GT images were not in the detect run and are left out, e.g. {not_run[:5]}")
    if ignore_regions:
        notes.append(f"{ignore_regions} ignore regions (iscrowd: 1): {ignored} detections in them count "
                     "neither as hits nor as false positives")
    if table is None:
        notes.append("no images.csv beside the CSV: GT images without rows are taken as having no detections")

    out.mkdir(parents=True, exist_ok=True)
    ci_at_rates = {r: ci[f"froc_sens@{r:g}fp"] for r in curve.at_rates if f"froc_sens@{r:g}fp" in ci}
    plot_froc(curve, out / "froc.png", ci_at_rates or None)
    plot_pr(recall, precision, out / "pr_curve.png", metrics["map_50"])
    report = {
        "metrics": metrics, "ci95": ci, "bootstrap_samples": args.bootstrap, "hit_iou": args.hit_iou,
        "detect_threshold": threshold, "notes": notes,
        "counts": {"gt_images": len(gt_names), "evaluated_images": len(results),
                   "positive_images": sum(len(r.gt_boxes) > 0 for r in results),
                   "lesions": curve.num_lesions, "detections": int(sum(len(r.scores) for r in results)),
                   "ignore_regions": ignore_regions, "ignored_detections": ignored,
                   "failed_in_detect": len(failed), "not_in_detect_run": len(not_run),
                   "unmatched_predictions": len(unmatched)},
        "unmatched_predictions": unmatched, "failed_in_detect": failed, "not_in_detect_run": not_run,
        "froc": {"fp_per_image": curve.fp_per_image.tolist(), "sensitivity": curve.sensitivity.tolist(),
                 "thresholds": curve.thresholds.tolist()},
        "pr_curve": {"recall": recall.tolist(), "precision": precision.tolist()},
        "inputs": {"gt": str(args.gt), "pred": str(pred)},
        "breakdown": breakdown(results, fields, by, args.hit_iou),
        "breakdown_level": {name: field_level(fields, name) for name in by},
    }
    lookalikes = recorded_lookalikes(raw_gt)
    if any(r.image_id in lookalikes for r in results):
        at = {"1fp": threshold_at_fp_rate(curve, 1.0)}
        if run.get("threshold") is not None:
            at = {"operating": float(run["threshold"]), **at}
        report["lookalikes"] = lookalike_report(results, lookalikes, at, args.hit_iou)
    if len(index.class_names) > 1:
        report["per_class"] = per_class_metrics(results, index.class_names, args.hit_iou)
    (out / "metrics.json").write_text(json.dumps(_clean(report), indent=2))
    c = report["counts"]
    print(f"{c['evaluated_images']} images ({c['positive_images']} with lesions, {c['lesions']} lesions), "
          f"{c['detections']} detections, FROC hit IoU {args.hit_iou}, {args.bootstrap} bootstrap samples")
    _print_table(metrics, ci)
    for name, groups in report["breakdown"].items():
        level = report["breakdown_level"][name]
        _print_groups(f"by {name} [{level}s]", groups, level)
    if "per_class" in report:
        _print_groups("per class", report["per_class"], "class")
    if "lookalikes" in report:
        _print_lookalikes(report["lookalikes"])
    for note in notes:
        print(f"note: {note}")
    print(f"report: {out / 'metrics.json'}, {out / 'froc.png'}, {out / 'pr_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
