"""Find the radiographs under a folder, in a stable order, and name them relative to it.

    python -c "from calcidet.data.folders import find_radiographs; print(find_radiographs('films/'))"

PACS exports often write DICOM files without an extension (``IM000123``) or with an odd one
(``1.2.840.113619...``), so any file that starts with a DICOM header counts, whatever its name.
Hidden folders and files (``.git``, macOS ``._IMG.jpg`` resource forks) are skipped.
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
