"""Decode time of large JPEG films, full size vs reduced in the DCT domain (``read_radiograph(max_side=)``).

    PYTHONPATH=. .venv/bin/python benchmarks/jpeg_decode.py --n 20 --long-side 2500 --image-size 384 --max-side 384 768

Real films from ../shared/radiographs/fracatlas are upscaled to ``--long-side`` and saved as JPEG
(quality 92) in a temporary folder; each is then read with ``data.readers.read_radiograph`` (decode +
percentile normalisation) and resized to ``--image-size`` as ``FolderDataset`` does, once from a full
decode and once decoded reduced for each ``--max-side``. Prints ms per film (median of ``--repeats``),
the speed-up, and how far the model's input moves (mean and 99.9th percentile |difference|, of 255).
One process, one OpenCV thread: what a DataLoader worker does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from calcidet.data.dataset import resize_longest
from calcidet.data.readers import read_radiograph

FRACATLAS = Path(__file__).resolve().parents[2] / "shared" / "radiographs" / "fracatlas"


def make_films(out: Path, n: int, long_side: int) -> list[Path]:
    sources = sorted(FRACATLAS.glob("*/*.jpg"))[::37][:n]  # spread over body parts
    if not sources:
        raise SystemExit(f"no films under {FRACATLAS}")
    paths = []
    for i, src in enumerate(sources):
        small = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
        scale = long_side / max(small.shape)
        big = cv2.resize(small, (round(small.shape[1] * scale), round(small.shape[0] * scale)),
                         interpolation=cv2.INTER_CUBIC)
        path = out / f"film{i:02d}.jpg"
        cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(path)
    return paths


def model_input(path: Path, image_size: int, max_side: int | None) -> np.ndarray:
    film = read_radiograph(path, max_side=max_side)
    return resize_longest(film.image, image_size, film.original_size)


def time_reads(paths: list[Path], image_size: int, max_side: int | None, repeats: int) -> float:
    """Median over repeats of the mean ms per film to read it and resize it to ``image_size``."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for p in paths:
            model_input(p, image_size, max_side)
        runs.append((time.perf_counter() - start) * 1000 / len(paths))
    return statistics.median(runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--long-side", type=int, default=2500)
    p.add_argument("--image-size", type=int, default=384, help="the model's input size")
    p.add_argument("--max-side", type=int, nargs="+", default=[384, 768])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_films(Path(tmp), args.n, args.long_side)
        shape = read_radiograph(paths[0]).original_size
        print(f"{len(paths)} JPEG films, longest side {args.long_side} (first: {shape[1]}x{shape[0]})")
        full = time_reads(paths, args.image_size, None, args.repeats)
        print(f"read + resize to {args.image_size}: full decode {full:.1f} ms/film")
        print(f"{'max_side':<10}{'decoded at':>12}{'ms/film':>9}{'speed-up':>10}{'mean diff':>11}{'p99.9 diff':>12}")
        for side in args.max_side:
            shape = read_radiograph(paths[0], max_side=side).image.shape
            ms = time_reads(paths, args.image_size, side, args.repeats)
            diffs = [np.abs(model_input(p, args.image_size, None) - model_input(p, args.image_size, side)) * 255
                     for p in paths]
            mean, p999 = np.mean([d.mean() for d in diffs]), np.mean([np.percentile(d, 99.9) for d in diffs])
            print(f"{side:<10}{f'{shape[1]}x{shape[0]}':>12}{ms:>9.1f}{full / ms:>9.1f}x{mean:>11.2f}{p999:>12.1f}")


if __name__ == "__main__":
    main()
