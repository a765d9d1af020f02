"""Real films as backgrounds: the vendored films, the split, placement, the box contract, joint/view.

    .venv/bin/python -m pytest tests/test_synth_real.py -q
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from calcidet.data.readers import read_radiograph
from calcidet.data.synth import synthesize
from calcidet.data.synth_backgrounds import CATEGORY_JOINTS, list_backgrounds
from calcidet.data.synth_insert import (
    BOX_DENSITY_FRACTION,
    MIN_CONTRAST,
    boost_to_visible,
    conspicuity,
    insert_into_film,
    on_film,
    place_patch,
    render_mass,
    visibility,
)
from calcidet.data.synth_placement import placement_weight
from calcidet.data.synth_real import add_attenuation, analyse_film, to_logit

REPO = Path(__file__).resolve().parents[1]
FILMS = REPO / "data" / "films"
SPLIT = REPO / "benchmarks" / "real_film_split.csv"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_all_vendored_films_decode_and_match_the_manifest() -> None:
    rows = _rows(FILMS / "manifest.csv")
    on_disk = {p.relative_to(FILMS).as_posix() for p in FILMS.rglob("*.jpg")}
    assert len(rows) == 400 and {r["file"] for r in rows} == on_disk
    for r in rows:
        image = read_radiograph(FILMS / r["file"]).image
        # The manifest states the stored size; a few films carry an EXIF rotation, which readers apply.
        stored = cv2.imread(str(FILMS / r["file"]), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION).shape
        assert stored == (int(r["height"]), int(r["width"])) and image.shape in (stored, stored[::-1])
        assert r["category"] in CATEGORY_JOINTS and np.isfinite(image).all() and image.std() > 0.05


def test_split_roles_are_disjoint_and_demo_is_exactly_the_vendored_films() -> None:
    rows = _rows(SPLIT)
    files = [r["file"] for r in rows]
    assert len(files) == len(set(files)), "a film has two roles"
    roles = {role: {r["file"] for r in rows if r["role"] == role} for role in ("demo", "heldout", "reserve")}
    assert sum(map(len, roles.values())) == len(rows)
    assert roles["demo"] == {r["file"] for r in _rows(FILMS / "manifest.csv")}
    assert len(roles["heldout"]) == 268


@pytest.mark.parametrize("drawing", ["lobules", "volume"])
@pytest.mark.parametrize("name", ["hand_wrist_forearm/IMG0000359.jpg", "hip_pelvis/IMG0000726.jpg"])
def test_box_is_the_inserted_mass_above_the_stated_density(name: str, drawing: str) -> None:
    film = read_radiograph(FILMS / name).image
    real = analyse_film(film, np.random.default_rng(0))
    patch = render_mass(np.random.default_rng(1), real, 0.12 * min(film.shape), "cystic", 1.0, 0.15, drawing)
    delta = np.zeros(film.shape, np.float32)
    h, w = film.shape
    box, _ = place_patch(delta, patch, w // 2 - patch.shape[1] // 2, h // 2 - patch.shape[0] // 2)
    out = add_attenuation(film, real, delta)  # no noise: the diff is the mass alone
    # Back to attenuation: the logit of the display, times the film's slope.
    added = (to_logit(out).astype(np.float64) - to_logit(film)) * real.slope
    assert np.abs(added - delta).max() < 1e-3 * delta.max()
    peak = float(patch.max())

    def extent(threshold: float) -> list[float]:
        ys, xs = np.nonzero(added >= threshold)
        return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]

    # Exact up to float32 rounding: sandwiched between slightly stricter and looser thresholds.
    inner, outer = extent(BOX_DENSITY_FRACTION * peak * 1.001), extent(BOX_DENSITY_FRACTION * peak * 0.999)
    assert inner[0] >= box[0] >= outer[0] and inner[1] >= box[1] >= outer[1]
    assert inner[0] + inner[2] <= box[0] + box[2] <= outer[0] + outer[2]
    assert inner[1] + inner[3] <= box[1] + box[3] <= outer[1] + outer[3]
    assert (out[delta == 0] == film[delta == 0]).all()  # untouched outside the mass


def test_a_faint_mass_is_drawn_denser_until_it_shows_or_left_out_where_the_film_is_saturated() -> None:
    film = read_radiograph(FILMS / "hand_wrist_forearm/IMG0000359.jpg").image
    real = analyse_film(film, np.random.default_rng(0))
    # The faintest density the generator draws, on the forearm's soft tissue.
    faint = render_mass(np.random.default_rng(1), real, 0.08 * min(film.shape), "cloud", 0.12, 0.15)
    h, w = film.shape
    x0, y0 = w // 2 - faint.shape[1] // 2, h // 2 - faint.shape[0] // 2

    def shown(patch: np.ndarray, on: np.ndarray) -> float:  # what a reader sees: display lift, no noise
        delta = np.zeros(on.shape, np.float32)
        place_patch(delta, patch, x0, y0)
        lift = add_attenuation(on, real, delta) - on
        return float(np.percentile(lift[delta >= BOX_DENSITY_FRACTION * patch.max()], 90))

    assert shown(faint, film) < MIN_CONTRAST  # the draw alone would be invisible
    boost = boost_to_visible(film, real, faint, x0, y0)
    assert boost is not None and boost > 1.0
    assert MIN_CONTRAST <= shown(boost * faint, film) < 2 * MIN_CONTRAST  # barely visible, not dense
    burnt = film.copy()
    burnt[y0:y0 + faint.shape[0], x0:x0 + faint.shape[1]] = 1.0  # saturated white: nothing can show
    assert boost_to_visible(burnt, real, faint, x0, y0) is None


def _soft_and_striped(patch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two hand-made films three times the patch's size: even soft tissue, and the same grey crossed by
    bone-like ridges, a few across the mass (finer than it, so they are its clutter, not its background)."""
    size = patch.shape[0] * 3
    soft = np.full((size, size), 0.35, np.float32)
    ridges = 0.15 * np.sin(2 * np.pi * np.arange(size) / (patch.shape[1] / 3)).astype(np.float32)
    return soft, soft + ridges[None, :]


