"""Which real films to insert masses into, and what each shows (joint, view), for ``calcidet synth``.

    from calcidet.data.synth_backgrounds import list_backgrounds
    films = list_backgrounds("data/films")                                   # a folder, searched recursively
    films = list_backgrounds("benchmarks/real_film_split.csv", role="heldout",
                             root="../shared/radiographs/fracatlas")         # a CSV with file (and role) columns
    films = list_backgrounds("my_films.txt")                                 # a plain list, one path a line

Each film is a ``Background(path, source, joint, view)``; ``source`` is its path relative to the
root. ``joint``/``view`` come from a ``manifest.csv`` in the root (FracAtlas columns: file, category,
frontal, lateral, oblique) or from the same columns in the list itself; else ``unknown``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

BACKGROUND_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# FracAtlas body parts -> the joint a film shows. A knee/ankle/foot film is not told apart: lower_limb.
CATEGORY_JOINTS = {"hand_wrist_forearm": "hand", "hip_pelvis": "hip", "lower_limb_knee_ankle_foot": "lower_limb",
                   "shoulder": "shoulder", "upper_limb_shoulder_elbow": "elbow"}
VIEWS = ("frontal", "lateral", "oblique")


@dataclass(frozen=True)
class Background:
    """One real normal film: where it is, its name relative to the root, and what it shows."""

    path: Path
    source: str
    joint: str = "unknown"
    view: str = "unknown"


def _describe(row: dict[str, str]) -> tuple[str, str]:
    """(joint, view) from a manifest row; a film with two views (a frontal and a lateral side by side) gets both."""
    joint = CATEGORY_JOINTS.get(row.get("category", ""), row.get("joint") or "unknown")
    views = [v for v in VIEWS if row.get(v, "").strip() in ("1", "true", "True")]
    return joint, "+".join(views) if views else (row.get("view") or "unknown")


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def list_backgrounds(source: str | Path, role: str | None = None, root: str | Path | None = None) -> list[Background]:
    """The real films named by a folder, a CSV (``file`` column, optional ``role``) or a text list.

    Args:
        source: a folder (searched recursively for .png/.jpg/.jpeg/.tif/.tiff), a ``.csv`` with a
            ``file`` column, or a text file with one path a line (``#`` starts a comment).
        role: with a CSV, keep only rows whose ``role`` column equals it (e.g. ``heldout``).
        root: where relative paths in a list resolve (default: the list's folder; for a folder, itself).

    Returns:
        The films, sorted by ``source``.

    Raises:
        FileNotFoundError: nothing found, or a listed file does not exist.
    """
    src = Path(source)
    meta: dict[str, tuple[str, str]] = {}
    if src.is_dir():
        base = Path(root) if root else src
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in BACKGROUND_EXTENSIONS)
    else:
        base = Path(root) if root else src.parent
        if src.suffix.lower() == ".csv":
            rows = _read_rows(src)
            if rows and "file" not in rows[0]:
                raise ValueError(f"{src}: a background CSV needs a 'file' column")
            rows = [r for r in rows if role is None or r.get("role") == role]
            meta = {r["file"]: _describe(r) for r in rows if "category" in r or "joint" in r}
            names = [r["file"] for r in rows]
        else:
            lines = (ln.split("#", 1)[0].strip() for ln in src.read_text().splitlines())
            names = [ln for ln in lines if ln]
        files = [base / n for n in names]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{src}: {len(missing)} listed films not found under {base}, e.g. {missing[0]}")
    if not files:
        raise FileNotFoundError(f"{source}: no .png/.jpg/.jpeg/.tif/.tiff radiographs found"
                                + (f" with role {role!r}" if role else ""))
    manifest = base / "manifest.csv"
    if manifest.is_file():  # the manifest knows views that a split list may not
        meta = {**meta, **{r["file"]: _describe(r) for r in _read_rows(manifest) if "file" in r}}
    out = []
    for p in files:
        rel = p.relative_to(base).as_posix() if p.is_relative_to(base) else p.as_posix()
        joint, view = meta.get(rel, ("unknown", "unknown"))
        out.append(Background(p, rel, joint, view))
    return sorted(out, key=lambda b: b.source)
