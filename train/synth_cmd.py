"""``calcidet synth``: write a COCO dataset of synthetic radiographs with periarticular calcinosis.

    calcidet synth --out data/synth --n 200 --seed 1 --preview data/synth/preview.png
    calcidet synth --out data/mine --n 500 --seed 2 --backgrounds /path/to/normal/films
    calcidet synth --out runs/real_train --n 800 --seed 1 --backgrounds data/films
    calcidet synth --out runs/real_test --n 268 --seed 20261203 --backgrounds benchmarks/real_film_split.csv \
        --background-role heldout --background-root ../shared/radiographs/fracatlas
    python -m train.synth_cmd --out /tmp/s --n 200 --seed 1 --preview /tmp/s/preview.png
"""

from __future__ import annotations

import argparse

from calcidet.data.preview import write_contact_sheet
from calcidet.data.synth import synthesize


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: sys.argv), generate the dataset, optionally draw a preview; exit code."""
    parser = argparse.ArgumentParser(prog="calcidet synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (annotations.json, images/)")
    parser.add_argument("--n", type=int, default=200, help="number of films (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed: same seed, identical files (default 0)")
    parser.add_argument("--backgrounds", help="real normal radiographs to insert lesions into: a folder, a CSV "
                        "with a 'file' column, or a text list (a manifest.csv in the root gives joint and view)")
    parser.add_argument("--background-role", help="with a CSV list: only rows whose 'role' is this (e.g. heldout)")
    parser.add_argument("--background-root", help="where a list's relative paths resolve (default: its folder)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--dicom-fraction", type=float, default=0.15, help="share written as DICOM (default 0.15)")
    parser.add_argument("--min-size", type=int, default=800, help="smallest longest side, px (default 800)")
    parser.add_argument("--max-size", type=int, default=2500, help="largest longest side, px (default 2500)")
    parser.add_argument("--min-conspicuity", type=float, default=0.0,
                        help="with --backgrounds: draw each mass denser until it stands out of the film's own "
                             "structure by this much (its lift / the clutter under it; 1 = a reader can see it), "
                             "else leave it out (default 0: contrast floor only)")
    parser.add_argument("--edges", type=float, default=0.0,
                        help="with --backgrounds: share of films that get collimator or plate edges (shutters, "
                             "plate borders, split-plate bars) drawn clear of their masses, as hard negatives "
                             "(default 0)")
    parser.add_argument("--volume-share", type=float, default=0.0,
                        help="with --backgrounds: share of masses drawn by the volume model (loculi of a 3D "
                             "capsule, projected) instead of 2D lobules; each mass records its drawing (default 0)")
    parser.add_argument("--preview", help="write a contact sheet PNG of the first 24 films with their boxes")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    if not 64 <= args.min_size <= args.max_size:
        parser.error("need 64 <= --min-size <= --max-size")
    if not 0.0 <= args.dicom_fraction <= 1.0:
        parser.error("--dicom-fraction must be between 0 and 1")
    if args.min_conspicuity < 0:
        parser.error("--min-conspicuity must be at least 0")
    if not 0.0 <= args.edges <= 1.0:
        parser.error("--edges must be between 0 and 1")
    if not 0.0 <= args.volume_share <= 1.0:
        parser.error("--volume-share must be between 0 and 1")
    if args.volume_share and not args.backgrounds:
        parser.error("--volume-share needs --backgrounds (procedural films draw 2D lobules)")
    if args.edges and not args.backgrounds:
        parser.error("--edges needs --backgrounds (procedural films draw their own collimation)")
    if (args.background_role or args.background_root) and not args.backgrounds:
        parser.error("--background-role/--background-root need --backgrounds")
    synthesize(args.out, args.n, args.seed, backgrounds=args.backgrounds, background_role=args.background_role,
               background_root=args.background_root, workers=args.workers,
               dicom_fraction=args.dicom_fraction, size_range=(args.min_size, args.max_size),
               min_conspicuity=args.min_conspicuity, edge_share=args.edges, volume_share=args.volume_share)
    if args.preview:
        print(f"preview: {write_contact_sheet(args.out, args.preview)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
