"""Readers and folder discovery: every format, DICOM's display pipeline, and readable errors.

.venv/bin/python -m pytest tests/test_readers.py -q
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import struct
import zlib

import cv2
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image

from calcidet.data.folders import collect_inputs, find_radiographs, relative_name
from calcidet.data.readers import (
    MAX_PIXELS,
    Radiograph,
    RadiographReadError,
    is_dicom_file,
    normalize_intensity,
    read_radiograph,
)
from tests.bad_inputs import write_dicom


def gradient(dtype: type, height: int = 64, width: int = 80) -> np.ndarray:
    """Rows of a horizontal ramp over the dtype's full range."""
    top = np.iinfo(dtype).max
    return np.tile(np.linspace(0, top, width).round().astype(dtype), (height, 1))


# ---------------------------------------------------------------- raster formats


def _png(path, a):
    cv2.imwrite(str(path), a)


def _jpeg(path, a):
    cv2.imwrite(str(path), a, [cv2.IMWRITE_JPEG_QUALITY, 95])


def _tiff(path, a):
    tifffile.imwrite(path, a)


@pytest.mark.parametrize(
    "name, dtype, write, fmt, tol",
    [
        ("g8.png", np.uint8, _png, "png", 0.0),
        ("g16.png", np.uint16, _png, "png", 0.0),
        ("g8.jpg", np.uint8, _jpeg, "jpeg", 0.03),
        ("g8.tif", np.uint8, _tiff, "tiff", 0.0),
        ("g16.tiff", np.uint16, _tiff, "tiff", 0.0),
    ],
)
def test_greyscale_raster_round_trip(tmp_path, name, dtype, write, fmt, tol):
    raw = gradient(dtype)
    write(tmp_path / name, raw)
    rad = read_radiograph(tmp_path / name, normalize="none")
    assert isinstance(rad, Radiograph)
    assert rad.source_format == fmt and rad.bit_depth == 8 * np.dtype(dtype).itemsize
    assert rad.image.dtype == np.float32 and rad.image.shape == raw.shape == rad.original_size
    expected = raw / np.iinfo(dtype).max
    np.testing.assert_allclose(rad.image, expected, atol=tol + 1e-6)
    assert rad.path == str(tmp_path / name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rad.path = "elsewhere"  # type: ignore[misc]


def test_png16_keeps_60000_levels(tmp_path):
    raw = np.arange(60000, dtype=np.uint16).reshape(240, 250)
    cv2.imwrite(str(tmp_path / "deep.png"), raw)
    rad = read_radiograph(tmp_path / "deep.png", normalize="minmax")
    assert rad.bit_depth == 16
    assert len(np.unique(rad.image)) == 60000
    np.testing.assert_array_equal(np.round(rad.image * 59999).astype(np.uint16), raw)


def _colour_blocks() -> np.ndarray:
    """RGB image: a pure red, green, blue and mid-grey block side by side (32 px each)."""
    rgb = np.zeros((32, 128, 3), np.uint8)
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)]):
        rgb[:, 32 * i : 32 * (i + 1)] = colour
    return rgb


@pytest.mark.parametrize(
    "name, mode, photometric",
    [
        ("c.png", "RGB", "RGB"),
        ("ca.png", "RGBA", "RGBA"),
        ("cp.png", "P", "P"),
        ("c.jpg", "RGB", "RGB"),
        ("k.jpg", "CMYK", "CMYK"),
        ("c.tif", "RGB", "RGB"),
    ],
)
def test_colour_becomes_luminance(tmp_path, name, mode, photometric):
    im = Image.fromarray(_colour_blocks())
    if mode == "RGBA":
        im = im.convert("RGBA")
    elif mode == "P":
        im = im.quantize(4)
    elif mode == "CMYK":
        im = im.convert("CMYK")
    im.save(tmp_path / name, **({"quality": 98} if name.endswith(".jpg") else {}))
    rad = read_radiograph(tmp_path / name, normalize="none")
    assert rad.image.ndim == 2 and rad.image.shape == (32, 128)
    centres = rad.image[16, [16, 48, 80, 112]]
    # BT.601 luma of pure red, green, blue, and grey 128/255; JPEG chroma blur needs some slack.
    np.testing.assert_allclose(centres, [0.299, 0.587, 0.114, 128 / 255], atol=0.04)
    if not name.endswith(".tif"):
        assert rad.photometric == photometric


