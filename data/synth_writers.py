"""File writers for synthetic films: the formats and bit depths calcidet must read.

Everything written is a pure function of the film and (seed, index): no dates, times or random UIDs,
so the same seed gives byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile

FORMATS = ("png8", "png16", "jpeg", "tiff16")
FORMAT_WEIGHTS = (0.45, 0.2, 0.2, 0.15)
EXTENSIONS = {"png8": ".png", "png16": ".png", "jpeg": ".jpg", "tiff16": ".tif", "dicom": ".dcm"}


def write_image(out_dir: Path, index: int, item: dict[str, Any], seed: int) -> str:
    """Write ``item["film"]`` (float 0..1, bone bright) in ``item["format"]``; returns the relative name."""
    fmt = item["format"]
    name = f"images/{index + 1:06d}{EXTENSIONS[fmt]}"
    path = out_dir / name
    film = item["film"]
    if fmt == "png8":
        cv2.imwrite(str(path), np.round(film * 255).astype(np.uint8))
    elif fmt == "png16":
        cv2.imwrite(str(path), np.round(film * 65535).astype(np.uint16))
    elif fmt == "jpeg":
        cv2.imwrite(str(path), np.round(film * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])
    elif fmt == "tiff16":
        tifffile.imwrite(path, np.round(film * 65535).astype(np.uint16), photometric="minisblack", metadata=None)
    else:
        _write_dicom(path, film, item, seed, index)
    return name


def _write_dicom(path: Path, film: np.ndarray, item: dict[str, Any], seed: int, index: int) -> None:
    """A CR/DX-like DICOM: 10-16 stored bits, rescale, sometimes MONOCHROME1 and ImagerPixelSpacing."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng([seed, index, 7])
    bits = int(rng.choice([10, 12, 14, 16]))
    top = 2**bits - 1
    mono1 = rng.random() < 0.5
    stored = np.round((1.0 - film if mono1 else film) * top).astype(np.uint16)
    uid = lambda kind: generate_uid(entropy_srcs=["calcidet-synth", str(seed), str(index), kind])  # noqa: E731
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    meta.MediaStorageSOPInstanceUID = uid("sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("study"), uid("series")
    ds.Modality = "CR"
    ds.PatientID = f"SYNTH{seed:04d}{index:06d}"
    ds.BodyPartExamined = item["joint"].upper()
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    ds.RescaleSlope, ds.RescaleIntercept = float(rng.choice([1.0, 0.5, 2.0])), float(rng.choice([0.0, -1024.0]))
    spacing = f"{item['spacing']:.5f}"
    if rng.random() < 0.5:
        ds.PixelSpacing = [spacing, spacing]
    else:
        ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
