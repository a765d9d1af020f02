"""Build and measure the image-level scope check (``model.film_check``): is this image a plain radiograph?

    python benchmarks/radiograph_check.py            # measure the shipped reference
    python benchmarks/radiograph_check.py --write    # rebuild model/radiograph_reference.npz, then measure

Three disjoint sets of real films (needs ``../shared/radiographs``; ``benchmarks/real_film_split.csv``):
the reference is the 400 films shipped in ``data/films``; the threshold is the largest distance among
the 715 "reserve" films (so no out-of-scope image sets it); the 268 "heldout" films measure how many
limb films the check would wrongly drop. Images that are not plain films come from pydicom-data (CT, MR,
ultrasound, nuclear medicine, test patterns), read for their pixels only, tags ignored.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from calcidet.data.readers import read_radiograph
from calcidet.model.film_check import REFERENCE, RadiographCheck

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "radiographs" / "fracatlas"
# pydicom-data files that are single-frame images but no plain film (their pixels, not their tags).
NOT_PLAIN_FILMS = ["693_UNCR.dcm", "JPEG-LL.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm", "MR2_UNCR.dcm",
                   "US1_UNCR.dcm", "OBXXXX1A.dcm", "explicit_VR-UN.dcm", "gdcm-US-ALOKA-16.dcm",
                   "mlut_18.dcm", "vlut_04.dcm"]
RADIOGRAPHS = ["RG1_UNCR.dcm", "RG3_UNCR.dcm"]  # chest PA (out of scope by tags only), ankle


def read_films(paths: list[Path]) -> list[np.ndarray]:
    films = []
    for path in paths:
        image = read_radiograph(path, max_side=512).image
        films.append(image[..., 0] if image.ndim == 3 else image)
    return films


def distances(check: RadiographCheck, paths: list[Path], batch: int = 32) -> np.ndarray:
    out = [check.distances(read_films(paths[i:i + batch])) for i in range(0, len(paths), batch)]
    return np.concatenate(out) if out else np.zeros(0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help=f"rebuild {REFERENCE.relative_to(ROOT)} first")
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"needs {SHARED}", file=sys.stderr)
        return 1
    with open(ROOT / "benchmarks" / "real_film_split.csv", newline="") as f:
        split = list(csv.DictReader(f))
    role = {r: [SHARED / row["file"] for row in split if row["role"] == r] for r in ("reserve", "heldout")}
    start = time.perf_counter()
    if args.write:
        with open(ROOT / "data" / "films" / "manifest.csv", newline="") as f:
            shipped = [ROOT / "data" / "films" / row["file"] for row in csv.DictReader(f)]
        # The network embeds without a reference; a placeholder one stands in until the real one exists.
        builder = RadiographCheck(np.eye(args.k, 1280, dtype=np.float32), threshold=1.0, k=args.k)
        reference = np.concatenate([builder.embed(read_films(shipped[i:i + 32])).numpy()
                                    for i in range(0, len(shipped), 32)])
        builder.set_reference(reference, threshold=1.0, k=args.k)
        builder.threshold = float(distances(builder, role["reserve"]).max())
        builder.save(REFERENCE)
        threshold = builder.threshold
        print(f"reference: {len(reference)} shipped films; threshold {threshold:.4f} "
              f"(largest of {len(role['reserve'])} reserve films) -> {REFERENCE}")
    check = RadiographCheck.load()
    from pydicom.data import get_testdata_file  # pydicom-data: a test dependency

    held = distances(check, role["heldout"])
    others = {name: float(distances(check, [Path(get_testdata_file(name))])[0])
              for name in NOT_PLAIN_FILMS + RADIOGRAPHS}
    flagged = [n for n in NOT_PLAIN_FILMS if others[n] > check.threshold]
    print(f"threshold {check.threshold:.3f}, k {check.k}")
    print(f"held-out limb films marked out of scope: {(held > check.threshold).sum()}/{len(held)} "
          f"(distance median {np.median(held):.3f}, max {held.max():.3f})")
    print(f"images that are not plain films marked out of scope: {len(flagged)}/{len(NOT_PLAIN_FILMS)}")
    for name, d in others.items():
        print(f"  {name:36s} {d:.3f}  {'out_of_scope' if d > check.threshold else 'read'}")
    n = len(held) + len(others)
    print(f"{n} images in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