def test_jpeg_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(gradient(np.uint8, 40, 100)).save(tmp_path / "rot.jpg", exif=exif)
    assert read_radiograph(tmp_path / "rot.jpg").original_size == (100, 40)


def test_tiff_min_is_white_is_inverted_and_lzw_decodes(tmp_path):
    raw = gradient(np.uint16)
    tifffile.imwrite(tmp_path / "white.tif", raw, photometric="miniswhite")
    rad = read_radiograph(tmp_path / "white.tif", normalize="none")
    assert rad.photometric == "MINISWHITE"
    np.testing.assert_allclose(rad.image, 1.0 - raw / 65535, atol=1e-6)
    # LZW needs imagecodecs in tifffile; the reader falls back to PIL's libtiff.
    Image.fromarray(gradient(np.uint8)).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    lzw = read_radiograph(tmp_path / "lzw.tif", normalize="none")
    np.testing.assert_allclose(lzw.image, gradient(np.uint8) / 255, atol=1e-6)


@pytest.mark.parametrize("dpi, expected", [(254.0, (0.1, 0.1)), (72.0, None), (96.0, None)])
@pytest.mark.parametrize("ext, source", [(".png", "PNG pHYs"), (".tif", "TIFF resolution")])
def test_raster_resolution_gives_spacing_unless_a_default(tmp_path, ext, source, dpi, expected):
    Image.fromarray(gradient(np.uint8)).save(tmp_path / f"r{ext}", dpi=(dpi, dpi))
    rad = read_radiograph(tmp_path / f"r{ext}")
    if expected is None:
        assert rad.pixel_spacing_mm is None and rad.spacing_source is None
    else:
        np.testing.assert_allclose(rad.pixel_spacing_mm, expected, rtol=1e-3)
        assert rad.spacing_source == source


# ---------------------------------------------------------------- DICOM


def _nema(name: str) -> str:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not available (install pydicom-data)")
    return str(path)


@pytest.mark.parametrize("name, bits", [("RG3_UNCR.dcm", 10), ("RG1_UNCR.dcm", 15)])
def test_nema_monochrome1_cr_comes_out_bone_bright(name, bits):
    path = _nema(name)
    rad = read_radiograph(path)
    stored = pydicom.dcmread(path).pixel_array.astype(np.float64)
    assert (
        rad.source_format == "dicom" and rad.photometric == "MONOCHROME1" and rad.bit_depth == bits
    )
    assert rad.original_size == stored.shape and 0.0 <= rad.image.min() and rad.image.max() <= 1.0
    # MONOCHROME1 stores bone dark; inverted to MONOCHROME2, the image anti-correlates with storage.
    assert np.corrcoef(stored[::7, ::7].ravel(), rad.image[::7, ::7].ravel())[0, 1] < -0.9
    # RG1 declares PixelSpacing 0.0\0.0, which is no spacing at all.
    assert rad.pixel_spacing_mm is None and rad.spacing_source is None


def test_nema_jpeg2000_decodes_or_names_its_transfer_syntax():
    path = _nema("RG3_J2KR.dcm")
    try:
        rad = read_radiograph(path)
    except RadiographReadError as err:  # no openjpeg plugin installed
        assert "1.2.840.10008.1.2.4.90" in err.reason and "JPEG 2000" in err.reason
        assert "openjpeg" in err.reason
        return
    lossless = read_radiograph(_nema("RG3_UNCR.dcm"))
    np.testing.assert_array_equal(rad.image, lossless.image)


