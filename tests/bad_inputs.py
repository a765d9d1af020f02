"""A corpus of broken, hostile and odd radiograph files, written on the fly for the hardening tests.

    python -c "from tests.bad_inputs import make_bad_corpus; print(make_bad_corpus('/tmp/bad'))"

Nothing is downloaded: every file is built here from a few bytes, PIL/OpenCV encoders and pydicom.
Each kind says what ``calcidet detect`` must write in ``images.csv`` for it:

- ``"error"``: a row with status ``error`` and a reason holding all of ``words`` (case-insensitive);
- ``"ok"``: odd but valid (RGBA, palette, CMYK, 1 pixel, 4000 x 3, constant 16-bit, ...): status ``ok``;
- ``"absent"``: not a file to list at all (symlink loops, a directory named ``x.png``): no row, no crash.

Beside the corpus, the writers tests share: DICOM files (``dicom_bytes``, ``write_dicom``), good films
for the detect pipeline (``write_blurred_film``, ``make_good_images``) and checkpoints of an untrained
network (``write_untrained_checkpoint``). Test modules import them from here, never from one another.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
import tifffile
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Expectation:
    """What ``calcidet detect`` must report for one file of the corpus.

    Attributes:
        kind: what the file is, in words (for reports).
        status: "ok", "error" or "absent" (not listed: no row).
        words: for "error", words the reason must contain (case-insensitive, any order).
    """

    kind: str
    status: str
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class BadKind:
    """One kind of input: the name detect gives it (relative to the corpus root) and how to write it."""

    name: str
    expect: Expectation
    write: Callable[[Path], None]
    needs_non_root: bool = False  # root reads anything: a permission test means nothing as root


# ---------------------------------------------------------------- small encoders


def noise_image(height: int = 96, width: int = 96, seed: int = 0, dtype: type = np.uint8) -> np.ndarray:
    """A smooth ramp plus noise, so that compressed files are big enough to truncate meaningfully."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    ramp = np.linspace(0, top * 0.8, width)[None, :] + rng.uniform(0, top * 0.2, (height, width))
    return ramp.astype(dtype)


def encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok, ext
    return buf.tobytes()


