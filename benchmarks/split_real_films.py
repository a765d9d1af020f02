"""Split the shared real films (``../shared/radiographs/fracatlas``) by file, once, and vendor the demo's part.

    python benchmarks/split_real_films.py [--shared ../shared/radiographs/fracatlas]

Every film gets one role, written to ``benchmarks/real_film_split.csv`` (committed; the split is fixed):

- ``demo``: vendored into ``data/films/`` (at most 400 films, 20 MB), the real backgrounds that
  ``make demo`` trains and validates on. A user's clone has no ``../shared``, so they ship with calcidet.
  Their ``data/films/manifest.csv`` gives each a ``role`` of its own: ``train`` or ``val`` (about 15 %
  of each body part), so the demo's real validation films are never its training films.
- ``heldout``: never trained on, never used to choose anything; ``benchmarks/real_film_testset.py``
  inserts masses into them to build the real-film test set reported in every note.
- ``reserve``: the rest, kept out of both (spare held-out films for later checks).

The draw is stratified by body part so every part is in every role, and seeded, so rerunning it
reproduces the committed CSV. Large films (2304x2880) are few; a handful go to each side.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Films per body part in the demo subset: more of the parts where detection is hardest (hands,
# shoulders, hips) than their share of the collection.
DEMO_COUNTS = {"hand_wrist_forearm": 95, "hip_pelvis": 80, "lower_limb_knee_ankle_foot": 120,
               "shoulder": 45, "upper_limb_shoulder_elbow": 60}
DEMO_LARGE = 4  # full-resolution films among the demo's 400 (they cost ~1 MB each)
DEMO_VAL_SHARE = 0.15  # of each body part's demo films: the demo's real validation films
HELDOUT_COUNTS = {"hand_wrist_forearm": 60, "hip_pelvis": 50, "lower_limb_knee_ankle_foot": 90,
                  "shoulder": 20, "upper_limb_shoulder_elbow": 40}
HELDOUT_LARGE = 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "radiographs" / "fracatlas"))
    ap.add_argument("--seed", type=int, default=20261202)
    args = ap.parse_args()
    shared = Path(args.shared)
    rows = list(csv.DictReader(open(shared / "manifest.csv")))
    rng = random.Random(args.seed)
    by_part: dict[tuple[str, bool], list[dict]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["file"]):
        by_part[(r["category"], int(r["width"]) > 1000)].append(r)
    for films in by_part.values():
        rng.shuffle(films)

    role: dict[str, str] = {r["file"]: "reserve" for r in rows}
    large = [r for (part, big), films in sorted(by_part.items()) if big for r in films]
    rng.shuffle(large)
    for r in large[:DEMO_LARGE]:
        role[r["file"]] = "demo"
    for r in large[DEMO_LARGE:DEMO_LARGE + HELDOUT_LARGE]:
        role[r["file"]] = "heldout"
    for part, n in DEMO_COUNTS.items():
        small = by_part[(part, False)]
        n_demo = n - sum(role[r["file"]] == "demo" for r in large if r["category"] == part)
        for r in small[:n_demo]:
            role[r["file"]] = "demo"
        for r in small[n_demo:n_demo + HELDOUT_COUNTS[part]]:
            role[r["file"]] = "heldout"

    split_csv = ROOT / "benchmarks" / "real_film_split.csv"
    with open(split_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "role", "category", "width", "height"])
        for r in sorted(rows, key=lambda r: r["file"]):
            w.writerow([r["file"], role[r["file"]], r["category"], r["width"], r["height"]])

    films = ROOT / "data" / "films"
    demo = [r for r in rows if role[r["file"]] == "demo"]
    for r in demo:
        dst = films / r["file"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / r["file"], dst)
    demo_role = {}
    for part in DEMO_COUNTS:
        films_of_part = sorted(r["file"] for r in demo if r["category"] == part)
        rng.shuffle(films_of_part)
        n_val = round(DEMO_VAL_SHARE * len(films_of_part))
        demo_role.update({f: "val" if i < n_val else "train" for i, f in enumerate(films_of_part)})
    with open(films / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*rows[0], "role"])
        w.writeheader()
        w.writerows(dict(r, role=demo_role[r["file"]]) for r in sorted(demo, key=lambda r: r["file"]))
    counts = defaultdict(int)
    for v in role.values():
        counts[v] += 1
    size = sum((films / r["file"]).stat().st_size for r in demo)
    print(f"{dict(counts)}; data/films: {len(demo)} films, {size / 1e6:.1f} MB; split: {split_csv}")


if __name__ == "__main__":
    main()
