"""The generator's priors are knobs: changing one field changes the films, and bad ranges are refused.

    .venv/bin/python -m pytest tests/test_synth_priors.py -q
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from calcidet.data.synth_anatomy import JOINT_WEIGHTS, Anatomy, render_anatomy
from calcidet.data.synth_joints import BUILDERS
from calcidet.data.synth_lesion_priors import FINDINGS, LESION, LesionPriors
from calcidet.data.synth_lesions import insert_findings, render_calcinosis
from calcidet.data.synth_priors import (
    HIP,
    JOINT_PRIORS,
    KNEE_AP,
    HipPriors,
    KneeAPPriors,
    PosePriors,
)

FILM = (200, 160, 1.6)  # px, px, mm per px: a 320 x 256 mm film, small enough to render in milliseconds


def _render(joint: str, view: str, seed: int = 3, **kwargs) -> Anatomy:
    rng_shape, rng_pose = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    no_tilt = PosePriors(rotation_deg=(0.0, 0.0))  # the limb's axis along the film's columns
    return render_anatomy(rng_shape, rng_pose, joint, view, "R", *FILM, pose=no_tilt, **kwargs)


def test_every_joint_has_a_builder_and_priors() -> None:
    assert set(BUILDERS) == set(JOINT_PRIORS) == set(JOINT_WEIGHTS)


@pytest.mark.parametrize("joint_view", list(JOINT_PRIORS))
def test_passing_the_default_priors_gives_the_default_film(joint_view: tuple[str, str]) -> None:
    default = _render(*joint_view)
    explicit = _render(*joint_view, priors=JOINT_PRIORS[joint_view])
    assert np.array_equal(default.attenuation, explicit.attenuation) and default.bone.any() and default.body.any()


def test_thicker_soft_tissue_widens_the_knee() -> None:
    stout = replace(KNEE_AP, soft_half_width_mm=tuple(2 * v for v in KNEE_AP.soft_half_width_mm))
    thin, thick = _render("knee", "ap"), _render("knee", "ap", priors=stout)
    rows = slice(FILM[0] // 3, 2 * FILM[0] // 3)  # around the joint line, clear of the film's edges
    thin_width, thick_width = np.median(thin.body[rows].sum(1)), np.median(thick.body[rows].sum(1))
    assert thick_width > 1.6 * thin_width
    assert np.array_equal(thin.bone, thick.bone)  # same draws: only the soft tissue changed


def _lateral_bone_mm(anatomy: Anatomy) -> float:
    """Bone reaching out from the hip's centre towards the film's left (lateral, untilted right hip)."""
    x, y = (int(round(v)) for v in anatomy.centre)
    return float(np.argmin(anatomy.bone[y, :x + 1][::-1]) * anatomy.spacing)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_bigger_femoral_head_reaches_further(seed: int) -> None:
    big = replace(HIP, femoral_head_radius_mm=1.5 * HIP.femoral_head_radius_mm)
    usual = _lateral_bone_mm(_render("hip", "ap", seed))
    assert 20 < usual < 32  # the 24 mm head, scaled by the patient's size (0.9-1.1)
    assert _lateral_bone_mm(_render("hip", "ap", seed, priors=big)) > usual + 10


def test_denser_packing_makes_a_denser_mass() -> None:
    doubled = replace(LESION, packing=tuple(2 * v for v in LESION.packing))
    base = render_calcinosis(np.random.default_rng(0), 30, 0.5, "cloud")
    dense = render_calcinosis(np.random.default_rng(0), 30, 0.5, "cloud", priors=doubled)
    assert base.max() > 0.1
    np.testing.assert_allclose(dense, 2 * base, rtol=1e-4, atol=1e-6)


def test_look_alike_rates_of_zero_leave_only_the_masses() -> None:
    anatomy = _render("knee", "ap")
    none = replace(FINDINGS, **{kind: replace(getattr(FINDINGS, kind), rate=0.0)
                                for kind in ("vascular", "tendinitis", "osteophyte", "bone_island", "metal")})
    totals = []
    for seed in range(4):
        films = [np.zeros(anatomy.body.shape, np.float32) for _ in range(2)]
        usual = insert_findings(np.random.default_rng(seed), films[0], anatomy, anatomy.spacing, 1)
        quiet = insert_findings(np.random.default_rng(seed), films[1], anatomy, anatomy.spacing, 1, priors=none)
        assert quiet[0] == usual[0] and quiet[1] == []  # same masses, no look-alikes
        totals.append(len(usual[1]))
    assert sum(totals) > 0


@pytest.mark.parametrize("make", [lambda: KneeAPPriors(joint_space_mm=(7.0, 4.0)),
                                  lambda: replace(HIP, neck_shaft_angle_deg=(140.0, 120.0)),
                                  lambda: HipPriors(gas_pockets=(3, 3)),  # a count range [3, 3) is empty
                                  lambda: LesionPriors(granules=(9, 2))])
def test_priors_refuse_an_empty_range(make) -> None:
    with pytest.raises(ValueError, match="empty range"):
        make()


def test_priors_are_frozen() -> None:
    with pytest.raises(AttributeError):
        KNEE_AP.fat_mm = (1.0, 2.0)  # type: ignore[misc]
