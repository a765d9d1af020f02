"""Property tests: whatever bytes a file holds, ``read_radiograph`` gives an image or a ``RadiographReadError``.

    .venv/bin/python -m pytest tests/test_reader_fuzz.py -q

Random bytes, random bytes behind each format's magic number, and valid small files with bytes
flipped. No other exception type may come out, and what does come out must honour the data contract
(float32 H x W in 0..1, no NaN). Each test is bounded (150 examples, no deadline: the first call
imports codecs); the file runs in well under 30 s.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from calcidet.data.readers import Radiograph, RadiographReadError, read_radiograph
from tests.bad_inputs import dicom_bytes, encode, noise_image

MAGIC = {
    "png": b"\x89PNG\r\n\x1a\n",
    "jpeg": b"\xff\xd8\xff",
    "tiff": b"II*\x00",
    "tiff_be": b"MM\x00*",
    "dicom": bytes(128) + b"DICM",
}
SUFFIXES = ("", ".png", ".jpg", ".tif", ".dcm")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _tiff_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, image)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


VALID = {
    "png": encode(".png", noise_image(24, 20)),
    "png16": encode(".png", noise_image(24, 20, dtype=np.uint16)),
    "jpeg": encode(".jpg", noise_image(24, 20)),
    "tiff": _tiff_bytes(noise_image(24, 20, dtype=np.uint16)),
    "dicom": dicom_bytes(noise_image(12, 10, dtype=np.uint16)),
}


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check_read(path: Path, data: bytes) -> Radiograph | None:
    """Write ``data`` to ``path`` and read it: an image honouring the contract, or a readable error."""
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom/PIL warn about the damage; only raising matters
            rad = read_radiograph(path)
    except RadiographReadError as exc:
        assert exc.path == str(path) and exc.reason and str(exc).startswith(str(path))
        return None
    image = rad.image
    assert image.dtype == np.float32 and image.ndim == 2 and image.size > 0
    assert rad.original_size == image.shape
    assert np.isfinite(image).all(), "NaN or inf in a decoded image"
    assert image.min() >= 0.0 and image.max() <= 1.0
    return rad


@FUZZ
@given(data=st.binary(min_size=0, max_size=2048), suffix=st.sampled_from(SUFFIXES))
@example(data=b"", suffix=".png")
@example(data=bytes(200), suffix=".dcm")
def test_random_bytes(fuzz_dir, data: bytes, suffix: str) -> None:
    check_read(fuzz_dir / f"random{suffix}", data)


@FUZZ
@given(magic=st.sampled_from(sorted(MAGIC)), tail=st.binary(min_size=0, max_size=2048),
       suffix=st.sampled_from(SUFFIXES))
@example(magic="tiff", tail=b"\x08\x00\x00\x00\x00\x00", suffix=".tif")
def test_random_bytes_after_a_valid_header(fuzz_dir, magic: str, tail: bytes, suffix: str) -> None:
    check_read(fuzz_dir / f"header{suffix}", MAGIC[magic] + tail)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid small file with 1-8 bytes replaced, sometimes cut short or extended."""
    fmt = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[fmt])
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    tail = draw(st.binary(max_size=64))
    return fmt, bytes(data[:cut]) + tail


@FUZZ
@given(case=mutated())
def test_mutated_valid_files(fuzz_dir, case: tuple[str, bytes]) -> None:
    fmt, data = case
    check_read(fuzz_dir / f"mutated.{ {'png16': 'png', 'jpeg': 'jpg', 'tiff': 'tif', 'dicom': 'dcm'}.get(fmt, fmt)}",
               data)


@pytest.mark.parametrize("fmt", sorted(VALID))
def test_the_unmutated_files_read(fuzz_dir, fmt: str) -> None:
    """The mutation seeds are readable, so the mutations start from files that work."""
    assert check_read(fuzz_dir / f"seed_{fmt}", VALID[fmt]) is not None


def test_complex_tiff_is_refused(fuzz_dir) -> None:
    """A SampleFormat a mutated TIFF header can select: complex samples are no intensities."""
    ramp = np.linspace(-1.0, 1.0, 16 * 12).reshape(16, 12).astype(np.complex64)
    with pytest.raises(RadiographReadError, match="complex64 samples"):
        read_radiograph(_write(fuzz_dir / "complex.tif", _tiff_bytes(ramp)))


@pytest.mark.parametrize("dtype, top", [(np.float64, 1e308), (np.float32, 3e38)])
def test_float_tiff_at_the_ends_of_its_range(fuzz_dir, dtype, top: float) -> None:
    """Values near the float limits overflow float32 arithmetic; the image must stay a finite ramp."""
    ramp = (np.linspace(-1.0, 1.0, 16 * 12) * top).reshape(16, 12).astype(dtype)
    rad = check_read(fuzz_dir / "extreme.tif", _tiff_bytes(ramp))
    assert rad is not None
    assert np.all(np.diff(rad.image.ravel()) >= 0) and rad.image.max() - rad.image.min() > 0.99
    assert np.percentile(rad.image, 75) == pytest.approx(0.75, abs=0.02)  # still a ramp, not saturated
