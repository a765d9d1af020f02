"""``calcidet detect``: find calcinosis on every radiograph under one or more folders.

    calcidet detect scans/ --checkpoint runs/demo/checkpoints/last.ckpt --output results/
    calcidet detect a/ b/ x.dcm --checkpoint CKPT --output results/ --overlays --threshold 0.4
    calcidet detect test/images --checkpoint CKPT --output results/ --gt test/annotations.json

Films out of calcidet's scope (chest, abdomen, skull, ... by their DICOM tags; see ``data.scope``)
are listed but not searched unless ``--all-films`` is given.

This file is the command: its arguments, its checks and the order of its steps. Inputs are found
by ``data.folders.collect_inputs``. Files are decoded in DataLoader workers while the network runs
(``train.detect_predict``: Lightning ``Trainer.predict``; with ``--devices N`` on GPUs each rank
journals its share and rank 0 merges). Results are journaled as they come (``train.detect_journal``),
so an interrupted run picks up where it stopped when rerun with the same arguments; the final files
are written at the end (see ``train.detect_writer`` for their layout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

from calcidet.data.dataset import FolderDataset
from calcidet.data.folders import collect_inputs
from calcidet.model.checkpoint import CheckpointError
from calcidet.model.film_check import REFERENCE
from calcidet.model.inference import (
    DEFAULT_SCORE_FLOOR,
    DEFAULT_THRESHOLD,
    CalcinosisPredictor,
    sha256_file,
)
from calcidet.model.intended_use import intended_use
from calcidet.train import detect_journal, detect_writer
from calcidet.train.detect_coco import GroundTruth, GroundTruthError, assign_ids, load_ground_truth
from calcidet.train.detect_predict import (
    RadiographBatches,
    onnx_runtime,
    pending_batches,
    run_predict,
)
from calcidet.train.output_files import OutputWriteError, atomic_write_text

OVERLAY_SIZE = 1024  # longest side of overlay PNGs: enough to see a 5 mm mass on a full film

EPILOG = f"""\
image names: the `image` column is the file's POSIX path relative to its INPUT folder (a file given
directly is named by its file name). With several INPUTs each name is prefixed with its input's
folder name (`left/knee1.png`, `right/knee1.png`); clashing names get a suffix (`images-2/...`).

threshold: default is the operating point stored in the checkpoint (the score giving the configured
false positives per image on validation), else {DEFAULT_THRESHOLD}. Every box scoring at least
--score-floor (default {DEFAULT_SCORE_FLOOR}) is written, marked above_threshold when it reaches the
threshold: overlays, images.csv counts and detections_coco.json use the threshold, `calcidet
evaluate` uses every box, and another threshold is a filter on the files, not another run.

speed: files are decoded by --num-workers processes while the network runs. Without a GPU each
worker takes a core from the network; on a 2-4 core machine --num-workers 1 is usually fastest.
--backend onnxruntime runs the network in ONNX Runtime (pip install 'calcidet[export]'): about
1.8x the images/s of torch on a 2-core CPU, same boxes (within 1 px) and scores (within 1e-3).

scope: a film whose DICOM tags name only an out-of-scope part (BodyPartExamined=CHEST, a skull,
spine, abdomen, breast or dental study) or a modality that is no plain film (CT, MR, US, NM) gets no
boxes; images.csv says why in scope_reason. Films whose tags name nothing (PNG/JPEG/TIFF) or contradict
themselves are `unknown` and searched as usual. With --image-check, a film whose tags name nothing is
judged by its pixels: an image that looks nothing like a plain radiograph (a CT/MR slice, an ultrasound
frame) is out of scope too. It cannot tell a chest film from a limb film, and it drops about 1 in 200
real limb films, so it is off unless asked for.

outputs in DIR: detections.csv, images.csv, detections.json (COCO results), detections_coco.json (COCO
dataset), run.json (written last), overlays/ (--overlays), report.html (--report) and .journal/ (resume
state; rerun the same command to finish an interrupted run). With --gt, COCO image and category ids are
the ground truth's.

