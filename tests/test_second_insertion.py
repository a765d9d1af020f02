"""The second, separately written insertion (benchmarks/second_insertion.py): exact boxes, joint-side sites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "radiographs" / "fracatlas"

si = load_benchmark("second_insertion")


def _limb_film() -> np.ndarray:
    """A 320 x 480 film: dark air, a soft-tissue band, and a bone that enters from the left and ends at x = 300."""
    film = np.full((320, 480), 0.05, np.float32)
    film[80:240, :] = 0.35
    film[130:190, :300] = 0.8
    return film


def test_mass_box_is_the_extent_of_its_lift_above_a_tenth_of_its_peak():
    rng = np.random.default_rng(0)
    for seed in range(5):
        film = _limb_film()
        before = film.copy()
        path = si.draw_mulberry(np.random.default_rng(seed), 40.0)
        placed = si.insert_mass(rng, film, path, 290, 180, opacity=0.3, noise=0.0)
        assert placed is not None
        box, peak = placed
        lift = film - before
        ys, xs = np.nonzero(lift >= si.BOX_FRACTION * lift.max())
        assert box == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert peak == pytest.approx(float(lift.max()), abs=1e-6)
        assert lift[before > 0.7].max() < lift[before < 0.5].max()  # the same mass lifts white bone less


def test_a_faint_draw_is_made_denser_until_it_shows():
    film = _limb_film()
    before = film.copy()
    path = si.draw_mulberry(np.random.default_rng(1), 40.0)
    assert si.insert_mass(np.random.default_rng(0), film, path, 320, 190, opacity=0.01, noise=0.0) is not None
    lift = (film - before)[190:190 + path.shape[0], 320:320 + path.shape[1]]
    assert lift[path >= 0.5].mean() >= si.MIN_LIFT - 1e-6


def test_sites_lie_in_soft_tissue_beside_the_bone_end_not_where_the_film_cuts_it():
    film = _limb_film()
    body, bone, scale = si.tissue_maps(film)
    assert bone[160, 100] and not bone[160, 400] and body[100, 400] and not body[20, 100]
    rng = np.random.default_rng(0)
    radius = 20 * scale
    for _ in range(30):
        x, y = si.pick_site(rng, body, bone, radius, [])
        x, y = x / scale, y / scale
        assert not bone[int(y), int(x)] and body[int(y), int(x)]
        # within 1.5 radii of the bone's last 15 % (x >= 255) and one radius of bone; never along the shaft
        assert 255 - 1.5 * 20 - 2 <= x <= 300 + 20 + 2


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/radiographs is not beside the project")
def test_the_set_is_the_same_on_every_run_and_holds_only_heldout_films(tmp_path):
    a = si.build(tmp_path / "a", SHARED, limit=4)
    b = si.build(tmp_path / "b", SHARED, limit=4)
    assert a == b and len(a["images"]) == 4
    heldout = {line.split(",")[0] for line in si.SPLIT.read_text().splitlines() if ",heldout," in line}
    assert {im["source"] for im in a["images"]} <= heldout
    for ann in a["annotations"]:
        im = a["images"][ann["image_id"] - 1]
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= im["width"] and y + h <= im["height"] and w > 0 and h > 0
