"""Find the radiographs under one or more folders, in a stable order, and name them relative to them.

    python -c "from calcidet.data.folders import find_radiographs; print(find_radiographs('films/'))"
    python -c "from calcidet.data.folders import collect_inputs; print(collect_inputs(['a/', 'b/']))"

PACS exports often write DICOM files without an extension (``IM000123``) or with an odd one
(``1.2.840.113619...``), so any file that starts with a DICOM header counts, whatever its name.
Hidden folders and files (``.git``, macOS ``._IMG.jpg`` resource forks) are skipped.
``collect_inputs`` is what the commands (``calcidet detect``, ``export-images``) take their files from.
"""

from __future__ import annotations

import os
from pathlib import Path

from calcidet.data.readers import IMAGE_EXTENSIONS, is_dicom_file


def find_radiographs(root: str | Path) -> list[Path]:
    """List the radiograph files under ``root``, recursively, sorted by POSIX relative path.

    A file counts if its extension is one of ``IMAGE_EXTENSIONS`` (any case) or if it starts with a
    DICOM header. Hidden directories and files are skipped; symlinked directories are not followed
    (no loops), symlinked files are listed.

    Args:
        root: a folder, or a single file (returned as ``[root]`` whatever its type).

    Returns:
        Paths built on ``root`` (``root / relative``), sorted by their POSIX path relative to it.

    Raises:
        FileNotFoundError: if ``root`` does not exist.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or directory")
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [
            d for d in dirnames if not d.startswith(".")
        ]  # prune in place: os.walk obeys
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if not path.is_file():  # broken symlink, socket, ...
                continue
            if path.suffix.lower() in IMAGE_EXTENSIONS or is_dicom_file(path):
                found.append((path.relative_to(root).as_posix(), path))
    return [path for _, path in sorted(found, key=lambda item: item[0])]


def relative_name(path: str | Path, root: str | Path) -> str:
    """Name of ``path`` for outputs: its POSIX path relative to ``root``.

    Args:
        path: a file found under ``root``.
        root: the folder searched, or the single file given as input.

    Returns:
        e.g. ``"patient1/knee.dcm"``; for a single-file ``root`` (or ``path == root``), the file name.

    Raises:
        ValueError: if ``path`` is not under ``root``.
    """
    path, root = Path(path), Path(root)
    if path == root or root.is_file():
        return path.name
    try:
        return path.relative_to(root).as_posix()
    except ValueError:  # one given relative, the other absolute
        return path.resolve().relative_to(root.resolve()).as_posix()


def collect_inputs(inputs: list[str], exclude: Path | None = None) -> tuple[list[Path], list[str]]:
    """The radiographs under several inputs (``find_radiographs`` of each) and their unique names.

    A file's name is its ``relative_name`` in its input (a file given directly: its file name). With
    several inputs each name is prefixed with its input's folder name (``left/knee1.png``,
    ``right/knee1.png``); clashing prefixes get a suffix (``images-2/...``). A file reached through
    two inputs is listed once. Names that are not valid UTF-8 (another system's encoding) show those
    bytes as ``\\xNN`` escapes, so that they fit UTF-8 CSV/JSON outputs.

    Args:
        inputs: folders (searched recursively) or files.
        exclude: a folder whose files are left out (an output folder that may sit inside an input).

    Returns:
        (files, names), sorted by name.

    Raises:
        FileNotFoundError: naming every input that does not exist.
    """
    roots = [Path(p) for p in inputs]
    missing = [str(r) for r in roots if not r.exists()]
    if missing:
        raise FileNotFoundError(f"no such file or folder: {', '.join(missing)}")
    skip = exclude.resolve() if exclude is not None else None
    used: set[str] = set()
    seen: set[Path] = set()
    named: dict[str, Path] = {}
    for root in roots:
        label = _unique_label(root.resolve().name or "root", used) if len(roots) > 1 else None
        for path in find_radiographs(root):
            real = path.resolve()
            if real in seen or (skip is not None and real.is_relative_to(skip)):
                continue  # the same file reached through two inputs, or one of our overlays
            seen.add(real)
            name = relative_name(path, root)
            if label is not None:  # a file given directly is named by its label alone
                name = label if root.is_file() else f"{label}/{name}"
            named[os.fsencode(name).decode("utf-8", "backslashreplace")] = path
    names = sorted(named)
    return [named[n] for n in names], names


def _unique_label(label: str, used: set[str]) -> str:
    candidate, k = label, 2
    while candidate in used:
        stem, dot, ext = label.partition(".")
        candidate = f"{stem}-{k}{dot}{ext}"
        k += 1
    used.add(candidate)
    return candidate
