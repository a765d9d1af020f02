"""Read a radiograph file (PNG, JPEG, TIFF, DICOM) into a float32 H x W image in 0..1, bone bright.

The one place where calcidet decodes image files. Every failure comes out as ``RadiographReadError``
(path + readable reason) so that a folder of thousands of films can record the bad ones and go on.

    python -c "from calcidet.data.readers import read_radiograph; print(read_radiograph('film.dcm'))"

This file holds the public API: it sniffs the format, hands the bytes to a decoder (``data.raster``
for PNG/JPEG/TIFF, ``data.dicom`` for DICOM; both return ``data.decoded.DecodedPixels``) and
normalises the result. Decisions worth knowing:

- The format is sniffed from the file's first bytes, not its extension (a DICOM without preamble is
  accepted when the extension says ``.dcm``/``.dicom``).
- Colour (RGB, RGBA, palette, CMYK) becomes luminance; JPEG EXIF orientation is applied, as viewers do.
- DICOM follows the display pipeline: Modality LUT (Rescale Slope/Intercept), then VOI LUT or window,
  then MONOCHROME1 is inverted so bone is bright. Multi-frame DICOM (more than one frame) is refused:
  a cine or tomosynthesis series is not a plain radiograph, and its frame 0 rarely is the one wanted.
- Pixel spacing comes from DICOM PixelSpacing, else ImagerPixelSpacing, else a TIFF/PNG resolution
  that is not a screen/print default (72, 96, ... dpi say nothing about the detector); else None.
- Declared sizes over ``MAX_PIXELS`` are refused before anything is decoded.
- ``max_side`` decodes a JPEG at 1/2, 1/4 or 1/8 scale in the DCT domain (libjpeg's scaling, through
  OpenCV's reduced modes) when the model needs no more: several times faster on a 2,500 px film.
  ``original_size`` stays the file's full size, so boxes scale back to original pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calcidet.data.decoded import MAX_PIXELS, RadiographReadError, finite_min_max
from calcidet.data.dicom import BODY_PART_TAGS, decode_dicom
from calcidet.data.raster import decode_raster, decode_tiff

__all__ = [
    "BODY_PART_TAGS", "IMAGE_EXTENSIONS", "MAX_PIXELS", "NORMALIZE_MODES", "Radiograph",
    "RadiographReadError", "is_dicom_file", "normalize_intensity", "read_radiograph",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom")
NORMALIZE_MODES = ("percentile", "minmax", "none")

# ~130k pixels on a regular grid pin the 0.5/99.5 percentiles to well under 1% of the range, at a
# tenth of the cost of all of a 1.3 Mpx film (sorting is what decoding time goes to after the codec).
_PERCENTILE_SAMPLE = 1 << 17


@dataclass(frozen=True)
class Radiograph:
    """A decoded radiograph.

    Attributes:
        image: float32 H x W in 0..1, bone bright (MONOCHROME2 sense).
        path: the file it came from.
        original_size: (H, W) of the file at full resolution (as displayed: EXIF orientation applied).
            ``image`` has this size unless it was read with ``max_side`` (then it may be 2, 4 or 8
            times smaller); map boxes with ``original_size / image.shape``.
        pixel_spacing_mm: (row, col) spacing in mm, or None when the file does not say.
        spacing_source: "PixelSpacing", "ImagerPixelSpacing", "TIFF resolution", "PNG pHYs" or None.
        source_format: "png", "jpeg", "tiff" or "dicom".
        bit_depth: bits per sample of the stored greyscale data (DICOM: BitsStored).
        photometric: colour model as the file names it (DICOM/TIFF photometric, PIL mode for PNG/JPEG).
        tags: the non-empty ``BODY_PART_TAGS`` of a DICOM file as text (what ``data.scope`` reads);
            empty for other formats.
    """

    image: np.ndarray
    path: str
    original_size: tuple[int, int]
    pixel_spacing_mm: tuple[float, float] | None
    spacing_source: str | None
    source_format: str
    bit_depth: int
    photometric: str | None
    tags: dict[str, str] = field(default_factory=dict)


def is_dicom_file(path: str | Path) -> bool:
    """True if ``path`` starts with a DICOM Part 10 header (128-byte preamble, then ``b"DICM"``)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_radiograph(
    path: str | Path,
    *,
    normalize: str = "percentile",
    percentiles: tuple[float, float] = (0.5, 99.5),
    max_side: int | None = None,
) -> Radiograph:
    """Read a PNG, JPEG, TIFF or DICOM radiograph as a float32 H x W image in 0..1, bone bright.

    Args:
        path: the file.
        normalize: "percentile" clips to ``percentiles`` of the image and stretches to 0..1 (robust to
            burnt-in labels and dead pixels); "minmax" stretches min..max; "none" divides by the
            format's nominal range (``2**bits - 1``; DICOM: the stored range through its LUTs).
            A constant image comes out as zeros.
        percentiles: low and high percentiles for ``normalize="percentile"``.
        max_side: the longest side the caller needs (the model's image size). A JPEG is then decoded
            at the largest libjpeg reduction (1/2, 1/4, 1/8) whose longest side is still at least
            ``max_side``; other formats, and None, decode at full size. ``original_size`` is the full
            size either way.

    Returns:
        The image and what the file says about it.

    Raises:
        RadiographReadError: on any failure to read or decode; the reason names what went wrong.
    """
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
    lo_pct, hi_pct = percentiles
    if not 0.0 <= lo_pct < hi_pct <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    path_s = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RadiographReadError(path_s, f"cannot open: {exc.strerror or exc}") from exc
    if not data:
        raise RadiographReadError(path_s, "empty file (0 bytes)")
    fmt = _sniff_format(data, Path(path).suffix.lower())
    if fmt is None:
        raise RadiographReadError(
            path_s, f"not a PNG, JPEG, TIFF or DICOM image (starts with {data[:8]!r})"
        )
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels or None, got {max_side}")
    try:
        if fmt in ("png", "jpeg"):
            dec = decode_raster(data, fmt, max_side)
        else:
            dec = decode_tiff(data) if fmt == "tiff" else decode_dicom(data)
    except RadiographReadError as exc:
        raise RadiographReadError(path_s, exc.reason) from exc
    except Exception as exc:  # decoders raise anything from struct.error to MemoryError on bad input
        raise RadiographReadError(path_s, f"cannot decode {fmt}: {type(exc).__name__}: {exc}") from exc
    if dec.pixels.ndim != 2 or dec.pixels.size == 0:
        raise RadiographReadError(path_s, f"decoded {fmt} has shape {dec.pixels.shape}, not H x W")
    if dec.pixels.dtype.kind not in "uif":  # e.g. a TIFF whose SampleFormat says complex
        raise RadiographReadError(
            path_s, f"decoded {fmt} has {dec.pixels.dtype} samples, not intensities"
        )
    image = normalize_intensity(dec.pixels, normalize, percentiles, dec.value_range)
    if dec.invert:
        np.subtract(1.0, image, out=image)
    return Radiograph(
        image=image,
        path=path_s,
        original_size=dec.full_size or (int(image.shape[0]), int(image.shape[1])),
        pixel_spacing_mm=dec.spacing,
        spacing_source=dec.spacing_source if dec.spacing else None,
        source_format=fmt,
        bit_depth=dec.bit_depth,
        photometric=dec.photometric,
        tags=dec.tags,
    )


