"""What every format decoder hands back to ``data.readers``, and the checks the decoders share.

    python -c "from calcidet.data.decoded import check_size; check_size(20000, 20000, 'PNG')"  # refused

``data.raster`` (PNG, JPEG, TIFF) and ``data.dicom`` decode; ``data.readers`` sniffs the format,
calls one of them and normalises its ``DecodedPixels``. They raise ``RadiographReadError`` with an
empty path; ``read_radiograph`` re-raises it with the file's path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_PIXELS = 100_000_000


class RadiographReadError(ValueError):
    """A radiograph file could not be read; ``str(err)`` is ``"{path}: {reason}"``.

    Attributes:
        path: the file, as a string.
        reason: why it could not be read, in words fit for a CSV column.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # DataLoader workers pickle exceptions; keep both fields across.
        return type(self), (self.path, self.reason)


@dataclass
class DecodedPixels:
    """What a format decoder hands to normalisation."""

    pixels: np.ndarray  # H x W, integer or float, before normalisation
    value_range: tuple[float, float]  # the format's nominal range, for normalize="none"
    bit_depth: int
    photometric: str | None
    invert: bool = False  # stored white-is-zero (MONOCHROME1, TIFF min-is-white)
    spacing: tuple[float, float] | None = None
    spacing_source: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    full_size: tuple[int, int] | None = None  # (H, W) of the file when ``pixels`` was decoded reduced


def check_size(height: int, width: int, what: str) -> None:
    """Refuse an empty image, or one over ``MAX_PIXELS``, from its header: before anything is decoded.

    Raises:
        RadiographReadError: naming ``what`` (e.g. "PNG") and the declared size.
    """
    if height <= 0 or width <= 0:
        raise RadiographReadError("", f"{what} declares an empty image ({width}x{height})")
    if height * width > MAX_PIXELS:
        raise RadiographReadError(
            "",
            f"{what} declares {width}x{height} = {height * width:,} pixels, over MAX_PIXELS={MAX_PIXELS:,}",
        )


def finite_min_max(pixels: np.ndarray) -> tuple[float, float]:
    """Smallest and largest finite value; (0, 0) when there is none (all NaN/inf)."""
    if pixels.dtype.kind == "f":
        finite = pixels[np.isfinite(pixels)]
        return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return float(pixels.min()), float(pixels.max())


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an H x W x 3 RGB array, in the input's dtype range."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    luma = rgb.astype(np.float32) @ weights
    return luma if rgb.dtype.kind == "f" else np.round(luma).astype(rgb.dtype)


def valid_spacing(value) -> tuple[float, float] | None:
    """(row, col) mm from a DICOM spacing element; None if absent or nonsense (RG1_UNCR says 0.0)."""
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (row, col) if 0.0 < row < 10.0 and 0.0 < col < 10.0 else None