@pytest.mark.parametrize("bits", [10, 12, 16])
def test_dicom_bits_stored(tmp_path, bits):
    top = 2**bits - 1
    raw = np.linspace(0, top, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    path = write_dicom(tmp_path / f"b{bits}.dcm", raw, BitsStored=bits, HighBit=bits - 1)
    rad = read_radiograph(path, normalize="none")
    assert rad.bit_depth == bits
    np.testing.assert_allclose(rad.image, raw / top, atol=1e-6)


def test_dicom_monochrome1_is_the_inverse_of_monochrome2(tmp_path):
    raw = gradient(np.uint16) >> 4
    m1 = read_radiograph(
        write_dicom(
            tmp_path / "m1.dcm", raw, BitsStored=12, PhotometricInterpretation="MONOCHROME1"
        )
    )
    m2 = read_radiograph(write_dicom(tmp_path / "m2.dcm", raw, BitsStored=12))
    assert m2.image[0, -1] > m2.image[0, 0]
    np.testing.assert_allclose(m1.image, 1.0 - m2.image, atol=1e-6)


def test_dicom_rescale_is_applied_before_the_window(tmp_path):
    raw = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    # Window 500..1500 in rescaled units = stored 750..1250; without the rescale it would be 500..1500.
    path = write_dicom(
        tmp_path / "w.dcm",
        raw,
        BitsStored=12,
        RescaleSlope=2,
        RescaleIntercept=-1000,
        WindowCenter=1000,
        WindowWidth=1000,
    )
    image = read_radiograph(path, normalize="none").image.ravel()
    assert image[700] == 0.0 and image[1300] == 1.0
    np.testing.assert_allclose(image[[875, 1000, 1125]], [0.25, 0.5, 0.75], atol=0.01)


def test_dicom_window_saturates_outside_it(tmp_path):
    raw = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    plain = read_radiograph(
        write_dicom(tmp_path / "p.dcm", raw, BitsStored=12), normalize="minmax"
    ).image
    windowed = read_radiograph(
        write_dicom(tmp_path / "w.dcm", raw, BitsStored=12, WindowCenter=2048, WindowWidth=1024),
        normalize="minmax",
    ).image
    assert np.mean(plain == 0) < 0.01
    assert np.mean(windowed == 0) == pytest.approx(1536 / 4096, abs=0.01)
    assert np.mean(windowed == 1) == pytest.approx(1536 / 4096, abs=0.01)


@pytest.mark.parametrize(
    "elements, spacing, source",
    [
        ({"PixelSpacing": [0.15, 0.2]}, (0.15, 0.2), "PixelSpacing"),
        ({"ImagerPixelSpacing": [0.1, 0.1]}, (0.1, 0.1), "ImagerPixelSpacing"),
        (
            {"PixelSpacing": [0.14, 0.14], "ImagerPixelSpacing": [0.1, 0.1]},
            (0.14, 0.14),
            "PixelSpacing",
        ),
        (
            {"PixelSpacing": [0, 0], "ImagerPixelSpacing": [0.1, 0.1]},
            (0.1, 0.1),
            "ImagerPixelSpacing",
        ),
        ({}, None, None),
    ],
)
def test_dicom_spacing_and_its_source(tmp_path, elements, spacing, source):
    rad = read_radiograph(write_dicom(tmp_path / "s.dcm", gradient(np.uint16), **elements))
    assert rad.pixel_spacing_mm == spacing and rad.spacing_source == source


@pytest.mark.filterwarnings(
    "ignore:Expected explicit VR"
)  # pydicom cannot know a made-up syntax's VR
@pytest.mark.parametrize(
    "uid, words",
    [
        ("1.2.840.10008.1.2.4.80", ["1.2.840.10008.1.2.4.80", "JPEG-LS"]),
        ("1.2.840.10008.1.2.5", ["1.2.840.10008.1.2.5", "RLE"]),
        ("1.2.3.4.5.6.7", ["1.2.3.4.5.6.7", "no decoder"]),
    ],
)
def test_dicom_undecodable_compression_names_the_transfer_syntax(tmp_path, uid, words):
    from pydicom.encaps import encapsulate

    path = write_dicom(
        tmp_path / "c.dcm",
        gradient(np.uint16),
        transfer_syntax=uid,
        pixel_data=encapsulate([b"\x00garbage\xff" * 20]),
    )
    with pytest.raises(RadiographReadError) as info:
        read_radiograph(path)
    for word in words:
        assert word in info.value.reason
    assert str(path) in str(info.value)


def test_dicom_missing_plugin_names_transfer_syntax_and_package(tmp_path, monkeypatch):
    import calcidet.data.dicom as dicom

    monkeypatch.setattr(dicom, "_decoder_installed", lambda ts: False)  # as without openjpeg
    with pytest.raises(RadiographReadError) as info:
        read_radiograph(_nema("RG3_J2KR.dcm"))
    reason = info.value.reason
    assert (
        "JPEG 2000" in reason
        and "1.2.840.10008.1.2.4.90" in reason
        and "pylibjpeg-openjpeg" in reason
    )


@pytest.mark.parametrize(
    "elements, words",
    [
        ({"NumberOfFrames": 3}, ["multi-frame", "3 frames"]),
        ({"Rows": 12000, "Columns": 10000}, ["MAX_PIXELS"]),
    ],
)
def test_dicom_refused_before_decoding(tmp_path, elements, words):
    path = write_dicom(tmp_path / "r.dcm", gradient(np.uint16), **elements)
    with pytest.raises(RadiographReadError) as info:
        read_radiograph(path)
    assert all(w in info.value.reason for w in words)


def test_dicom_without_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "sr.dcm", gradient(np.uint16), PixelData=None)
    with pytest.raises(RadiographReadError, match="no pixel data"):
        read_radiograph(path)