def test_conspicuity_is_the_same_lift_lost_among_bone_edges() -> None:
    film = read_radiograph(FILMS / "hand_wrist_forearm/IMG0000359.jpg").image
    real = analyse_film(film, np.random.default_rng(0))
    patch = render_mass(np.random.default_rng(1), real, 60.0, "cloud", 0.4, 0.15)
    soft, striped = _soft_and_striped(patch)
    at = patch.shape[0]  # the middle third
    where, part = on_film(soft.shape, patch, at, at)
    k_soft, k_bone = conspicuity(soft, real, part, where), conspicuity(striped, real, part, where)
    # Same attenuation, same display slope on both (0.35 and the bars' mean are close): the bars hide it.
    assert visibility(k_soft) == "clear" and visibility(k_bone) == "faint"
    assert k_soft > 5 * k_bone
    # Over even tissue the clutter is the film's noise: twice the attenuation, about twice as conspicuous.
    assert 1.7 < conspicuity(soft, real, 2 * part, where) / k_soft < 2.3
    assert conspicuity(soft, real, 0 * part, where) == 0.0


def test_a_conspicuity_floor_draws_a_hidden_mass_denser_or_leaves_it_out() -> None:
    film = read_radiograph(FILMS / "hand_wrist_forearm/IMG0000359.jpg").image
    real = analyse_film(film, np.random.default_rng(0))
    patch = render_mass(np.random.default_rng(1), real, 60.0, "cloud", 0.4, 0.15)
    _, striped = _soft_and_striped(patch)
    at = patch.shape[0]
    where, part = on_film(striped.shape, patch, at, at)
    assert boost_to_visible(striped, real, patch, at, at) == 1.0  # the contrast floor alone passes it
    boost = boost_to_visible(striped, real, patch, at, at, min_conspicuity=1.0)
    assert boost is not None and boost > 1.0
    assert conspicuity(striped, real, boost * part, where) >= 1.0
    assert boost_to_visible(striped, real, patch, at, at, min_conspicuity=1000.0) is None


def test_placement_never_inside_a_bone_ring_or_outside_the_body() -> None:
    # A synthetic pelvis-like mask: a body, a bone ring with soft tissue inside, a long bone beside it.
    body = np.zeros((200, 240), bool)
    body[20:190, 10:230] = True
    yy, xx = np.mgrid[0:200, 0:240]
    r = np.hypot(xx - 90, yy - 100)
    bone = (r > 40) & (r < 52)
    bone |= (np.abs(xx - 185) < 9) & (yy > 40) & (yy < 185)
    # 0.7 mm per px: a body 120 x 150 mm, narrower than a trunk, so only the bone rules decide.
    weight, joints = placement_weight(body, bone, 0.7)
    inside_ring = r < 38
    assert weight.max() > 0 and len(joints) > 0
    assert not weight[inside_ring].any() and not weight[~body].any() and not weight[bone].any()


