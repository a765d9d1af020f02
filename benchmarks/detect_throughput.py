"""Throughput of ``calcidet detect`` end to end against the network alone, on the same images.

    python benchmarks/detect_throughput.py --checkpoint runs/demo/checkpoints/last.ckpt \\
        --images demo_out/synth/test/images --batch-size 4 --num-workers 1
    python benchmarks/detect_throughput.py --checkpoint CKPT --images DIR --backend torch onnxruntime \\
        --limit 40 --repeat 1      # eager vs ONNX Runtime (``calcidet detect --backend``), one run

End to end = the real command (``train.detect_cmd.main``): decoding in DataLoader workers, the
network, the journal and the final files. Model only = ``CalcinosisPredictor.detect_batch`` on the
same images already decoded and resized in memory, at the same batch size and all CPU threads. Their
ratio says how much of the network's speed the pipeline keeps (goal: >= 0.9, i.e. decoding hides
behind the network). The two are measured alternately ``--repeat`` times and the best of each is kept,
since other processes on a shared machine slow either one at random. With several ``--backend``s
each is measured in turn, the same way, and a table compares them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

from calcidet.data.dataset import FolderDataset  # noqa: E402
from calcidet.data.folders import collect_inputs  # noqa: E402
from calcidet.model.inference import CalcinosisPredictor  # noqa: E402
from calcidet.model.onnx_export import export_onnx, onnx_runtime_detector  # noqa: E402
from calcidet.train.detect_cmd import main as detect_main  # noqa: E402


def decoded_batches(predictor: CalcinosisPredictor, files: list[Path], names: list[str],
                    batch_size: int) -> list[list]:
    """The readable images, decoded and resized once, in batches."""
    dataset = FolderDataset(files, names, predictor.image_size)
    samples = [s for s in (dataset[i] for i in range(len(dataset))) if s[1]["error"] is None]
    return [samples[i:i + batch_size] for i in range(0, len(samples), batch_size)]


def predictor_for(backend: str, checkpoint: str, threshold: float | None, onnx_path: Path) -> CalcinosisPredictor:
    """A fresh predictor on ``backend`` (an ONNX Runtime session opens with torch's threads at first use)."""
    predictor = CalcinosisPredictor.from_checkpoint(checkpoint, "cpu", threshold)
    if backend == "onnxruntime":
        if not onnx_path.is_file():
            export_onnx(predictor.model, onnx_path, predictor.image_size)
        predictor.model = onnx_runtime_detector(predictor.model, onnx_path)
    return predictor


def model_only(predictor: CalcinosisPredictor, batches: list[list]) -> float:
    """Images/s of ``detect_batch`` alone on decoded images."""
    predictor.detect_batch([batches[0][0][0]], [batches[0][0][1]["original_size"]])  # warm-up
    start = time.perf_counter()
    for batch in batches:
        predictor.detect_batch([img for img, _ in batch], [m["original_size"] for _, m in batch])
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def end_to_end(args: argparse.Namespace, backend: str, inputs: list[str], onnx_path: Path) -> tuple[float, float, dict]:
    """(predict-loop images/s, whole-command images/s, run.json) of one ``calcidet detect`` run."""
    with tempfile.TemporaryDirectory() as out:
        argv = [*inputs, "--checkpoint", args.checkpoint, "--output", out, "--batch-size",
                str(args.batch_size), "--num-workers", str(args.num_workers), "--backend", backend]
        if backend == "onnxruntime":
            argv += ["--onnx", str(onnx_path)]
        if args.threshold is not None:
            argv += ["--threshold", str(args.threshold)]
        start = time.perf_counter()
        detect_main(argv)
        wall = time.perf_counter() - start
        run = json.loads((Path(out) / "run.json").read_text())
    return run["timing"]["images_per_s"], run["counts"]["images"] / wall, run


def measure(args: argparse.Namespace, backend: str, files: list[Path], names: list[str], inputs: list[str],
            onnx_path: Path) -> dict[str, float]:
    """Best of ``--repeat`` of each figure for one backend; prints them."""
    threads = torch.get_num_threads()  # detect gives cores to its workers; the model alone gets all
    predictor = predictor_for(backend, args.checkpoint, args.threshold, onnx_path)
    batches = decoded_batches(predictor, files, names, args.batch_size)
    loops, walls, models, shared = [], [], [], []
    for _ in range(args.repeat):  # alternating evens out load from other processes on a shared machine
        models.append(model_only(predictor_for(backend, args.checkpoint, args.threshold, onnx_path), batches))
        loop_rate, wall_rate, run = end_to_end(args, backend, inputs, onnx_path)
        loops.append(loop_rate)
        walls.append(wall_rate)
        # The model alone with the threads detect gives it (the rest of the cores decode): the
        # ratio to this says whether decoding hides behind the network, whatever the core count.
        torch.set_num_threads(run["torch_threads"])
        shared.append(model_only(predictor_for(backend, args.checkpoint, args.threshold, onnx_path), batches))
        torch.set_num_threads(threads)
    loop_rate, wall_rate, model_rate, shared_rate = max(loops), max(walls), max(models), max(shared)

    print(f"\n[{backend}] images: {len(files)} ({sum(len(b) for b in batches)} readable), batch size "
          f"{args.batch_size}, device cpu; detect: {args.num_workers} workers + {run['torch_threads']} threads; "
          f"model only: {threads} threads; best of {args.repeat}")
    print(f"end to end, predict loop (read + model + journal):  {loop_rate:8.2f} images/s  {_runs(loops)}")
    print(f"end to end, whole command (incl. start-up, files):  {wall_rate:8.2f} images/s  {_runs(walls)}")
    print(f"model only (detect_batch on decoded images):        {model_rate:8.2f} images/s  {_runs(models)}")
    print(f"model only, {run['torch_threads']} threads (as inside detect):            {shared_rate:8.2f} images/s  {_runs(shared)}")
    print(f"ratio predict loop / model only:                    {loop_rate / model_rate:8.3f}  (goal >= 0.9)")
    print(f"ratio whole command / model only:                   {wall_rate / model_rate:8.3f}")
    print(f"ratio predict loop / model only at detect's threads: {loop_rate / shared_rate:7.3f}  "
          "(near 1: decoding is hidden; the gap above is cores spent on decoding)")
    return {"loop": loop_rate, "wall": wall_rate, "model": model_rate, "shared": shared_rate}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--images", required=True, help="folder of radiographs (searched recursively)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--repeat", type=int, default=3, help="alternate the measurements; best of each")
    p.add_argument("--backend", nargs="+", choices=["torch", "onnxruntime"], default=["torch"],
                   help="what runs the network (several: each in turn, then a table)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    args = p.parse_args()

    files, names = collect_inputs([args.images])
    files, names = files[:args.limit], names[:args.limit]
    # Files given one by one when limited: detect then names them by file name.
    inputs = [str(f) for f in files] if args.limit else [args.images]
    with tempfile.TemporaryDirectory() as tmp:
        figures = {b: measure(args, b, files, names, inputs, Path(tmp) / "model.onnx") for b in args.backend}
    if len(figures) > 1:
        print("\n| backend | model only, all threads | model only, detect's threads | detect predict loop | whole command |")
        print("|---|---|---|---|---|")
        for b, f in figures.items():
            print(f"| {b} | {f['model']:.2f} | {f['shared']:.2f} | {f['loop']:.2f} | {f['wall']:.2f} |")


def _runs(rates: list[float]) -> str:
    return "(runs: " + ", ".join(f"{r:.1f}" for r in rates) + ")"


if __name__ == "__main__":
    main()