def test_extensionless_dicom_is_read_and_detected(tmp_path):
    path = write_dicom(tmp_path / "IM000123", gradient(np.uint16), BitsStored=16)
    assert is_dicom_file(path) and read_radiograph(path).source_format == "dicom"
    (tmp_path / "short").write_bytes(b"DICM")
    assert not is_dicom_file(tmp_path / "short") and not is_dicom_file(tmp_path / "missing")


def test_bare_dicom_dataset_without_file_meta(tmp_path):
    """Old exports write a dataset with no preamble and no file meta; the .dcm extension says DICOM."""
    if int(pydicom.__version__.split(".")[0]) < 3:
        pytest.skip("dcmwrite(implicit_vr=...) needs pydicom 3")
    ds = pydicom.Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 8, 10, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(80, dtype="<u2") * 50).tobytes()
    pydicom.dcmwrite(tmp_path / "bare.dcm", ds, implicit_vr=True, little_endian=True)
    rad = read_radiograph(tmp_path / "bare.dcm", normalize="none")
    np.testing.assert_allclose(rad.image.ravel(), np.arange(80) * 50 / 4095, atol=1e-6)


# ---------------------------------------------------------------- errors


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\0" * 64)
    chunk += (
        struct.pack(">I", len(idat))
        + b"IDAT"
        + idat
        + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    )
    return b"\x89PNG\r\n\x1a\n" + chunk


def _good(ext: str) -> bytes:
    return cv2.imencode(ext, gradient(np.uint8, 128, 128) ^ 0x5A)[1].tobytes()


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("empty.png", b"", ["empty"]),
        ("cut.png", _good(".png")[:300], ["png"]),
        ("cut.jpg", _good(".jpg")[:400], ["JPEG"]),
        ("notes.png", b"patient notes, not an image\n", ["not a PNG, JPEG, TIFF or DICOM"]),
        ("junk.dcm", b"\x01\x02 definitely not DICOM" * 10, ["DICOM"]),
        ("cut.tif", b"II*\x00\x08\x00\x00\x00\xff", ["tiff"]),
        ("bomb.png", _png_header(20000, 6000), ["MAX_PIXELS"]),
        ("megabomb.png", _png_header(30000, 30000), ["MAX_PIXELS"]),
    ],
)
def test_bad_files_raise_readable_errors(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RadiographReadError) as info:
        read_radiograph(path)
    err = info.value
    assert isinstance(err, ValueError) and err.path == str(path)
    assert str(err) == f"{path}: {err.reason}"
    assert all(w.lower() in err.reason.lower() for w in words), err.reason


def test_missing_file_and_directory_raise_readable_errors(tmp_path):
    for path in (tmp_path / "nope.png", tmp_path):
        with pytest.raises(RadiographReadError, match="cannot open"):
            read_radiograph(path)


def test_error_survives_pickling():
    err = pickle.loads(pickle.dumps(RadiographReadError("a/b.png", "truncated")))
    assert (err.path, err.reason, str(err)) == ("a/b.png", "truncated", "a/b.png: truncated")
    assert MAX_PIXELS == Image.MAX_IMAGE_PIXELS == 100_000_000


