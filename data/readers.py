"""Read a radiograph file (PNG, JPEG, TIFF, DICOM) into a float32 H x W image in 0..1, bone bright.

The one place where calcidet decodes image files. Every failure comes out as ``RadiographReadError``
(path + readable reason) so that a folder of thousands of films can record the bad ones and go on.

    python -c "from calcidet.data.readers import read_radiograph; print(read_radiograph('film.dcm'))"

Decisions worth knowing:

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

import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pydicom
import tifffile
from PIL import Image

try:  # pydicom >= 3
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
except ImportError:  # pydicom 2.4
    from pydicom.pixel_data_handlers.util import apply_color_lut, apply_modality_lut, apply_voi_lut

    get_decoder = None

MAX_PIXELS = 100_000_000
# PIL warns above MAX_IMAGE_PIXELS and refuses at twice it; we refuse at MAX_PIXELS ourselves.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom")
NORMALIZE_MODES = ("percentile", "minmax", "none")

# Resolutions that image writers put in by default: they describe a screen or a printer, not a detector.
_DEFAULT_DPI = (1, 72, 96, 150, 300, 600)
# DICOM elements that say what a film shows, in the order a reader trusts them (the coded one first);
# CR readers put the exam menu ("CHEST PA") in AcquisitionDeviceProcessingDescription.
BODY_PART_TAGS = (
    "BodyPartExamined", "ViewPosition", "StudyDescription", "SeriesDescription", "ProtocolName",
    "RequestedProcedureDescription", "PerformedProcedureStepDescription",
    "AcquisitionDeviceProcessingDescription", "Modality",
)
# ~130k pixels on a regular grid pin the 0.5/99.5 percentiles to well under 1% of the range, at a
# tenth of the cost of all of a 1.3 Mpx film (sorting is what decoding time goes to after the codec).
_PERCENTILE_SAMPLE = 1 << 17


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


@dataclass
class _Decoded:
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
            dec = _decode_raster(data, fmt, max_side)
        else:
            dec = (_decode_tiff if fmt == "tiff" else _decode_dicom)(data, fmt)
    except RadiographReadError as exc:
        raise RadiographReadError(path_s, exc.reason) from exc
    except (
        Exception
    ) as exc:  # decoders raise anything from struct.error to MemoryError on bad input
        raise RadiographReadError(
            path_s, f"cannot decode {fmt}: {type(exc).__name__}: {exc}"
        ) from exc
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
        lo, hi = _finite_min_max(pixels)
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


def _finite_min_max(pixels: np.ndarray) -> tuple[float, float]:
    if pixels.dtype.kind == "f":
        finite = pixels[np.isfinite(pixels)]
        return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return float(pixels.min()), float(pixels.max())


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


def _check_size(height: int, width: int, what: str) -> None:
    if height <= 0 or width <= 0:
        raise RadiographReadError("", f"{what} declares an empty image ({width}x{height})")
    if height * width > MAX_PIXELS:
        raise RadiographReadError(
            "",
            f"{what} declares {width}x{height} = {height * width:,} pixels, over MAX_PIXELS={MAX_PIXELS:,}",
        )


# OpenCV's reduced greyscale modes: libjpeg decodes only the low DCT frequencies, at 1/d of the size.
_JPEG_REDUCED = ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
                 (2, cv2.IMREAD_REDUCED_GRAYSCALE_2))
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def jpeg_reduction(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """The largest libjpeg denominator (8, 4, 2, else 1) leaving the longest side >= ``max_side``.

    Returns:
        (denominator, OpenCV imread flag); (1, IMREAD_GRAYSCALE) when no reduction fits.
    """
    if max_side is not None:
        for denom, flag in _JPEG_REDUCED:
            if -(-max(height, width) // denom) >= max_side:  # libjpeg rounds scaled sizes up
                return denom, flag
    return 1, cv2.IMREAD_GRAYSCALE


def _decode_raster(data: bytes, fmt: str, max_side: int | None = None) -> _Decoded:
    """PNG and JPEG: PIL reads the header (size, mode, resolution), OpenCV decodes (faster)."""
    try:
        with (
            warnings.catch_warnings()
        ):  # PIL warns between 1x and 2x its limit; we raise below instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            header = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise RadiographReadError(
            "", f"{fmt.upper()} is over MAX_PIXELS={MAX_PIXELS:,}: {exc}"
        ) from exc
    except Image.UnidentifiedImageError as exc:  # its message names a BytesIO at a memory address
        raise RadiographReadError(
            "", f"corrupt {fmt.upper()} header (no image size or mode in it)"
        ) from exc
    width, height = header.size
    _check_size(height, width, fmt.upper())
    # Newer OpenCV refuses truncated JPEGs but older ones fill the rest with grey: check for EOI.
    if fmt == "jpeg" and not _jpeg_has_end(data):
        raise RadiographReadError("", "truncated JPEG (no end-of-image marker)")
    denom, reduced_flag = jpeg_reduction(height, width, max_side if fmt == "jpeg" else None)
    if header.mode == "CMYK":  # OpenCV's CMYK handling depends on its libjpeg; PIL's is reliable
        pixels, denom = np.asarray(header.convert("L")), 1
    elif denom > 1:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), reduced_flag)
    else:
        flags = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH  # luminance, 16-bit PNG stays 16-bit
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if pixels is None:
        raise RadiographReadError("", f"corrupt or truncated {fmt.upper()} (the decoder gave up)")
    bits = 8 * pixels.dtype.itemsize
    full_size = None
    if denom > 1:  # OpenCV applied the EXIF orientation; PIL's header size is as stored
        transposed = header.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSED
        full_size = (width, height) if transposed else (height, width)
    spacing = None
    if fmt == "png" and "dpi" in header.info:  # PIL reports pHYs in metres as dpi
        spacing = _spacing_from_dpi(header.info["dpi"])
    return _Decoded(
        pixels, (0.0, 2.0**bits - 1), bits, header.mode, spacing=spacing, spacing_source="PNG pHYs",
        full_size=full_size,
    )


def _jpeg_has_end(data: bytes) -> bool:
    """True if an end-of-image marker follows the first scan of the main image.

    The header segments are skipped by their lengths, so an EXIF thumbnail's own end marker does not
    count; searching after the scan (not only the file's tail) accepts trailers such as the video
    that phones append to "motion photos".
    """
    pos = 2  # after SOI
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: entropy-coded data follows, with 0xFF bytes stuffed
            return data.find(b"\xff\xd9", pos) >= 0
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return False


def _decode_tiff(data: bytes, fmt: str) -> _Decoded:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        if not tif.pages:
            raise RadiographReadError("", "TIFF has no image pages")
        page = tif.pages.first
        _check_size(int(page.imagelength), int(page.imagewidth), "TIFF")
        photometric, bits = page.photometric.name, int(page.bitspersample)
        spacing = None
        unit = int(page.tags.valueof("ResolutionUnit", 2))
        res = page.tags.valueof("XResolution"), page.tags.valueof("YResolution")
        if unit in (2, 3) and all(isinstance(r, tuple) and r[1] for r in res):
            per_inch = 1.0 if unit == 2 else 2.54
            spacing = _spacing_from_dpi(tuple(r[0] / r[1] * per_inch for r in res))
        try:
            pixels = page.asarray()
        except Exception as exc:
            # LZW, PackBits and JPEG need imagecodecs in tifffile; PIL's libtiff decodes them.
            pixels = _tiff_with_pil(data, exc)
    pixels = np.squeeze(pixels)
    if pixels.ndim == 3:  # samples last (RGB/RGBA) after tifffile's planar handling
        if pixels.shape[-1] not in (3, 4):
            raise RadiographReadError(
                "", f"TIFF has {pixels.shape[-1]} samples per pixel; expected 1, 3 or 4"
            )
        pixels = _luminance(pixels[..., :3])
    if pixels.dtype == bool:
        pixels, bits = pixels.astype(np.uint8), 1
    top = 1.0 if pixels.dtype.kind == "f" else 2.0**bits - 1
    return _Decoded(
        pixels,
        (0.0, top),
        bits,
        photometric,
        invert=photometric == "MINISWHITE",
        spacing=spacing,
        spacing_source="TIFF resolution",
    )


def _tiff_with_pil(data: bytes, tifffile_error: Exception) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode in ("RGB", "RGBA", "CMYK", "P", "LA", "YCbCr"):
                im = im.convert("L")
            return np.asarray(im)
    except Exception as exc:
        raise RadiographReadError("", f"cannot decode TIFF: {tifffile_error}") from exc


def _decode_dicom(data: bytes, fmt: str) -> _Decoded:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=data[128:132] != b"DICM")
    except Exception as exc:
        raise RadiographReadError(
            "", f"not a readable DICOM file: {type(exc).__name__}: {exc}"
        ) from exc
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if data[128:132] != b"DICM":
            raise RadiographReadError(
                "", "not a DICOM file (no 'DICM' header, and no pixel data found)"
            )
        sop = ds.get("SOPClassUID")
        raise RadiographReadError(
            "", "DICOM has no pixel data" + (f" (SOP class: {sop.name})" if sop else "")
        )
    _check_size(int(ds.get("Rows") or 0), int(ds.get("Columns") or 0), "DICOM")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise RadiographReadError(
            "", f"multi-frame DICOM ({frames} frames) is not a plain radiograph"
        )
    ts = getattr(ds, "file_meta", pydicom.Dataset()).get("TransferSyntaxUID")
    encoding = getattr(ds, "original_encoding", None)
    if (
        ts is None and encoding is not None
    ):  # a bare dataset (no file meta): how it was read names the syntax
        implicit, little = encoding
        ts = pydicom.uid.UID("1.2.840.10008.1.2" + ("" if implicit else ".1" if little else ".2"))
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts
    ts_text = "(none given)" if ts is None else str(ts) if ts.name == ts else f"{ts.name} ({ts})"
    if ts is not None and not _decoder_installed(ts):
        raise RadiographReadError(
            "", f"no installed decoder for transfer syntax {ts_text}; {_decoder_hint(ts)}"
        )
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise RadiographReadError(
            "",
            f"cannot decode DICOM pixel data in transfer syntax {ts_text}: {detail}; {_decoder_hint(ts)}",
        ) from exc
    photometric = str(ds.get("PhotometricInterpretation") or "") or None
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8 * pixels.dtype.itemsize)
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    if pixels.ndim == 3:  # RGB (pydicom already turned YBR into RGB)
        pixels = _luminance(pixels)
        value_range = (0.0, 2.0**bits - 1)
    else:
        pixels, value_range = _dicom_display_values(ds, pixels, bits)
    spacing, source = None, None
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = _valid_spacing(ds.get(keyword))
        if spacing is not None:
            source = keyword
            break
    return _Decoded(
        pixels,
        value_range,
        bits,
        photometric,
        invert=photometric == "MONOCHROME1",
        spacing=spacing,
        spacing_source=source,
        tags=_body_part_tags(ds),
    )


def _body_part_tags(ds: pydicom.Dataset) -> dict[str, str]:
    """The non-empty ``BODY_PART_TAGS`` as text; an element that cannot be decoded is left out."""
    tags = {}
    for keyword in BODY_PART_TAGS:
        try:
            value = ds.get(keyword)
            # A multi-valued element (VM > 1) is joined the way DICOM stores it.
            multi = isinstance(value, pydicom.multival.MultiValue)
            text = "\\".join(map(str, value)) if multi else str(value or "")
        except Exception:  # noqa: BLE001 - a bad character set in a description must not lose the film
            continue
        text = " ".join(text.split())
        if text:
            tags[keyword] = text
    return tags


def _dicom_display_values(
    ds: pydicom.Dataset, pixels: np.ndarray, bits: int
) -> tuple[np.ndarray, tuple[float, float]]:
    """Modality LUT then VOI LUT/window; also where the stored extremes land, for normalize="none"."""
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    ends = np.array(
        [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2**bits - 1], np.int64
    )
    pixels, ends = apply_modality_lut(pixels, ds), apply_modality_lut(ends, ds)
    try:
        pixels, ends = apply_voi_lut(pixels, ds), apply_voi_lut(ends, ds)
    except Exception as exc:  # a broken window (width 0, bad LUT) should not lose the film
        warnings.warn(f"ignoring unusable VOI LUT/window: {exc}", stacklevel=3)
    lo, hi = float(np.min(ends)), float(np.max(ends))
    return pixels, (lo, hi) if hi > lo else _finite_min_max(pixels)


def _decoder_installed(ts: pydicom.uid.UID) -> bool:
    """False only when pydicom (>= 3) says no installed plugin decodes ``ts``; decoding will tell otherwise."""
    if get_decoder is None:
        return True
    try:
        return bool(get_decoder(ts).is_available)
    except NotImplementedError:  # no decoder exists for this UID at all
        return False


def _decoder_hint(ts: pydicom.uid.UID | None) -> str:
    """Which package decodes a transfer syntax, for the error message."""
    for prefixes, packages in _DECODERS:
        if ts is not None and str(ts) in prefixes:
            return f"it is decoded by {packages}"
    return "pydicom has no decoder for it; convert the file first (e.g. gdcmconv --raw)"


_JPEG = "1.2.840.10008.1.2.4."
_DECODERS = (
    (
        (_JPEG + "50", _JPEG + "51", _JPEG + "57", _JPEG + "70"),
        "pylibjpeg + pylibjpeg-libjpeg (or gdcm)",
    ),
    ((_JPEG + "80", _JPEG + "81"), "pylibjpeg + pylibjpeg-libjpeg, or pyjpegls (or gdcm)"),
    (
        (_JPEG + "90", _JPEG + "91", _JPEG + "201", _JPEG + "202", _JPEG + "203"),
        "pylibjpeg + pylibjpeg-openjpeg (or gdcm)",
    ),
    (("1.2.840.10008.1.2.5",), "pydicom itself (numpy); pylibjpeg-rle is faster"),
    (
        (
            "1.2.840.10008.1.2",
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.2",
        ),
        "pydicom itself (uncompressed; the pixel data is probably damaged)",
    ),
)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an H x W x 3 RGB array, in the input's dtype range."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    luma = rgb.astype(np.float32) @ weights
    return luma if rgb.dtype.kind == "f" else np.round(luma).astype(rgb.dtype)


def _valid_spacing(value) -> tuple[float, float] | None:
    """(row, col) mm from a DICOM spacing element; None if absent or nonsense (RG1_UNCR says 0.0)."""
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (row, col) if 0.0 < row < 10.0 and 0.0 < col < 10.0 else None


def _spacing_from_dpi(dpi: tuple[float, float]) -> tuple[float, float] | None:
    x_dpi, y_dpi = (float(v) for v in dpi)
    if any(abs(d - round(d)) < 0.05 and round(d) in _DEFAULT_DPI for d in (x_dpi, y_dpi)):
        return None
    return _valid_spacing((25.4 / y_dpi, 25.4 / x_dpi)) if x_dpi > 0 and y_dpi > 0 else None