def normalize_intensity(
    pixels: np.ndarray,
    mode: str = "percentile",
    percentiles: tuple[float, float] = (0.5, 99.5),
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Map raw pixel values to float32 0..1.

    Args:
        pixels: H x W array, any numeric dtype.
        mode: "percentile", "minmax" or "none" (see ``read_radiograph``).
        percentiles: low and high percentiles for "percentile".
        value_range: nominal (low, high) for "none"; default: the dtype's range (0..1 for floats).

    Returns:
        float32 array of the same shape, clipped to 0..1; zeros where the range is empty.
    """
    if mode == "none":
        if value_range is None:
            value_range = (
                (0.0, float(np.iinfo(pixels.dtype).max))
                if pixels.dtype.kind in "ui"
                else (0.0, 1.0)
            )
        lo, hi = value_range
    else:
        lo, hi = finite_min_max(pixels)
        if mode == "percentile" and hi > lo:
            step = max(1, math.ceil(np.sqrt(pixels.size / _PERCENTILE_SAMPLE)))
            sample = pixels[::step, ::step]
            if sample.dtype.kind == "f":
                sample = sample[np.isfinite(sample)]
            p_lo, p_hi = (float(v) for v in np.percentile(sample, percentiles))
            # A film that is mostly black background can have equal percentiles: fall back to min/max.
            if p_hi > p_lo:
                lo, hi = p_lo, p_hi
    if not hi > lo:
        return np.zeros(pixels.shape, np.float32)
    big = max(abs(lo), abs(hi))
    if pixels.dtype.kind == "f" and big > 1e30:  # float32 would overflow (hi - lo = inf, then NaN)
        pixels, lo, hi = pixels / big, lo / big, hi / big
    out = pixels.astype(np.float32, copy=True)
    if pixels.dtype.kind == "f":
        np.nan_to_num(
            out, copy=False, nan=lo, posinf=hi, neginf=lo
        )  # only float files carry NaN/inf
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _sniff_format(data: bytes, suffix: str) -> str | None:
    # DICOM first: its 128-byte preamble may itself hold a TIFF header (NEMA's WG04 CRs do).
    if data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return "dicom" if suffix in (".dcm", ".dicom") else None