# ---------------------------------------------------------------- normalisation


def test_percentile_normalisation_ignores_outliers():
    rng = np.random.default_rng(0)
    body = rng.integers(1000, 2000, (200, 200)).astype(np.uint16)
    body.ravel()[rng.choice(body.size, 10, replace=False)] = [65535] * 5 + [0] * 5
    spread = normalize_intensity(body, "percentile")
    squashed = normalize_intensity(body, "minmax")
    assert np.percentile(spread, 99) - np.percentile(spread, 1) > 0.9
    assert np.percentile(squashed, 99) - np.percentile(squashed, 1) < 0.05


@pytest.mark.parametrize("mode", ["percentile", "minmax"])
def test_constant_and_mostly_empty_images(mode):
    flat = normalize_intensity(np.full((50, 60), 1234, np.uint16), mode)
    assert flat.dtype == np.float32 and not flat.any()
    sparse = np.zeros((100, 100), np.uint8)
    sparse[:5, :5] = 200  # 0.25 % of the film: both percentiles land on the background
    out = normalize_intensity(sparse, mode)
    assert out[0, 0] == 1.0 and out[-1, -1] == 0.0


def test_unknown_normalisation_is_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), gradient(np.uint8))
    with pytest.raises(ValueError, match="normalize"):
        read_radiograph(tmp_path / "a.png", normalize="zscore")


# ---------------------------------------------------------------- folders


def test_find_radiographs_walks_sorts_and_filters(tmp_path):
    dicom_bytes = b"\0" * 128 + b"DICM" + b"\0" * 16
    files = {
        "b.png": b"x",
        "A/c.JPG": b"x",
        "A/d.TIFF": b"x",
        "A/sub/e.DCM": b"x",
        "A/sub/IM0001": dicom_bytes,
        "A/sub/1.2.840.99": dicom_bytes,
        "A/f.jpeg": b"x",
        "notes.txt": b"x",
        "A/table.csv": b"x",
        ".hidden/g.png": b"x",
        ".DS_Store": b"x",
        "A/._c.JPG": b"x",
        "A/sub/README": b"plain text",
    }
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(content)
    try:
        os.symlink(tmp_path, tmp_path / "A" / "loop")  # would recurse forever if followed
    except OSError:
        pass
    found = find_radiographs(tmp_path)
    names = [relative_name(p, tmp_path) for p in found]
    assert names == [
        "A/c.JPG",
        "A/d.TIFF",
        "A/f.jpeg",
        "A/sub/1.2.840.99",
        "A/sub/IM0001",
        "A/sub/e.DCM",
        "b.png",
    ]
    assert names == sorted(names) and all(p.is_file() for p in found)


def test_single_file_root_and_missing_root(tmp_path):
    film = tmp_path / "knee.png"
    film.write_bytes(b"x")
    assert find_radiographs(film) == [film] and find_radiographs(str(film)) == [film]
    assert relative_name(film, film) == "knee.png"
    with pytest.raises(FileNotFoundError):
        find_radiographs(tmp_path / "absent")


def test_collect_inputs_names_files_across_several_inputs(tmp_path) -> None:
    for folder in ("a/images", "b/images"):
        (tmp_path / folder / "sub").mkdir(parents=True)
        (tmp_path / folder / "sub" / "x.png").write_bytes(b"")
    (tmp_path / "single.png").write_bytes(b"")
    (tmp_path / "a/images/out").mkdir()
    (tmp_path / "a/images/out/overlay.png").write_bytes(b"")  # our own output inside an input
    files, names = collect_inputs([str(tmp_path / "a/images"), str(tmp_path / "b/images"),
                                   str(tmp_path / "single.png")], exclude=tmp_path / "a/images/out")
    assert names == ["images-2/sub/x.png", "images/sub/x.png", "single.png"]
    assert files[0] == tmp_path / "b/images/sub/x.png"
    _, names = collect_inputs([str(tmp_path / "b/images")])
    assert names == ["sub/x.png"]
    with pytest.raises(FileNotFoundError):
        collect_inputs([str(tmp_path / "missing")])
