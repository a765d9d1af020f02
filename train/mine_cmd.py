"""``calcidet mine``: record where a model fires on no lesion, so that training shows those places more.

    calcidet detect train/images --checkpoint CKPT --output mined/ --all-films
    calcidet mine --gt train/annotations.json --pred mined/detections.csv --out train/annotations_mined.json
    calcidet fit --config configs/demo.yaml --config configs/cpu_long.yaml --model.init_from CKPT \
      --data.train_json train/annotations_mined.json --data.val_json val/annotations.json

Every detection scoring at least ``--min-score`` (default: detect's operating threshold, from its
``run.json``) that finds no lesion and lies in no ignore region (the FROC rule of ``calcidet
evaluate``, ``--hit-iou``) is a false positive; the ``--per-film`` highest of each film are written
to the film's record as ``hard_negatives`` (``[[x, y, w, h], ...]``, original pixels; regions already
there are kept). Nothing else changes: the annotations, the attributes and the images are copied as
they are, and ``file_name``s are rewritten relative to ``--out``'s folder.

The regions change no loss. Crop training (``data.crop_size``) centres ``data.hard_negative_share``
of the windows it cuts "anywhere" on one of them, so the network meets the background it confuses
(plate edges, bone ends, soft-tissue folds, look-alikes) more often than a uniform crop would
show it. Mine the films a model trained on, then train on (``--model.init_from``) or afresh. On
calcidet's own held-out real films it bought nothing measurable (README, "Hard negatives").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from calcidet.data.coco import CocoFormatError, load_coco
from calcidet.model.metrics import FALSE_POSITIVE, ImageResult, match_lesions
from calcidet.train.evaluate_cmd import (
    build_results,
    match_names,
    read_detections,
    read_image_table,
)
from calcidet.train.output_files import atomic_write_text
from calcidet.train.split_cmd import rebase_file_name

# a new region overlapping a kept one this much is the same place, not another
SAME_REGION_IOU = 0.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="calcidet mine", description=__doc__.split("\n")[0].replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--gt", required=True, help="COCO annotations.json of the films detect ran on")
    p.add_argument("--pred", required=True, help="detections.csv written by calcidet detect")
    p.add_argument("--out", required=True, help="the COCO file to write: the ground truth plus hard_negatives")
    p.add_argument("--min-score", type=float, default=None,
                   help="lowest score mined (default: detect's operating threshold from run.json)")
    p.add_argument("--per-film", type=int, default=3, help="most regions mined per film, highest scores first (default 3)")
    p.add_argument("--hit-iou", type=float, default=0.3, help="IoU at which a detection finds a lesion (default 0.3)")
    return p.parse_args(argv)


def false_positives(result: ImageResult, min_score: float, hit_iou: float, per_film: int, kept: np.ndarray) -> np.ndarray:
    """The film's highest false positives (xyxy, float32 [K, 4]) not already among ``kept``."""
    order = np.argsort(-result.scores, kind="stable")  # match_lesions' order
    scores, lesion = match_lesions(result, hit_iou)
    chosen: list[np.ndarray] = []
    for box, score, what in zip(result.boxes[order], scores, lesion, strict=True):
        if len(chosen) == per_film or score < min_score:
            break
        if what != FALSE_POSITIVE:
            continue
        others = np.concatenate([kept.reshape(-1, 4), *(c[None] for c in chosen)])
        if len(others) and box_iou(torch.as_tensor(box[None]), torch.as_tensor(others)).max() >= SAME_REGION_IOU:
            continue
        chosen.append(box.astype(np.float32))
    return np.asarray(chosen, np.float32).reshape(-1, 4)


def main(argv: list[str] | None = None) -> int:
    """Run ``calcidet mine``; 0 ok, 2 unusable inputs."""
    args = parse_args(argv)
    gt, pred, out = Path(args.gt), Path(args.pred), Path(args.out)
    if out.resolve() == gt.resolve():
        print(f"calcidet mine: --out would overwrite the ground truth {gt}: choose another file", file=sys.stderr)
        return 2
    if args.per_film < 1:
        print(f"calcidet mine: --per-film must be at least 1, got {args.per_film}", file=sys.stderr)
        return 2
    try:
        index = load_coco(gt, check_files=False)
        found = read_detections(pred)
    except (CocoFormatError, OSError, ValueError) as exc:
        print(f"calcidet mine: {exc}", file=sys.stderr)
        return 2
    run_file = pred.with_name("run.json")
    run = json.loads(run_file.read_text()) if run_file.is_file() else {}
    min_score = args.min_score if args.min_score is not None else run.get("threshold")
    if min_score is None:
        print(f"calcidet mine: {run_file} gives no operating threshold: pass --min-score", file=sys.stderr)
        return 2
    table = read_image_table(pred)
    pred_names = sorted(table) if table is not None else sorted(found)
    to_gt, rule = match_names([im.file_name for im in index.images], pred_names)
    if not to_gt:
        print(f"calcidet mine: no image of {pred} matches a file_name in {gt}", file=sys.stderr)
        return 2
    # only films detect read: a film it failed on or never saw has nothing to mine
    seen = sorted({g for p, g in to_gt.items() if table is None or table[p]["status"] == "ok"})
    results = {r.image_id: r for r in build_results(index, seen, found, to_gt)}

    raw = json.loads(gt.read_text(encoding="utf-8"))
    by_id = {im.id: im for im in index.images}
    films = regions = 0
    for rec in raw["images"]:
        im = by_id[int(rec["id"])]
        rec["file_name"] = rebase_file_name(rec["file_name"], gt.parent, out.parent)
        if im.id not in results:
            continue
        new = false_positives(results[im.id], float(min_score), args.hit_iou, args.per_film, im.hard_negatives)
        if len(new):
            films, regions = films + 1, regions + len(new)
            boxes = np.concatenate([im.hard_negatives, new])
            rec["hard_negatives"] = [[round(x1, 1), round(y1, 1), round(x2 - x1, 1), round(y2 - y1, 1)]
                                     for x1, y1, x2, y2 in boxes.tolist()]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(raw, indent=1))
    print(f"calcidet mine: {regions} hard-negative region(s) on {films} of {len(results)} films "
          f"(score >= {float(min_score):.3f}, at most {args.per_film} a film; names matched: {rule}) -> {out}")
    return 0