exit status: 0 done (some files may have failed: images.csv says why); 1 an output file could not be
written (a full disk: free space and rerun the same command, finished images are kept); 2 bad
arguments, no input found, an unusable checkpoint or --gt, other settings in DIR, or no file readable.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="calcidet detect", description=__doc__.split("\n")[0].replace("``", ""),
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="folders (searched recursively) or files")
    p.add_argument("--checkpoint", required=True, help="calcidet checkpoint (.ckpt)")
    p.add_argument("--output", required=True, help="output folder DIR")
    p.add_argument("--threshold", type=float, default=None,
                   help="operating threshold: overlays and counts show boxes scoring at least this "
                        f"(default: the checkpoint's operating point, else {DEFAULT_THRESHOLD})")
    p.add_argument("--score-floor", type=float, default=DEFAULT_SCORE_FLOOR,
                   help=f"lowest confidence written, marked below the threshold (default {DEFAULT_SCORE_FLOOR})")
    p.add_argument("--gt", default=None, metavar="ANNOTATIONS_JSON",
                   help="COCO ground truth whose image and category ids the COCO outputs use")
    p.add_argument("--batch-size", type=int, default=4, help="images per batch and device (default 4)")
    p.add_argument("--devices", type=int, default=1, help="GPUs (or CPU processes without CUDA) to use (default 1)")
    p.add_argument("--num-workers", type=int, default=2, help="decoding processes per device (default 2)")
    p.add_argument("--overlays", action="store_true", help="also write DIR/overlays/<image>.png with boxes drawn")
    p.add_argument("--tta", action="store_true", help="add horizontally flipped inference, merged by NMS")
    p.add_argument("--image-size", type=int, default=None,
                   help="longest side the network sees (default: the size it was trained at)")
    p.add_argument("--extra-sizes", type=int, nargs="+", default=[], metavar="N",
                   help="also run the network at these longest sides and merge the boxes (multi-scale; "
                        "e.g. 576 finds more small masses on a 384 px model, at extra cost)")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                   help="what runs the network: torch (default) or ONNX Runtime on the CPU (pip install "
                        "'calcidet[export]'); decoding and NMS are the same Python code either way")
    p.add_argument("--onnx", default=None, metavar="MODEL_ONNX",
                   help="with --backend onnxruntime: the checkpoint's `calcidet export` (default: exported now)")
    p.add_argument("--report", action="store_true",
                   help="also write DIR/report.html (calcidet report; with --gt, misses and false positives too)")
    p.add_argument("--all-films", action="store_true",
                   help="search out-of-scope films too (they are still marked out_of_scope in images.csv)")
    p.add_argument("--image-check", action="store_true",
                   help="judge films without body-part tags by their pixels (model.film_check): images that "
                        "look nothing like a plain radiograph (CT/MR slices, ultrasound) are marked out_of_scope")
    p.add_argument("--overwrite", action="store_true", help="discard earlier results in DIR instead of resuming")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.devices < 1 or args.num_workers < 0:
        p.error("--batch-size and --devices must be >= 1, --num-workers >= 0")
    if not 0 <= args.score_floor <= 1:
        p.error("--score-floor must be between 0 and 1")
    return args


