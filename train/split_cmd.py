"""``calcidet split``: one COCO file into train.json, val.json and test.json, no patient in two of them.

    calcidet split to_label/labelled.json --out split/
    calcidet split labelled.json --out split/ --fractions 0.8 0.2 --seed 1    # train and val only

Images are grouped by ``patient_id`` (from ``export-images``, carried over by ``convert``), else by
``study_instance_uid``, else each image is its own patient (see ``data.split``). ``--fractions`` are
shares of images for train, val and test, in that order; patients with boxes and without are split
separately, so each split keeps its share of positives. The input is checked with
``data.coco.load_coco`` first. ``file_name``s are rewritten relative to ``--out``, so the written
files load from there (``--data.train_json split/train.json``) without ``--data.image_root``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path, PurePath
from typing import Any

from calcidet.data.coco import CocoFormatError, load_coco
from calcidet.data.split import patient_key, split_by_patient
from calcidet.train.output_files import atomic_write_text

SPLIT_NAMES = ("train", "val", "test")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="calcidet split", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("coco", metavar="COCO_JSON", help="the labelled COCO file to split")
    p.add_argument("--out", required=True, help="folder for train.json, val.json (and test.json)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.7, 0.15, 0.15], metavar="F",
                   help="shares of images for train, val[, test]; they sum to 1 (default: 0.7 0.15 0.15)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same split (default 0)")
    p.add_argument("--image-root", help="folder the file_names are relative to (default: the JSON's folder)")
    args = p.parse_args(argv)
    if len(args.fractions) not in (2, 3):
        p.error(f"--fractions takes 2 (train val) or 3 (train val test) numbers, got {len(args.fractions)}")
    return args


def rebase_file_name(file_name: str, root: Path, out: Path) -> str:
    """``file_name`` (relative to ``root``) as a POSIX path relative to ``out``; absolute names stay."""
    if PurePath(file_name).is_absolute() or root.resolve() == out.resolve():
        return file_name
    return Path(os.path.relpath(root.resolve() / file_name, out.resolve())).as_posix()


def summary(coco: dict[str, Any]) -> str:
    patients = {patient_key(im) for im in coco["images"]}
    boxes = [a for a in coco["annotations"] if a.get("iscrowd", 0) != 1]
    positives = len({a["image_id"] for a in boxes})
    return (f"{len(coco['images'])} images of {len(patients)} patient(s), {positives} with boxes "
            f"({len(boxes)} boxes)")


def main(argv: list[str] | None = None) -> int:
    """Run ``calcidet split``; 0 ok, 1 problems in the COCO file (each listed), 2 bad arguments."""
    args = parse_args(argv)
    src, out = Path(args.coco), Path(args.out)
    root = Path(args.image_root) if args.image_root else src.parent
    fractions = dict(zip(SPLIT_NAMES, args.fractions))
    targets = {name: out / f"{name}.json" for name in fractions}
    if any(t.resolve() == src.resolve() for t in targets.values()):
        print(f"calcidet split: {src} would be overwritten by a split: choose another --out", file=sys.stderr)
        return 2
    try:
        load_coco(src, root)
    except CocoFormatError as exc:
        print(f"calcidet split: nothing written; {exc}", file=sys.stderr)
        return 1
    try:
        splits = split_by_patient(json.loads(src.read_text(encoding="utf-8")), fractions, args.seed)
    except ValueError as exc:
        print(f"calcidet split: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for name, coco in splits.items():
        coco["images"] = [im | {"file_name": rebase_file_name(im["file_name"], root, out)} for im in coco["images"]]
        atomic_write_text(targets[name], json.dumps(coco, indent=1))
    for name, path in targets.items():  # the point of rebasing: each file finds its images on its own
        try:
            load_coco(path)
        except CocoFormatError as exc:
            print(f"calcidet split: wrote {path}, but it does not load: {exc}", file=sys.stderr)
            return 1
        print(f"calcidet split: {path}: {summary(splits[name])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