def test_joint_and_view_come_from_the_manifest(tmp_path: Path) -> None:
    rows = _rows(FILMS / "manifest.csv")
    picks = [next(r for r in rows if r["category"] == c and int(r["width"]) < 1000) for c in CATEGORY_JOINTS]
    listing = tmp_path / "films.txt"
    listing.write_text("\n".join(r["file"] for r in picks) + "\n")
    backgrounds = list_backgrounds(listing, root=FILMS)
    assert [b.source for b in backgrounds] == sorted(r["file"] for r in picks)
    synthesize(tmp_path / "out", n=len(picks), seed=3, backgrounds=listing, background_root=FILMS, workers=1,
               dicom_fraction=0.0, verbose=False)
    coco = json.loads((tmp_path / "out" / "annotations.json").read_text())
    by_file = {r["file"]: r for r in picks}
    for im in coco["images"]:
        row = by_file[im["background"]]
        assert im["joint"] == CATEGORY_JOINTS[row["category"]]
        views = [v for v in ("frontal", "lateral", "oblique") if row[v] == "1"]
        assert im["view"] == "+".join(views)
    for a in coco["annotations"]:
        attrs = a["attributes"]
        assert {"pattern", "diameter_mm", "diameter_frac", "contrast", "conspicuity", "visibility"} <= set(attrs)
        assert 0.03 * 0.99 <= attrs["diameter_frac"] <= 0.30 and attrs["contrast"] >= MIN_CONTRAST
        assert attrs["visibility"] == visibility(attrs["conspicuity"])


def test_synthesize_with_a_conspicuity_floor_labels_only_masses_above_it(tmp_path: Path) -> None:
    rows = _rows(FILMS / "manifest.csv")
    picks = [r for r in rows if r["category"] == "hand_wrist_forearm" and int(r["width"]) < 1000][:4]
    listing = tmp_path / "films.txt"
    listing.write_text("\n".join(r["file"] for r in picks) + "\n")
    synthesize(tmp_path / "out", n=8, seed=5, backgrounds=listing, background_root=FILMS, workers=1,
               dicom_fraction=0.0, min_conspicuity=1.5, verbose=False)
    coco = json.loads((tmp_path / "out" / "annotations.json").read_text())
    seen = [a["attributes"]["conspicuity"] for a in coco["annotations"]]
    assert coco["info"]["min_conspicuity"] == 1.5 and len(seen) >= 3
    assert min(seen) >= 1.5 and {a["attributes"]["visibility"] for a in coco["annotations"]} <= {"subtle", "clear"}


def test_volume_share_draws_that_share_by_the_volume_model(tmp_path: Path) -> None:
    picks = [r for r in _rows(FILMS / "manifest.csv") if r["category"] == "hand_wrist_forearm"][:3]
    listing = tmp_path / "films.txt"
    listing.write_text("\n".join(r["file"] for r in picks) + "\n")
    coco = {}
    for share in (0.0, 1.0):
        synthesize(tmp_path / str(share), n=6, seed=7, backgrounds=listing, background_root=FILMS, workers=1,
                   dicom_fraction=0.0, volume_share=share, verbose=False)
        coco[share] = json.loads((tmp_path / str(share) / "annotations.json").read_text())
    # Share 0 writes what calcidet wrote before the option (no new keys), so earlier sets rebuild as they were.
    assert "volume_share" not in coco[0.0]["info"]
    assert all("drawing" not in a["attributes"] for a in coco[0.0]["annotations"])
    drawn = coco[1.0]["annotations"]
    assert coco[1.0]["info"]["volume_share"] == 1.0 and len(drawn) >= 2
    assert {a["attributes"]["drawing"] for a in drawn} == {"volume"}
    assert all(a["attributes"]["contrast"] >= MIN_CONTRAST for a in drawn)


def test_heldout_role_selects_only_heldout_films() -> None:
    shared = REPO.parent / "shared" / "radiographs" / "fracatlas"
    if not shared.is_dir():
        pytest.skip("../shared/radiographs is not present")
    films = list_backgrounds(SPLIT, role="heldout", root=shared)
    heldout = {r["file"] for r in _rows(SPLIT) if r["role"] == "heldout"}
    assert {b.source for b in films} == heldout and all(b.joint != "unknown" for b in films)


