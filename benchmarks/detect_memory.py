"""Memory of ``calcidet detect`` on large folders: peak RSS of the whole process tree at 1,000 and 10,000 images.

    python benchmarks/detect_memory.py                       # 1,000 and 10,000 images, untrained 64 px model
    python benchmarks/detect_memory.py --sizes 1000 --checkpoint runs/demo/checkpoints/last.ckpt

For each size, a temporary folder gets that many small PNGs (copies of one 64 x 64 film, in
sub-folders of 1,000, so writing them takes a second) with one file in 100 broken (empty, cut short
or text). ``calcidet detect`` runs on it as a subprocess; every 0.5 s the RSS of it and all its
children (the DataLoader workers) is summed, with PSS beside it (RSS counts pages shared by forked
workers once per process; PSS splits them). Printed: peak RSS/PSS, RSS after the first tenth of the
images against the end (growth means a leak), rows in images.csv against files, and the rate.
Without ``--checkpoint`` an untrained ``fcos_tiny`` checkpoint is made: the pipeline's memory
does not depend on what the network has learnt.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

BROKEN_EVERY = 100
SAMPLE_S = 0.5


def film_png(size: int = 64, seed: int = 0) -> bytes:
    """A small 8-bit PNG film: a ramp plus noise, so that cutting it short really breaks it."""
    rng = np.random.default_rng(seed)
    film = np.linspace(0, 204, size)[None, :] + rng.uniform(0, 51, (size, size))
    ok, buf = cv2.imencode(".png", film.astype(np.uint8))
    assert ok
    return buf.tobytes()


def write_untrained_checkpoint(path: Path, image_size: int) -> Path:
    """A calcidet checkpoint of a freshly initialised ``fcos_tiny``: detect's memory does not depend on training."""
    import torch

    from calcidet.model.builder import build_detector

    torch.manual_seed(0)
    model = build_detector(arch="fcos_tiny", num_classes=2, min_size=image_size, max_size=image_size)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "calcidet": {"class_names": ["calcinosis"], "image_size": image_size, "arch": "fcos_tiny"},
                "epoch": 0, "global_step": 0}, path)
    return path


def make_folder(root: Path, n: int) -> tuple[int, int]:
    """``n`` PNGs under ``root`` (sub-folders of 1,000), one in ``BROKEN_EVERY`` broken; returns (files, broken)."""
    good = film_png()
    broken = [b"", good[: len(good) // 2], b"not an image\n"]
    n_broken = 0
    for i in range(n):
        folder = root / f"batch{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        if i % BROKEN_EVERY == BROKEN_EVERY - 1:
            data, n_broken = broken[(i // BROKEN_EVERY) % len(broken)], n_broken + 1
        else:
            data = good
        (folder / f"film{i:06d}.png").write_bytes(data)
    return n, n_broken


def _tree_memory(proc: psutil.Process) -> tuple[int, int, int]:
    """(RSS of the tree, PSS of the tree, RSS of the main process), bytes; gone processes count 0."""
    rss = pss = main = 0
    for k, p in enumerate([proc, *proc.children(recursive=True)]):
        try:
            full = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += full.rss
        pss += getattr(full, "pss", full.rss)
        main = full.rss if k == 0 else main
    return rss, pss, main


def _journal_lines(out: Path) -> int:
    total = 0
    for path in (out / ".journal").glob("rank*.jsonl"):
        with open(path, "rb") as f:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return total


def measure(n: int, checkpoint: Path, work: Path, args: argparse.Namespace) -> dict[str, float]:
    """Run detect on ``n`` generated images; sample memory every 0.5 s; return the figures."""
    images, out = work / f"images_{n}", work / f"out_{n}"
    files, n_broken = make_folder(images, n)
    command = [sys.executable, "-m", "calcidet.train.cli", "detect", str(images), "--checkpoint", str(checkpoint),
               "--output", str(out), "--batch-size", str(args.batch_size), "--num-workers", str(args.num_workers),
               "--threshold", "0.5", *(["--overlays"] if args.overlays else [])]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ps = psutil.Process(proc.pid)
    peak_rss = peak_pss = peak_main = 0
    early_rss = None  # RSS once a tenth of the images are journaled
    end_rss = 0  # the last sample taken while the main process was alive
    samples = 0
    while proc.poll() is None:
        rss, pss, main = _tree_memory(ps)
        peak_rss, peak_pss, peak_main = max(peak_rss, rss), max(peak_pss, pss), max(peak_main, main)
        samples += 1
        end_rss = rss if main else end_rss
        if early_rss is None and _journal_lines(out) >= n // 10:
            early_rss = rss
        time.sleep(SAMPLE_S)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"detect failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    with open(out / "images.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {
        "images": n, "files": files, "broken": n_broken, "rows": len(rows),
        "rows_error": sum(r["status"] == "error" for r in rows), "wall_s": wall, "images_per_s": n / wall,
        "peak_rss_mb": peak_rss / 2**20, "peak_pss_mb": peak_pss / 2**20, "peak_main_rss_mb": peak_main / 2**20,
        "early_rss_mb": (early_rss or 0) / 2**20, "end_rss_mb": end_rss / 2**20,
        "samples": samples,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="numbers of images (default 1000 10000)")
    p.add_argument("--checkpoint", help="calcidet checkpoint (default: an untrained fcos_tiny at --image-size)")
    p.add_argument("--image-size", type=int, default=64, help="input size of the untrained checkpoint (default 64)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--overlays", action="store_true", help="also write overlays")
    p.add_argument("--workdir", help="where to write images and results (default: a temporary folder)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        checkpoint = Path(args.checkpoint) if args.checkpoint else \
            write_untrained_checkpoint(work / "untrained.ckpt", image_size=args.image_size)
        print(f"checkpoint {checkpoint}, batch size {args.batch_size}, {args.num_workers} workers, "
              f"{psutil.cpu_count()} CPUs, sampling every {SAMPLE_S} s")
        print(f"{'images':>7} {'rows':>6} {'errors':>6} {'broken':>6} {'wall s':>7} {'img/s':>6} "
              f"{'peak RSS':>9} {'peak PSS':>9} {'main RSS':>9} {'RSS@10%':>8} {'RSS end':>8}  (MB)")
        for n in args.sizes:
            r = measure(n, checkpoint, work, args)
            print(f"{r['images']:>7} {r['rows']:>6} {r['rows_error']:>6} {r['broken']:>6} {r['wall_s']:>7.1f} "
                  f"{r['images_per_s']:>6.1f} {r['peak_rss_mb']:>9.0f} {r['peak_pss_mb']:>9.0f} "
                  f"{r['peak_main_rss_mb']:>9.0f} {r['early_rss_mb']:>8.0f} {r['end_rss_mb']:>8.0f}", flush=True)
            if r["rows"] != r["files"] or r["rows_error"] != r["broken"]:
                print(f"  MISMATCH: {r['files']} files, {r['rows']} rows, {r['broken']} broken, "
                      f"{r['rows_error']} error rows")


if __name__ == "__main__":
    main()
