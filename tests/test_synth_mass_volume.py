"""The volumetric mass drawing (data/synth_mass_volume.py): size, border, magnitude, patterns."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calcidet.data.synth_mass_volume import BORDER_PX, render_mass_volume


def _draw(seed: int, diameter: float = 20.0, spacing: float = 0.2, pattern: str = "cloud", density: float = 1.0,
          lobule: float = 0.16) -> np.ndarray:
    return render_mass_volume(np.random.default_rng(seed), diameter, spacing, pattern, density, lobule)


@pytest.mark.parametrize("pattern", ["cloud", "cystic", "sedimentation"])
def test_shape_and_zero_border(pattern: str) -> None:
    patch = _draw(0, 20.0, 0.2, pattern)
    assert patch.dtype == np.float32 and patch.ndim == 2 and patch.shape[0] == patch.shape[1]
    assert 1.2 * 100 <= patch.shape[0] <= 1.4 * 100
    b = BORDER_PX
    assert not patch[:b].any() and not patch[-b:].any() and not patch[:, :b].any() and not patch[:, -b:].any()
    assert patch.min() >= 0 and patch.max() > 0
    # Centred: the mass's centre of attenuation lies near the patch's centre.
    ys, xs = np.indices(patch.shape)
    c = (patch.shape[0] - 1) / 2
    assert abs((ys * patch).sum() / patch.sum() - c) < 0.15 * patch.shape[0]
    assert abs((xs * patch).sum() / patch.sum() - c) < 0.15 * patch.shape[0]


def test_deterministic_for_a_seed() -> None:
    assert np.array_equal(_draw(3, pattern="cystic"), _draw(3, pattern="cystic"))
    assert not np.array_equal(_draw(3), _draw(4))


def test_bad_pattern() -> None:
    with pytest.raises(ValueError):
        _draw(0, pattern="popcorn")


def test_linear_in_density() -> None:
    one, half = _draw(5, density=1.0), _draw(5, density=0.5)
    np.testing.assert_allclose(half * 2, one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("diameter, low, high", [(8.0, 0.4, 0.6), (20.0, 0.8, 1.5), (50.0, 1.5, 2.7)])
def test_magnitude(diameter: float, low: float, high: float) -> None:
    for seed in range(3):
        for pattern in ("cloud", "cystic", "sedimentation"):
            patch = _draw(seed, diameter, diameter / 100, pattern)
            assert low <= patch.max() <= high, (seed, pattern, patch.max())
            if diameter == 20.0 and pattern == "cloud":
                assert 0.35 <= patch[patch > 0.15 * patch.max()].mean() <= 0.6


def _dips(patch: np.ndarray) -> float:
    """How much lucent centres sink below their surroundings: black top-hat over the mass, per unit density."""
    closed = cv2.morphologyEx(patch, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)))
    inside = patch > 0.15 * patch.max()
    return float((closed - patch)[inside].mean() / patch[inside].mean())


def test_cystic_loculi_have_lucent_centres() -> None:
    cystic = np.mean([_dips(_draw(s, pattern="cystic", lobule=0.25)) for s in range(4)])
    cloud = np.mean([_dips(_draw(s, pattern="cloud", lobule=0.25)) for s in range(4)])
    assert cystic > 1.3 * cloud


def _level_score(patch: np.ndarray) -> float:
    """Strong edges that rise downwards (a dense layer's upper edge) vs strong edges across columns."""
    gy = np.diff(patch, axis=0)[:, :-1]
    gx = np.diff(patch, axis=1)[:-1]
    cut = np.percentile(np.abs(np.concatenate([gy.ravel(), gx.ravel()])), 98)
    return float(np.maximum(gy - cut, 0).sum() / max(float(np.maximum(np.abs(gx) - cut, 0).sum()), 1e-9))


def test_sedimentation_has_horizontal_levels() -> None:
    sediment = np.median([_level_score(_draw(s, pattern="sedimentation", lobule=0.25)) for s in range(4)])
    cloud = np.median([_level_score(_draw(s, pattern="cloud", lobule=0.25)) for s in range(4)])
    assert sediment > 1.5 and sediment > 2 * cloud


def test_small_mass_is_not_empty() -> None:
    patch = _draw(1, 1.5, 0.5, "cloud")
    b = BORDER_PX
    assert patch.shape[0] >= 2 * b + 3
    assert patch[b:-b, b:-b].max() > 0 and not patch[:b].any() and not patch[:, -b:].any()
