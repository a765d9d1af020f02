"""Build the held-out real-film test set: masses inserted into the 268 ``heldout`` films, once, fixed.

    python benchmarks/real_film_testset.py [--out runs/real_film_testset] [--shared ../shared/radiographs/fracatlas]

The films are the rows of ``benchmarks/real_film_split.csv`` with role ``heldout`` (never trained on,
never used to choose anything), read from ``../shared/radiographs/fracatlas``. Each film is used
exactly once (n = 268), seed ``SEED = 20261203``, no DICOM, so the set is the same bytes on every
machine: ``annotations.json`` (COCO, joint and view from the FracAtlas manifest) and ``images/``.
About a third of the films stay negative (``data.synth.NEGATIVE_SHARE``).
Without ``../shared`` (a user's clone) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from calcidet.data.synth import synthesize  # noqa: E402

SEED = 20261203
SPLIT = ROOT / "benchmarks" / "real_film_split.csv"
ROLE = "heldout"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "runs" / "real_film_testset"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "radiographs" / "fracatlas"))
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    shared = Path(args.shared)
    if not shared.is_dir():
        print(f"skipped: {shared} is missing (the held-out films live outside the repository)")
        return 0
    with open(SPLIT, newline="") as f:
        n = sum(1 for row in csv.DictReader(f) if row["role"] == ROLE)
    report = synthesize(args.out, n, SEED, backgrounds=SPLIT, background_role=ROLE, background_root=shared,
                        workers=args.workers, dicom_fraction=0.0)
    print(f"held-out real-film test set: {report.images} films, {report.lesions} masses, "
          f"{report.negatives} negatives -> {report.annotations}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
