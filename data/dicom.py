"""Decode a DICOM radiograph into ``DecodedPixels`` along the display pipeline (``data.readers`` normalises).

    python -c "from calcidet.data.dicom import decoder_hint; print(decoder_hint('1.2.840.10008.1.2.4.90'))"

Modality LUT (Rescale Slope/Intercept), then VOI LUT or window; MONOCHROME1 is marked for inversion
so that bone comes out bright. Multi-frame DICOM is refused: a cine or tomosynthesis series is not a
plain radiograph, and its frame 0 rarely is the one wanted. Pixel spacing comes from PixelSpacing,
else ImagerPixelSpacing. A transfer syntax without an installed decoder is named in the error, with
the package that decodes it.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom

from calcidet.data.decoded import (
    DecodedPixels,
    RadiographReadError,
    check_size,
    finite_min_max,
    luminance,
    valid_spacing,
)

try:  # pydicom >= 3
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
except ImportError:  # pydicom 2.4
    from pydicom.pixel_data_handlers.util import apply_color_lut, apply_modality_lut, apply_voi_lut

    get_decoder = None

# DICOM elements that say what a film shows, in the order a reader trusts them (the coded one first);
# CR readers put the exam menu ("CHEST PA") in AcquisitionDeviceProcessingDescription.
BODY_PART_TAGS = (
    "BodyPartExamined", "ViewPosition", "StudyDescription", "SeriesDescription", "ProtocolName",
    "RequestedProcedureDescription", "PerformedProcedureStepDescription",
    "AcquisitionDeviceProcessingDescription", "Modality",
)


def decode_dicom(data: bytes) -> DecodedPixels:
    """Decode a one-frame DICOM, with or without its Part 10 header (preamble and ``b"DICM"``).

    Raises:
        RadiographReadError: no pixel data, multi-frame, oversized, or no usable decoder (path left empty).
    """
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
    check_size(int(ds.get("Rows") or 0), int(ds.get("Columns") or 0), "DICOM")
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
            "", f"no installed decoder for transfer syntax {ts_text}; {decoder_hint(ts)}"
        )
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise RadiographReadError(
            "",
            f"cannot decode DICOM pixel data in transfer syntax {ts_text}: {detail}; {decoder_hint(ts)}",
        ) from exc
    photometric = str(ds.get("PhotometricInterpretation") or "") or None
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8 * pixels.dtype.itemsize)
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    if pixels.ndim == 3:  # RGB (pydicom already turned YBR into RGB)
        pixels = luminance(pixels)
        value_range = (0.0, 2.0**bits - 1)
    else:
        pixels, value_range = _display_values(ds, pixels, bits)
    spacing, source = None, None
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = valid_spacing(ds.get(keyword))
        if spacing is not None:
            source = keyword
            break
    return DecodedPixels(
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


def _display_values(
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
        # stacklevel 3: the warning points at read_radiograph's call, past decode_dicom
        warnings.warn(f"ignoring unusable VOI LUT/window: {exc}", stacklevel=3)
    lo, hi = float(np.min(ends)), float(np.max(ends))
    return pixels, (lo, hi) if hi > lo else finite_min_max(pixels)


def _decoder_installed(ts: pydicom.uid.UID) -> bool:
    """False only when pydicom (>= 3) says no installed plugin decodes ``ts``; decoding will tell otherwise."""
    if get_decoder is None:
        return True
    try:
        return bool(get_decoder(ts).is_available)
    except NotImplementedError:  # no decoder exists for this UID at all
        return False


def decoder_hint(ts: pydicom.uid.UID | None) -> str:
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
