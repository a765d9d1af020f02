"""Write output files all or nothing, at paths that cannot leave their output folder.

    python -c "from pathlib import Path; from calcidet.train.output_files import safe_output_path as p; print(p(Path('out'), '../x'))"

The commands that write results (detect, report, split, convert, export-images) go through here: a
file is written to a temporary file and renamed over the old one, so no reader ever sees half a file,
and a write that fails (a full disk) raises ``OutputWriteError`` naming the file, leaving no partial
file behind. Output paths built from input names (overlays, exported images) go through
``safe_output_path``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

MAX_PART_BYTES = 200  # of an output path's parts: leaves room for a suffix and ".NAME.tmp" within 255


class OutputWriteError(OSError):
    """An output file could not be written (a full disk, no permission); ``filename`` names it."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))


def atomic_write(path: Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: all or nothing.

    Raises:
        OutputWriteError: naming ``path``; the temporary file is removed.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the original error is the one to report
        raise OutputWriteError(path, exc) from exc


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write`` of UTF-8 text."""
    atomic_write(path, text.encode("utf-8"))


def safe_output_path(root: Path, name: str, suffix: str = "") -> Path:
    """``root/name+suffix`` with ``..``, absolute parts and drive letters removed: always inside root.

    A part longer than ``MAX_PART_BYTES`` is cut and given a hash of the whole (names stay distinct):
    the file system's limit is 255 bytes, and a 255-byte input name plus ``suffix`` would not fit.
    """
    try:
        os.fsencode(name)
    except UnicodeEncodeError:  # lone surrogates no file system takes: write them as \uXXXX escapes
        name = name.encode("utf-8", "backslashreplace").decode("utf-8")
    # strip("/"): POSIX keeps a leading "//" as a part of its own, and joinpath("//") leaves root
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p.strip("/") not in ("", ".", "..")]
    parts = [p.replace(":", "_") for p in parts] or ["_"]
    return root.joinpath(*(_fit(p) for p in parts[:-1]), _fit(parts[-1]) + suffix)


def _fit(part: str) -> str:
    raw = os.fsencode(part)
    if len(raw) <= MAX_PART_BYTES:
        return part
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return raw[:MAX_PART_BYTES - 13].decode("utf-8", "ignore") + "~" + digest
