"""Decode PNG, JPEG and TIFF radiographs into ``DecodedPixels`` (``data.readers`` normalises them).

    python -c "from calcidet.data.raster import jpeg_reduction; print(jpeg_reduction(2500, 2000, 512))"

PIL reads the headers (size, mode, resolution), OpenCV decodes PNG and JPEG (faster), tifffile decodes
TIFF with PIL as the fallback for codecs it lacks. Colour becomes luminance; JPEG EXIF orientation is
applied, as viewers do. A resolution that is a screen/print default (72, 96, ... dpi) says nothing
about the detector, so it gives no pixel spacing.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
import tifffile
from PIL import Image

from calcidet.data.decoded import (
    MAX_PIXELS,
    DecodedPixels,
    RadiographReadError,
    check_size,
    luminance,
    valid_spacing,
)

# PIL warns above MAX_IMAGE_PIXELS and refuses at twice it; we refuse at MAX_PIXELS ourselves.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Resolutions that image writers put in by default: they describe a screen or a printer, not a detector.
_DEFAULT_DPI = (1, 72, 96, 150, 300, 600)
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


def decode_raster(data: bytes, fmt: str, max_side: int | None = None) -> DecodedPixels:
    """Decode a PNG or JPEG (``fmt`` "png" or "jpeg"); a JPEG at a reduced size when ``max_side`` allows.

    Raises:
        RadiographReadError: a corrupt, truncated or oversized file (path left empty).
    """
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
    check_size(height, width, fmt.upper())
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
    return DecodedPixels(
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


def decode_tiff(data: bytes) -> DecodedPixels:
    """Decode the first page of a TIFF (greyscale, RGB/RGBA, 1-bit, float).

    Raises:
        RadiographReadError: no pages, an oversized page or an unusable sample layout (path left empty).
    """
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        if not tif.pages:
            raise RadiographReadError("", "TIFF has no image pages")
        page = tif.pages.first
        check_size(int(page.imagelength), int(page.imagewidth), "TIFF")
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
        pixels = luminance(pixels[..., :3])
    if pixels.dtype == bool:
        pixels, bits = pixels.astype(np.uint8), 1
    top = 1.0 if pixels.dtype.kind == "f" else 2.0**bits - 1
    return DecodedPixels(
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


def _spacing_from_dpi(dpi: tuple[float, float]) -> tuple[float, float] | None:
    x_dpi, y_dpi = (float(v) for v in dpi)
    if any(abs(d - round(d)) < 0.05 and round(d) in _DEFAULT_DPI for d in (x_dpi, y_dpi)):
        return None
    return valid_spacing((25.4 / y_dpi, 25.4 / x_dpi)) if x_dpi > 0 and y_dpi > 0 else None