def _is_first_process() -> bool:
    # Lightning's DDP launcher starts ranks > 0 by rerunning this command with LOCAL_RANK set.
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def main(argv: list[str] | None = None) -> int:
    """Run ``calcidet detect``; returns the exit status (0 done, 1 an output not written, 2 unusable inputs)."""
    args = parse_args(argv)
    started = time.perf_counter()
    # Items are whole batches (see RadiographBatches), so Lightning cannot list sample indices.
    warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
    out = Path(args.output)
    try:
        files, names = collect_inputs(args.inputs, exclude=out)
    except FileNotFoundError as exc:
        print(f"calcidet detect: {exc}", file=sys.stderr)
        return 2
    if not files:
        print(f"calcidet detect: no radiographs found under {', '.join(args.inputs)}", file=sys.stderr)
        return 2
    try:
        predictor = CalcinosisPredictor.from_checkpoint(args.checkpoint, "cpu", args.threshold, args.image_size,
                                                        args.score_floor)
        predictor.extra_sizes = tuple(args.extra_sizes)
        if args.backend == "onnxruntime":
            predictor.model = onnx_runtime(predictor, args.onnx)
    except (CheckpointError, KeyError, RuntimeError, ValueError, ImportError) as exc:  # not one of ours
        print(f"calcidet detect: cannot use checkpoint {args.checkpoint}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    try:  # read now: a bad file should stop the run before the hours of inference, not after
        ground_truth = load_ground_truth(args.gt, predictor.class_names) if args.gt else None
    except GroundTruthError as exc:
        print(f"calcidet detect: {exc}", file=sys.stderr)
        return 2
    try:
        return _detect(args, predictor, files, names, ground_truth, started)
    except OutputWriteError as exc:
        print(f"calcidet detect: cannot write {exc.filename}: {exc.strerror}. Images finished so far are "
              f"kept in {out / detect_journal.JOURNAL_DIR}: make room and rerun the same command to complete "
              "the run.", file=sys.stderr)
        return 1


def _detect(args: argparse.Namespace, predictor: CalcinosisPredictor, files: list[Path], names: list[str],
            ground_truth: GroundTruth | None, started: float) -> int:
    """``main`` past its checks: run (or resume) and write the final files."""
    out = Path(args.output)
    info = predictor.checkpoint
    source = ("--threshold" if args.threshold is not None
              else "checkpoint" if info.get("operating_threshold") is not None else "default")
    # What the journal's records depend on: a rerun with other values must not mix results.
    settings = {"checkpoint_sha256": info["sha256"], "threshold": predictor.threshold,
                "score_floor": predictor.score_floor, "tta": args.tta, "image_size": predictor.image_size,
                "extra_sizes": list(predictor.extra_sizes), "all_films": args.all_films}
    if args.backend != "torch":  # only then: folders journaled before --backend existed still resume
        settings["backend"] = args.backend
    if args.image_check:
        # the reference's hash: a rebuilt reference gives other verdicts, so it starts a fresh journal
        settings["image_check"] = sha256_file(REFERENCE)[:16]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(out, exc) from exc
    journal = out / detect_journal.JOURNAL_DIR
    if _is_first_process():
        try:
            detect_journal.prepare_journal(out, settings, args.overwrite)
        except detect_journal.JournalMismatchError as exc:
            print(f"calcidet detect: {exc}", file=sys.stderr)
            return 2

    stamps = [detect_journal.file_stamp(f) for f in files]
    overlay_dir = out / "overlays" if args.overlays else None
    todo = pending_batches(names, stamps, detect_journal.read_journal(journal), args.batch_size, overlay_dir)
    processed, predict_s, threads = sum(len(b) for b in todo), 0.0, None
    if todo:
        dataset = RadiographBatches(FolderDataset(files, names, predictor.image_size), stamps, todo,
                                    OVERLAY_SIZE if args.overlays else None)
        trainer, writer = run_predict(args, predictor, dataset, journal, overlay_dir)
        if trainer.global_rank != 0:
            return 0  # rank 0 writes the final files
        predict_s, threads = writer.finished - writer.started, writer.torch_threads

    done = detect_journal.read_journal(journal)
    records = []
    for path, name, stamp in zip(files, names, stamps, strict=True):
        record = done.get(name)
        if record is None or record.get("stamp") != stamp:  # should not happen: say so in the output
            meta = {"name": name, "path": str(path), "stamp": stamp}
            record = detect_journal.image_record(meta, None, [], "no result was journaled for this file")
        records.append(record)
    ids = assign_ids(dict(zip(names, files, strict=True)), predictor.class_names, ground_truth)
    counts = detect_writer.write_final_files(records, out, predictor.threshold, ids)
    run = {
        "command": "calcidet detect", "intended_use": intended_use(info), "arguments": vars(args),
        "versions": detect_writer.package_versions(),
        "checkpoint": info, "class_names": predictor.class_names,
        "threshold": predictor.threshold, "threshold_source": source, "score_floor": predictor.score_floor,
        "tta": args.tta, "coco": {"gt": args.gt, "categories": ids.categories, "notes": ids.notes},
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch_threads": threads,
        "counts": {"images": len(records), **counts, "processed_this_run": processed,
                   "reused_from_journal": len(records) - processed},
        "timing": {"total_s": round(time.perf_counter() - started, 3), "predict_s": round(predict_s, 3),
                   "images_per_s": round(processed / predict_s, 3) if predict_s > 0 else None},
    }
    atomic_write_text(out / "run.json", json.dumps(run, indent=2, default=str))
    for note in ids.notes:
        print(f"calcidet detect: {note}")
    print(f"calcidet detect: {len(records)} images ({counts['ok']} ok, {counts['error']} failed, "
          f"{counts['out_of_scope']} out of scope{', searched' if args.all_films else ''}), "
          f"{counts['detections']} detections at threshold {predictor.threshold:g} ({source}) of "
          f"{counts['boxes']} boxes kept down to {predictor.score_floor:g}; "
          f"{processed} processed in {predict_s:.1f} s; results in {out}")
    if args.report and counts["ok"] > 0:
        from calcidet.train.report_cmd import (
            main as report_main,  # only here: detect runs without it most of the time
        )

        report_main([str(out)] + (["--gt", args.gt] if args.gt else []))
    if counts["ok"] == 0:
        reasons = sorted({r["reason"] for r in records if r["reason"]})
        print(f"calcidet detect: none of the {len(records)} files could be read or searched; images.csv lists each "
              f"with its reason (e.g. {reasons[0] if reasons else 'unknown'})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