def pil_bytes(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, bit_depth: int = 8) -> bytes:
    """A well-formed PNG header declaring ``width`` x ``height`` greyscale, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 256)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 frame header is patched to declare ``width`` x ``height``."""
    data = bytearray(encode(".jpg", noise_image(32, 32)))
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    """A little-endian baseline TIFF IFD declaring ``width`` x ``height`` 8-bit grey, with 16 bytes of strip."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 8 + 4), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHII", tag, typ, count, value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes(16)


def dicom_bytes(pixels: np.ndarray | None = None, *, transfer_syntax: str = ExplicitVRLittleEndian,
                pixel_data: bytes | None = None, **elements) -> bytes:
    """A one-frame 16-bit MONOCHROME2 CR DICOM; ``pixel_data`` replaces the pixels (encapsulated)."""
    pixels = noise_image(48, 40, dtype=np.uint16) if pixels is None else pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset("corpus.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CR_STORAGE, meta.MediaStorageSOPInstanceUID, "CR"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype("<u2").tobytes() if pixel_data is None else pixel_data
    if pixel_data is not None:
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    for key, value in elements.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_dicom(path: Path, pixels: np.ndarray | None = None, **kwargs) -> Path:
    """Write ``dicom_bytes(pixels, **kwargs)`` to ``path``; returns ``path``."""
    path.write_bytes(dicom_bytes(pixels, **kwargs))
    return path


def _bytes(content: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content() if callable(content) else content)


# ---------------------------------------------------------------- writers of the odd kinds


def _unreadable(path: Path) -> None:
    path.write_bytes(encode(".png", noise_image()))
    path.chmod(0)


def _symlink_loop(path: Path) -> None:
    other = path.with_name("loop_b.png")
    os.symlink(other.name, path)
    os.symlink(path.name, other)


def _dir_link_to_parent(path: Path) -> None:
    os.symlink(".", path)


def _dangling_link(path: Path) -> None:
    os.symlink("does-not-exist.png", path)


def _directory_named_png(path: Path) -> None:
    path.mkdir()  # an empty folder with an image's name: walked into, never read as a file


def _non_utf8_name(path: Path) -> None:
    # ``path`` carries the name as Python decodes it (surrogate escapes); write through bytes to be sure.
    with open(os.fsencode(path), "wb") as f:
        f.write(encode(".png", noise_image(seed=7)))


def _constant_png16() -> bytes:
    return encode(".png", np.full((40, 40), 1234, np.uint16))


def _palette_png() -> bytes:
    return pil_bytes(Image.fromarray(noise_image()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG")


def _rgba_png() -> bytes:
    rgba = np.dstack([noise_image(seed=s) for s in range(3)] + [np.full((96, 96), 200, np.uint8)])
    return pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG")


def _cmyk_jpeg() -> bytes:
    return pil_bytes(Image.fromarray(np.dstack([noise_image(seed=s) for s in range(3)]), "RGB").convert("CMYK"),
                     "JPEG")


def _corrupt_idat_png() -> bytes:
    data = bytearray(encode(".png", noise_image()))
    idat = data.find(b"IDAT")
    for k in range(40, 80):  # scramble the compressed stream; the CRC no longer matches either
        data[idat + k] ^= 0xA5
    return bytes(data)


def _jpeg_garbage_after_header() -> bytes:
    good = encode(".jpg", noise_image())
    header_end = good.find(b"\xff\xdb")  # keep SOI + APP0 (JFIF), then noise instead of tables/frame
    return good[:header_end] + _garbage(2000, 3) + b"\xff\xd9"


def _jpeg_garbage_scan() -> bytes:
    """Valid headers (tables, frame, scan) but random entropy-coded data: libjpeg only warns."""
    good = encode(".jpg", noise_image())
    sos = good.find(b"\xff\xda")
    start = sos + 2 + int.from_bytes(good[sos + 2:sos + 4], "big")
    noise = np.random.default_rng(5).integers(0, 255, len(good) - start - 2, np.uint8)  # no 0xFF: no markers
    return good[:start] + noise.tobytes() + b"\xff\xd9"


def _truncated(content: Callable[[], bytes], keep: float) -> Callable[[], bytes]:
    def cut() -> bytes:
        data = content()
        return data[:int(len(data) * keep)]

    return cut


def _multi_frame_dicom() -> bytes:
    frames = np.stack([noise_image(48, 40, seed=s, dtype=np.uint16) for s in range(3)])
    return _with_pixels(dicom_bytes(frames[0], NumberOfFrames=3), frames)


def _with_pixels(data: bytes, frames: np.ndarray) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PixelData = frames.astype("<u2").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _garbage(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, np.uint8).tobytes()


def _absurd_spacing_dicom() -> bytes:
    # pydicom refuses to write a DS like this, so write a placeholder and swap the bytes (same length).
    data = dicom_bytes(PixelSpacing=["0.1234567", "0.1234567"])
    assert data.count(b"0.1234567\\0.1234567") == 1
    return data.replace(b"0.1234567\\0.1234567", b"banana\\1e400".ljust(19))


def _float_tiff_with_nan() -> bytes:
    image = noise_image().astype(np.float32) / 255
    image[::7, ::5] = np.nan
    image[3, 3] = np.inf
    buf = io.BytesIO()
    tifffile.imwrite(buf, image)
    return buf.getvalue()


# Names are relative to the corpus root, as ``calcidet detect`` names them in images.csv.
KINDS: list[BadKind] = [
    BadKind("zero_bytes.png", Expectation("zero-byte file", "error", ("empty",)), _bytes(b"")),
    BadKind("truncated.png", Expectation("truncated PNG", "error", ("png",)),
            _bytes(_truncated(lambda: encode(".png", noise_image()), 0.5))),
    BadKind("truncated.jpg", Expectation("truncated JPEG", "error", ("truncated", "jpeg")),
            _bytes(_truncated(lambda: encode(".jpg", noise_image()), 0.5))),
    BadKind("truncated.dcm", Expectation("truncated DICOM", "error", ("dicom",)),
            _bytes(_truncated(dicom_bytes, 0.6))),
    BadKind("notes.png", Expectation("text file named .png", "error", ("not a png",)),
            _bytes(b"Patient notes, not an image.\nSecond line.\n")),
    BadKind("notes.dcm", Expectation("text file named .dcm", "error", ("dicom",)),
            _bytes(b"Patient notes, not an image.\n" * 20)),
    BadKind("bomb.png", Expectation("PNG bomb: 100000 x 100000 declared, 300 bytes", "error", ("max_pixels",)),
            _bytes(lambda: png_declaring(100_000, 100_000))),
    BadKind("bomb_just_over.png", Expectation("PNG declaring 10001 x 10000 (just over MAX_PIXELS)", "error",
                                              ("max_pixels",)), _bytes(lambda: png_declaring(10_001, 10_000))),
    BadKind("bomb.jpg", Expectation("JPEG whose SOF declares 65000 x 65000", "error", ("max_pixels",)),
            _bytes(lambda: jpeg_declaring(65_000, 65_000))),
    BadKind("bomb.tif", Expectation("TIFF declaring 100000 x 100000", "error", ("max_pixels",)),
            _bytes(lambda: tiff_declaring(100_000, 100_000))),
    BadKind("zero_width.png", Expectation("PNG declaring a width of 0", "error", ("png",)),
            _bytes(lambda: png_declaring(0, 64))),
    BadKind("corrupt_idat.png", Expectation("PNG with a scrambled IDAT (bad CRC)", "error", ("png",)),
            _bytes(_corrupt_idat_png)),
    BadKind("cmyk.jpg", Expectation("CMYK JPEG", "ok"), _bytes(_cmyk_jpeg)),
    BadKind("palette.png", Expectation("palette PNG (16 colours)", "ok"), _bytes(_palette_png)),
    BadKind("rgba.png", Expectation("RGBA PNG", "ok"), _bytes(_rgba_png)),
    BadKind("one_pixel.png", Expectation("1 x 1 pixel PNG", "ok"),
            _bytes(lambda: encode(".png", np.full((1, 1), 77, np.uint8)))),
    BadKind("aspect_4000x3.png", Expectation("extreme aspect ratio, 4000 x 3", "ok"),
            _bytes(lambda: encode(".png", noise_image(3, 4000)))),
    BadKind("constant16.png", Expectation("16-bit PNG, one value everywhere", "ok"), _bytes(_constant_png16)),
    BadKind("float_nan.tif", Expectation("float32 TIFF with NaN and inf pixels", "ok"), _bytes(_float_tiff_with_nan)),
    BadKind("no_pixels.dcm", Expectation("DICOM without pixel data", "error", ("no pixel data",)),
            _bytes(lambda: dicom_bytes(PixelData=None))),
    BadKind("multiframe.dcm", Expectation("multi-frame DICOM (3 frames)", "error", ("multi-frame",)),
            _bytes(_multi_frame_dicom)),
    BadKind("made_up_syntax.dcm", Expectation("DICOM with a made-up transfer syntax UID", "error",
                                              ("transfer syntax",)),
            _bytes(lambda: dicom_bytes(transfer_syntax="1.2.3.4.5.6.7.8.9"))),
    BadKind("garbage_jpegls.dcm", Expectation("DICOM JPEG-LS with garbage fragments", "error",
                                              ("transfer syntax",)),
            _bytes(lambda: dicom_bytes(transfer_syntax="1.2.840.10008.1.2.4.80",
                                       pixel_data=encapsulate([_garbage(500, 1)])))),
    BadKind("garbage_rle.dcm", Expectation("DICOM RLE with garbage fragments", "error", ("transfer syntax",)),
            _bytes(lambda: dicom_bytes(transfer_syntax="1.2.840.10008.1.2.5",
                                       pixel_data=encapsulate([_garbage(500, 2)])))),
    BadKind("absurd_spacing.dcm", Expectation("DICOM with PixelSpacing 'banana\\1e400'", "ok"),
            _bytes(_absurd_spacing_dicom)),
    BadKind("huge_declared.dcm", Expectation("DICOM declaring 65535 x 65535, 4 KB of pixels", "error",
                                             ("max_pixels",)),
            _bytes(lambda: dicom_bytes(Rows=65535, Columns=65535))),
    BadKind("large_declared.dcm", Expectation("DICOM declaring 9000 x 9000 (under MAX_PIXELS), 4 KB of pixels",
                                              "error", ("dicom",)),
            _bytes(lambda: dicom_bytes(Rows=9000, Columns=9000))),
    BadKind("empty.tif", Expectation("empty TIFF (header, no image directory)", "error", ("tiff",)),
            _bytes(b"II*\x00\x00\x00\x00\x00")),
    BadKind("garbage_after_header.jpg", Expectation("JPEG: SOI + JFIF header, then garbage", "error", ("jpeg",)),
            _bytes(_jpeg_garbage_after_header)),
    BadKind("garbage_scan.jpg", Expectation("JPEG: valid headers, random scan data (decodes to noise)", "ok"),
            _bytes(_jpeg_garbage_scan)),
    BadKind("unreadable.png", Expectation("file without read permission (chmod 0)", "error", ("cannot open",)),
            _unreadable, needs_non_root=True),
    BadKind("loop_a.png", Expectation("symlink loop loop_a.png -> loop_b.png -> loop_a.png", "absent"),
            _symlink_loop),
    BadKind("up", Expectation("directory symlink to its own parent", "absent"), _dir_link_to_parent),
    BadKind("dangling.png", Expectation("symlink to a missing file", "absent"), _dangling_link),
    BadKind("folder.png", Expectation("a directory named folder.png", "absent"), _directory_named_png),
    BadKind(os.fsdecode(b"\xff\xfe-latin1-\xe9.png"), Expectation("non-UTF-8 file name (good PNG)", "ok"),
            _non_utf8_name),
]


def make_bad_corpus(root: str | Path) -> dict[str, Expectation]:
    """Write every kind of ``KINDS`` under ``root`` (created if needed).

    The unreadable-file kind is left out when it turns out readable anyway (running as root).

    Returns:
        name (relative to ``root``, as ``calcidet detect`` names it) -> what detect must report.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind in KINDS:
        path = root / kind.name
        kind.write(path)
        if kind.needs_non_root and os.access(path, os.R_OK):
            path.chmod(0o644)
            path.unlink()
            continue
        written[kind.name] = kind.expect
    if "loop_a.png" in written:  # its partner is part of the same kind
        written["loop_b.png"] = written["loop_a.png"]
    return written


