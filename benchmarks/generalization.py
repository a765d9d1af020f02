"""Score one checkpoint on the synthetic test split and on the held-out real-film test set, side by side.

    python benchmarks/generalization.py --checkpoint demo_out/runs/checkpoints/last.ckpt \
        [--set synthetic=demo_out/synth/test] [--set real=runs/real_film_testset] [--out runs/generalization]
        [--detections synthetic=demo_out/detect]

Each ``--set NAME=FOLDER`` is a folder holding ``annotations.json`` and ``images/`` (what ``calcidet
synth`` and ``benchmarks/real_film_testset.py`` write). For each set this runs ``calcidet detect`` over
``images/`` (every box down to the score floor), or reuses a detect folder of the same checkpoint given
as ``--detections NAME=DIR``, then ``calcidet evaluate`` broken down by lesion size, and prints
one row: AP50, CPM, image AUROC, and lesion sensitivity at 1 false positive per image overall, per
size bucket (small < 8 % of the film's short side) and per visibility bucket of masses inserted into
real films (``data.synth_insert.VISIBILITY_BUCKETS``: faint = lost in the bone's structure), and the
share of the inserted look-alikes (markers included) that a false positive lies on at 1 false
positive per image (``model.lookalikes``; ``report/metrics.json`` has it per kind). Sets
whose folder is missing are skipped with a note (the real-film set needs ``../shared``). The reports
stay under ``--out/NAME/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from calcidet.model.inference import sha256_file  # noqa: E402
from calcidet.train.detect_cmd import main as detect_main  # noqa: E402
from calcidet.train.evaluate_cmd import main as evaluate_main  # noqa: E402

DEFAULT_SETS = ("synthetic=demo_out/synth/test", "real=runs/real_film_testset")
COLUMNS = ("set", "images", "lesions", "AP50", "CPM", "AUROC", "sens@1FP", "small", "medium", "large",
           "faint", "subtle", "clear", "look-alikes", "detect s")


def _reused(det: Path, checkpoint: str) -> float:
    """Seconds the detect run in ``det`` took; it must come from ``checkpoint``."""
    run = json.loads((det / "run.json").read_text())
    if run["checkpoint"]["sha256"] != sha256_file(checkpoint):
        raise SystemExit(f"{det} was made with {run['checkpoint']['path']}, not {checkpoint}")
    return float(run.get("timing", {}).get("total_s") or float("nan"))


def _score(name: str, folder: Path, checkpoint: str, out: Path, score_floor: float,
           extra: list[str], reuse: Path | None = None) -> dict[str, object] | None:
    gt = folder / "annotations.json"
    if not gt.is_file():
        print(f"{name}: skipped, no {gt}")
        return None
    det, report = reuse or out / name / "detect", out / name / "report"
    start = time.perf_counter()
    if reuse is not None:
        seconds = _reused(det, checkpoint)
    elif detect_main([str(folder / "images"), "--checkpoint", checkpoint, "--output", str(det),
                      "--score-floor", str(score_floor), "--overwrite", *extra]) != 0:
        raise SystemExit(f"{name}: detect failed")
    else:
        seconds = time.perf_counter() - start
    # Visibility exists on masses inserted into real films only; evaluate refuses a field no record has.
    graded = any("visibility" in a.get("attributes", {}) for a in json.loads(gt.read_text())["annotations"])
    by = ["size", "joint"] + (["attributes.visibility"] if graded else [])
    if evaluate_main(["--gt", str(gt), "--pred", str(det / "detections.csv"), "--out", str(report),
                      "--bootstrap", "0", "--by", *by]) != 0:
        raise SystemExit(f"{name}: evaluate failed")
    full = json.loads((report / "metrics.json").read_text())
    m, sizes = full["metrics"], full["breakdown"]["size"]
    row: dict[str, object] = {
        "set": name, "images": full["counts"]["evaluated_images"], "lesions": full["counts"]["lesions"],
        "AP50": m["map_50"], "CPM": m["froc_cpm"], "AUROC": m["auroc"], "sens@1FP": m["froc_sens@1fp"],
        "detect s": seconds,
    }
    for bucket in ("small", "medium", "large"):
        row[bucket] = sizes.get(bucket, {}).get("froc_sens@1fp")
    groups = full["breakdown"].get("attributes.visibility", {})  # absent on sets made before conspicuity
    for bucket in ("faint", "subtle", "clear"):
        row[bucket] = groups.get(bucket, {}).get("froc_sens@1fp")
    if "lookalikes" in full:
        recorded = sum(full["lookalikes"]["recorded"].values())
        row["look-alikes"] = sum(full["lookalikes"]["flagged"]["1fp"].values()) / recorded
    return row


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if v <= 1.0 else f"{v:.0f}"
    return "-" if v is None else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--set", action="append", dest="sets", metavar="NAME=FOLDER",
                    help=f"test set (repeatable; default: {' '.join(DEFAULT_SETS)})")
    ap.add_argument("--out", default=str(ROOT / "runs" / "generalization"))
    ap.add_argument("--detections", action="append", default=[], metavar="NAME=DIR",
                    help="reuse this detect output of the same checkpoint for set NAME (repeatable)")
    ap.add_argument("--score-floor", type=float, default=0.05, help="detect's score floor (default 0.05)")
    ap.add_argument("--image-size", type=int, help="detect at this longest side (default: the training size)")
    ap.add_argument("--tta", action="store_true", help="detect with flipped inference too")
    ap.add_argument("--extra-sizes", type=int, nargs="+", default=[], help="detect at these sizes too (merged)")
    ap.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                    help="detect's backend (onnxruntime: the same boxes, ~1.8x faster on a CPU)")
    args = ap.parse_args(argv)
    rows = []
    for spec in args.sets or DEFAULT_SETS:
        name, _, folder = spec.partition("=")
        extra = (["--image-size", str(args.image_size)] if args.image_size else []) + (["--tta"] if args.tta else [])
        extra += ["--extra-sizes", *map(str, args.extra_sizes)] if args.extra_sizes else []
        extra += ["--backend", args.backend] if args.backend != "torch" else []
        reuse = dict(d.split("=", 1) for d in args.detections).get(name)
        row = _score(name, Path(folder), args.checkpoint, Path(args.out), args.score_floor, extra,
                     Path(reuse) if reuse else None)
        if row:
            rows.append(row)
    print(f"\ncheckpoint: {args.checkpoint}")
    print(" | ".join(COLUMNS))
    for row in rows:
        print(" | ".join(_fmt(row.get(c)) for c in COLUMNS))
    (Path(args.out) / "summary.json").write_text(json.dumps({"checkpoint": args.checkpoint, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
