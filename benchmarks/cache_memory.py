"""Per-process memory and speed of the film caches, 2 processes (2 DDP ranks on a node), 5,000 films at 1024 px.

    python benchmarks/cache_memory.py                                   # 5,000 films, memory vs disk
    python benchmarks/cache_memory.py --n 1000 --work-dir /tmp/cachebench --keep   # reuse the films

The films are the real radiographs in ``../shared/radiographs/fracatlas`` (``manifest.csv``) resized
to 1024 px longest side and written as 8-bit PNG, each in up to four flips so that 5,000 films are
5,000 different images, with a COCO file. For each cache mode two processes start together; each
builds ``RadiographDataset(cache=mode)`` (2 decoding threads, as the data module uses on this machine),
then iterates it once through a DataLoader (batch 8, no workers, no augmentation). Each reports its
build and pass rates and, from ``/proc/self``: peak RSS (VmHWM), RSS after the pass split into
anonymous memory (the in-RAM cache) and file pages (memory-mapped entries), and PSS (shared pages
split between the processes that map them). ``disk (warm)`` runs again on the cache ``disk`` built.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
FILMS = REPO.parent / "shared" / "radiographs" / "fracatlas"
FLIPS = (None, 1, 0, -1)  # as is, left-right, up-down, both (cv2.flip codes)


def make_films(work: Path, n: int, size: int) -> Path:
    """``n`` PNG films at ``size`` px longest side under ``work/images`` and their COCO file; reused if present."""
    json_path = work / f"films_{n}_{size}.json"
    if json_path.exists():
        return json_path
    for larger in sorted(work.glob(f"films_*_{size}.json"), key=lambda p: int(p.name.split("_")[1])):
        if int(larger.name.split("_")[1]) > n:  # its first n films are this run's films
            coco = json.loads(larger.read_text())
            json_path.write_text(json.dumps(coco | {"images": coco["images"][:n]}))
            return json_path
    with open(FILMS / "manifest.csv", newline="") as f:
        sources = [FILMS / row["file"] for row in csv.DictReader(f)]
    records: list[dict | None] = [None] * n

    def write_copies(j: int) -> None:
        # JPEG decodes at half resolution for free (DCT scaling): the source films are ~2500 px
        film = cv2.imread(str(sources[j]), cv2.IMREAD_REDUCED_GRAYSCALE_2)
        h, w = film.shape
        scale = size / max(h, w)
        film = cv2.resize(film, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        for i in range(j, n, len(sources)):
            flip = FLIPS[(i // len(sources)) % len(FLIPS)]
            name = f"images/{i // 1000:02d}/film{i:05d}.png"
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(work / name), film if flip is None else cv2.flip(film, flip))
            records[i] = {"id": i + 1, "file_name": name, "width": film.shape[1], "height": film.shape[0]}

    start = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(write_copies, range(min(n, len(sources)))))
    json_path.write_text(json.dumps({"images": records, "annotations": [],
                                     "categories": [{"id": 1, "name": "calcinosis"}]}))
    print(f"wrote {n} films at {size} px in {time.perf_counter() - start:.0f} s", flush=True)
    return json_path


def _proc_kb(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    """kB values of ``keys`` in a /proc file of ``Key:  123 kB`` lines (0 where absent)."""
    found = dict.fromkeys(keys, 0)
    try:
        with open(path) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in found:
                    found[key] = int(rest.split()[0])
    except OSError:
        pass
    return found


def worker(args: argparse.Namespace) -> None:
    """One 'rank': build the dataset, one pass through a DataLoader; print one JSON line of figures."""
    import torch
    from torch.utils.data import DataLoader

    from calcidet.data.coco import load_coco
    from calcidet.data.dataset import RadiographDataset, detection_collate

    torch.set_num_threads(1)  # two processes share the cores, as two ranks would
    images = load_coco(args.json).images
    mode = args.worker.split()[0]
    # start together, as ranks do after their imports (one may be seconds slower to import torch)
    (Path(args.barrier) / str(os.getpid())).touch()
    while len(list(Path(args.barrier).iterdir())) < args.procs:
        time.sleep(0.05)
    start = time.perf_counter()
    dataset = RadiographDataset(images, args.image_size, None, preload_threads=args.threads, cache=mode,
                                cache_dir=args.cache_dir)
    build_s = time.perf_counter() - start
    loader = DataLoader(dataset, batch_size=8, num_workers=0, collate_fn=detection_collate)
    seen, start = 0, time.perf_counter()
    for batch, _ in loader:
        seen += len(batch)
    pass_s = time.perf_counter() - start
    status = _proc_kb("/proc/self/status", ("VmHWM", "VmRSS", "RssAnon", "RssFile"))
    rollup = _proc_kb("/proc/self/smaps_rollup", ("Pss",))
    print(json.dumps({"images": seen, "build_s": build_s, "pass_s": pass_s, **status, **rollup}), flush=True)


def run_mode(mode: str, args: argparse.Namespace, json_path: Path, cache_dir: Path) -> list[dict]:
    barrier = Path(tempfile.mkdtemp(prefix="barrier_", dir=json_path.parent))
    command = [sys.executable, __file__, "--worker", mode, "--json", str(json_path), "--cache-dir", str(cache_dir),
               "--image-size", str(args.image_size), "--threads", str(args.threads), "--procs", str(args.procs),
               "--barrier", str(barrier)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for _ in range(args.procs)]
    results = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"{mode} worker failed (exit {p.returncode}):\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    shutil.rmtree(barrier)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=5000, help="number of films (default 5000)")
    p.add_argument("--size", type=int, default=1024, help="longest side of the films on disk (default 1024)")
    p.add_argument("--image-size", type=int, default=1024, help="data.image_size (default 1024)")
    p.add_argument("--procs", type=int, default=2, help="processes per mode, like ranks on a node (default 2)")
    p.add_argument("--threads", type=int, default=2, help="decoding threads per process (default 2)")
    p.add_argument("--modes", default="memory,disk,disk (warm)", help="comma-separated (none: lazy decode)")
    p.add_argument("--work-dir", help="where films and cache go (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the films in --work-dir for the next run")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)
    p.add_argument("--barrier", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="calcidet_cache_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        json_path = make_films(work, args.n, args.size)
        cache_dir = work / "cache"
        print(f"{args.n} films at {args.size} px, image_size {args.image_size}, {args.procs} processes x "
              f"{args.threads} threads, {os.cpu_count()} CPUs")
        print(f"{'mode':<12} {'proc':>4} {'build s':>8} {'build img/s':>11} {'pass img/s':>10} {'peak RSS':>9} "
              f"{'RSS after':>9} {'anon':>7} {'file':>7} {'PSS after':>9}  (MB)", flush=True)
        for mode in (m.strip() for m in args.modes.split(",") if m.strip()):
            if mode == "disk":
                shutil.rmtree(cache_dir, ignore_errors=True)  # cold: built from the PNGs
            for k, r in enumerate(run_mode(mode, args, json_path, cache_dir)):
                mb = {key: r[key] / 1024 for key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "Pss")}
                print(f"{mode:<12} {k:>4} {r['build_s']:>8.1f} {args.n / r['build_s']:>11.1f} "
                      f"{r['images'] / r['pass_s']:>10.1f} {mb['VmHWM']:>9.0f} {mb['VmRSS']:>9.0f} "
                      f"{mb['RssAnon']:>7.0f} {mb['RssFile']:>7.0f} {mb['Pss']:>9.0f}", flush=True)
        if cache_dir.exists():
            entries = list(cache_dir.glob("*.u8"))
            print(f"disk cache: {len(entries)} entries, {sum(e.stat().st_size for e in entries) / 2**20:.0f} MB "
                  f"(in the page cache: shared by the processes, reclaimable)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