def make_good_images(root: str | Path) -> dict[str, Expectation]:
    """Three readable films (PNG, JPEG, DICOM) under ``root/good``; returns name -> expectation "ok"."""
    root = Path(root)
    (root / "good").mkdir(parents=True, exist_ok=True)
    files = {
        "good/film.png": encode(".png", noise_image(120, 100, seed=11)),
        "good/film.jpg": encode(".jpg", noise_image(100, 120, seed=12)),
        "good/film.dcm": dicom_bytes(noise_image(80, 64, seed=13, dtype=np.uint16), PixelSpacing=[0.15, 0.15]),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return {name: Expectation("good film", "ok") for name in files}


def write_blurred_film(path: Path, shape: tuple[int, int], seed: int) -> Path:
    """An 8-bit PNG of blurred, stretched noise: blobs an untrained ``fcos_tiny`` puts boxes on."""
    noise = np.random.default_rng(seed).random(shape, dtype=np.float32)
    cv2.imwrite(str(path), (cv2.GaussianBlur(noise, (0, 0), 3) * 255 * 4).clip(0, 255).astype(np.uint8))
    return path


def write_untrained_checkpoint(path: str | Path, image_size: int = 64, seed: int = 0, *,
                               threshold: float | None = None, even_scores: bool = False) -> Path:
    """A calcidet checkpoint of a freshly initialised ``fcos_tiny`` (the real network, random weights).

    Seconds to make instead of a training run: enough for tests and benchmarks of the detect
    pipeline, whose behaviour does not depend on what the network has learnt.

    Args:
        path: where to write it (parent folders are created).
        image_size: the network's input size.
        seed: torch seed for the initial weights.
        threshold: stored as the checkpoint's operating threshold; ``None`` stores none.
        even_scores: zero the classification bias, so scores sit near 0.5 instead of torchvision's
            prior of about 0.07 and every blob gets boxes.

    Returns:
        ``path``.
    """
    import torch

    from calcidet.model.builder import build_detector

    path = Path(path)
    torch.manual_seed(seed)
    model = build_detector(arch="fcos_tiny", num_classes=2, min_size=image_size, max_size=image_size)
    if even_scores:
        torch.nn.init.zeros_(model.net.head.classification_head.cls_logits.bias)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta = {"class_names": ["calcinosis"], "image_size": image_size, "arch": "fcos_tiny"}
    if threshold is not None:
        meta["operating_threshold"] = threshold
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "calcidet": meta, "epoch": 0, "global_step": 0}, path)
    return path


def random_results(seed: int, n: int, two_classes: bool = False, first_id: int = 1, id_step: int = 1) -> list:
    """``n`` ``model.metrics.ImageResult``: 0-2 lesions each, found with 4 px jitter, plus 2 random boxes.

    ``two_classes`` labels lesions and boxes 1 or 2 at random (per-class results must stay apart).
    """
    from calcidet.model.metrics import ImageResult

    rng = np.random.default_rng(seed)
    results = []
    for i in range(n):
        corners = rng.uniform(0, 200, (int(rng.integers(0, 3)), 2))
        gt = np.c_[corners, corners + 40].astype(np.float32)
        dets = np.r_[gt + rng.normal(0, 4, gt.shape), np.c_[c := rng.uniform(0, 200, (2, 2)), c + 30]]
        labels = rng.integers(1, 3, len(dets)) if two_classes else None
        scores = rng.uniform(0, 1, len(dets)).astype(np.float32)
        extra = {"gt_labels": labels[: len(gt)], "labels": labels} if two_classes else {}
        results.append(ImageResult(first_id + id_step * i, gt, dets.astype(np.float32), scores, **extra))
    return results