def test_no_mass_in_mid_grey_noisy_air_with_a_gradient() -> None:
    # A forearm-like band (soft tissue with two bones, cut by the top and bottom edges, meeting
    # carpal-like blocks) on air that is mid-grey, noisy and brightens towards the right edge, as
    # some FracAtlas films' air does. Masses must land in the limb, never in the air.
    rng = np.random.default_rng(0)
    h, w = 454, 373
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    air = 0.08 + 0.12 * xx / w + rng.normal(0, 0.02, (h, w)).astype(np.float32)
    limb = np.abs(xx - 150) < 45
    film = np.where(limb, 0.45, air)
    for cx in (132, 168):  # radius and ulna, ending at a wrist gap above carpal-like blocks
        film = np.where((np.abs(xx - cx) < 10) & (yy < 300), 0.8, film)
    film = np.where(limb & (np.abs(xx - 150) < 30) & (yy > 318) & (yy < 345), 0.8, film)
    film = np.clip(cv2.GaussianBlur(film.astype(np.float32), (0, 0), 1.2), 0, 1)
    real = analyse_film(film, np.random.default_rng(1), joint="hand", view="frontal")
    scale = film.shape[1] / real.anatomy.body.shape[1]
    assert real.weight.max() > 0
    assert not real.anatomy.body[:, round(215 / scale):].any(), "air counted as body"
    placed = 0
    for seed in range(50):
        _, lesions, _ = insert_into_film(np.random.default_rng(seed), film, real, n_lesions=1, markers=False)
        for les in lesions:
            x, y, bw, bh = les["bbox"]
            assert abs(x + bw / 2 - 150) < 45, f"seed {seed}: mass centre {x + bw / 2:.0f} is outside the limb"
            placed += 1
    assert placed >= 40


def test_synth_refuses_a_negative_conspicuity_floor(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from calcidet.train.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["synth", "--out", str(tmp_path / "x"), "--min-conspicuity", "-1"])
    assert exc.value.code == 2 and "--min-conspicuity must be at least 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["hip_pelvis/IMG0000372.jpg", "hip_pelvis/IMG0001989.jpg"])
def test_a_pelvis_filling_the_film_is_all_body_and_masses_go_beside_the_hips(name: str) -> None:
    # Two vendored AP pelvis films with no air: the thighs' soft tissue is the darkest class touching
    # the edge. It is body; masses go lateral to the hips, not over the sacrum or into the pelvic ring.
    film = read_radiograph(FILMS / name).image
    real = analyse_film(film, np.random.default_rng(0), joint="hip")
    h, w = real.weight.shape
    assert real.anatomy.body.mean() > 0.8
    assert real.weight.max() > 0 and not real.weight[: int(0.55 * h), int(0.3 * w): int(0.7 * w)].any()


def test_noisy_air_around_a_hand_stays_air() -> None:
    # A vendored hand film whose air carries detector stripes (the noisiest air of the shipped films):
    # noise alone must not turn the air into body.
    real = analyse_film(read_radiograph(FILMS / "hand_wrist_forearm/IMG0003088.jpg").image,
                        np.random.default_rng(0), joint="hand")
    assert 0.05 < real.anatomy.body.mean() < 0.3


@pytest.mark.parametrize(("name", "joint", "at_least"), [
    ("lower_limb_knee_ankle_foot/IMG0000409.jpg", "knee", 0.45),  # a knee pair: 0.31 before
    ("upper_limb_shoulder_elbow/IMG0001046.jpg", "shoulder", 0.7),  # a shoulder and chest: 0.50 before
    ("hip_pelvis/IMG0002872.jpg", "hip", 0.75),  # a pelvis: 0.59 before
])
def test_darker_air_beside_the_air_peak_does_not_turn_soft_tissue_into_air(name: str, joint: str,
                                                                           at_least: float) -> None:
    # Vendored films whose dark class holds, beside its main air peak, a darker strip of air: measured
    # by its 5th percentile, the air's spread took in the soft tissue of the thighs, knees or arm.
    real = analyse_film(read_radiograph(FILMS / name).image, np.random.default_rng(0), joint=joint)
    assert real.anatomy.body.mean() > at_least


@pytest.mark.parametrize("bad", [{"volume_share": 1.5}, {"min_conspicuity": -0.1}, {"edge_share": 2.0},
                                 {"dicom_fraction": -0.5}, {"size_range": (900, 800)}])
def test_an_option_out_of_range_is_refused_by_name(tmp_path: Path, bad: dict) -> None:
    # Refused before any film is drawn, with the option named, whichever level it belongs to.
    with pytest.raises(ValueError, match=next(iter(bad))):
        synthesize(tmp_path / "out", n=2, seed=1, workers=1, verbose=False, **bad)
    assert not (tmp_path / "out").exists()
