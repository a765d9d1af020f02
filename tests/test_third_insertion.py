"""The third, independently drawn insertion (benchmarks/third_insertion.py): exact boxes, a visibility
floor, a compositing that stays in 0..1, and a deterministic set of held-out films only."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "radiographs" / "fracatlas"

ti = load_benchmark("third_insertion")


def _forearm() -> np.ndarray:
    """A 300 x 420 film: air, soft tissue brightening towards its middle, and a bone with a rounded end at x ~ 280."""
    yy, xx = np.mgrid[0:300, 0:420].astype(np.float32)
    film = np.full((300, 420), 0.04, np.float32)
    tissue = np.abs(yy - 150) < 90
    film[tissue] = (0.42 - 0.12 * np.abs(yy - 150) / 90)[tissue]
    shaft = (np.abs(yy - 150) < 28) & (xx < 250)
    end = (xx - 250) ** 2 + (yy - 150) ** 2 < 34**2  # the bone's end, a little wider than its shaft
    film[shaft | end] = 0.85
    return cv2.GaussianBlur(film, (0, 0), 1.0)


def _mass(seed: int, variant: str, diameter: float = 44.0, aspect: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(ti.draw_mass(rng, diameter, aspect, 0.6, variant), (0, 0), 1.0)


def _extent(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1]


@pytest.mark.parametrize("variant", ti.VARIANTS)
def test_box_is_the_extent_of_the_lift_above_a_fifth_of_its_peak(variant):
    # over tissue and over the bone's end, and one cut by the film's left edge (its box is clipped to the film)
    for seed, (x0, y0), aspect in zip(range(6), [(200, 100), (250, 110), (300, 90), (-20, 120), (230, 60), (150, 140)],
                                      [1.0, 2.2, 1.4, 1.0, 2.5, 1.1]):
        film = _forearm()
        before = film.copy()
        path = _mass(seed, variant, aspect=aspect)
        placed = ti.insert_mass(np.random.default_rng(seed), film, path, x0, y0, 0.3, 0.7 + 0.1 * seed, noise=0.0)
        assert placed is not None
        box, peak, _ = placed
        lift = film - before
        assert lift.min() >= 0
        assert box == _extent(lift >= ti.BOX_FRACTION * lift.max())
        assert peak == pytest.approx(float(lift.max()), abs=1e-6)
        x, y, w, h = box
        assert x >= 0 and y >= 0 and x + w <= film.shape[1] and y + h <= film.shape[0]


def test_the_noise_comes_after_the_box_and_grows_with_the_lift():
    path = _mass(3, "popcorn", diameter=60.0)
    clean, noisy = _forearm(), _forearm()
    before = clean.copy()
    box_clean = ti.insert_mass(np.random.default_rng(0), clean, path, 180, 100, 0.4, 1.0, noise=0.0)
    box_noisy = ti.insert_mass(np.random.default_rng(0), noisy, path, 180, 100, 0.4, 1.0, noise=0.01)
    assert box_clean == box_noisy
    grain = noisy - clean
    lift = clean - before
    assert np.all(grain[lift == 0] == 0)  # no grain where nothing was added
    assert grain[lift > 0.5 * lift.max()].std() > grain[(lift > 0) & (lift < 0.1 * lift.max())].std()


def test_a_faint_draw_is_made_denser_just_until_it_shows():
    film = _forearm()
    before = film.copy()
    path = _mass(1, "cystic")
    placed = ti.insert_mass(np.random.default_rng(0), film, path, 200, 100, amplitude=0.002, gamma=1.0, noise=0.0)
    assert placed is not None
    _, _, used = placed
    assert used > 0.002
    dense = path >= ti.DENSE_FRACTION * path.max()
    h, w = path.shape
    lift = (film - before)[100:100 + h, 200:200 + w]
    assert lift[dense].mean() >= ti.MIN_LIFT - 1e-6
    # one step fainter would not have shown
    fainter = ti.composite(before[100:100 + h, 200:200 + w], used / ti.DENSER * path, 1.0)
    assert (fainter - before[100:100 + h, 200:200 + w])[dense].mean() < ti.MIN_LIFT


def test_a_draw_that_cannot_show_is_not_placed_and_leaves_the_film_alone():
    film = np.full((200, 200), 0.995, np.float32)  # burnt-out white: no room to lift anything by 0.04
    before = film.copy()
    assert ti.insert_mass(np.random.default_rng(0), film, _mass(2, "popcorn"), 60, 60, 0.1, 1.0, noise=0.01) is None
    assert np.array_equal(film, before)


@pytest.mark.parametrize("gamma", [ti.GAMMA[0], 1.0, ti.GAMMA[1]])
def test_compositing_is_monotone_and_stays_inside_the_film_range(gamma):
    v = np.linspace(0, 1, 101, dtype=np.float32)[:, None]  # dark tissue .. white bone
    add = np.linspace(0, 3, 121, dtype=np.float32)[None, :]  # up to far past any amplitude drawn
    out = ti.composite(np.broadcast_to(v, (101, 121)), np.broadcast_to(add, (101, 121)), gamma)
    assert out.min() >= 0 and out.max() <= 1
    assert np.all(np.diff(out, axis=1) >= -1e-6)  # denser never darker
    assert np.all(np.diff(out, axis=0) >= -1e-6)  # brighter film, brighter result
    assert np.allclose(out[:, 0], v[:, 0], atol=1e-5)  # nothing added, nothing changed
    drawn = add[0] <= ti.MAX_AMPLITUDE  # mid-grey under any amplitude drawn: eased towards white, no clipped plateau
    assert np.all(np.diff(out[50, drawn]) > 0)
    # below the shoulder the addition is plain in the linearised domain: over bright bone and dark tissue alike
    u = np.array([0.1, 0.5, 0.8])
    a = 0.5 * ti.SHOULDER * (1 - u)
    got = ti.composite((u**gamma).astype(np.float32), a.astype(np.float32), gamma).astype(np.float64) ** (1 / gamma)
    assert got == pytest.approx(u + a, abs=1e-4)


def test_drawings_fill_zero_to_one_and_end_inside_their_patch():
    for seed, variant in enumerate(ti.VARIANTS * 2):
        path = ti.draw_mass(np.random.default_rng(seed), 50.0, 1.0 + seed * 0.3, seed, variant)
        assert path.min() >= 0 and path.max() == pytest.approx(1.0)
        rim = np.concatenate([path[0], path[-1], path[:, 0], path[:, -1]])
        assert rim.max() < 0.02  # the mass does not run off its patch


def _longest_step_down_run(path: np.ndarray) -> int:
    """The most neighbouring columns whose path, on one row, is > 0.2 denser in the row below."""
    best = 0
    for row in np.diff(path, axis=0) > 0.2:
        edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
        starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
        best = max(best, int((ends - starts).max(initial=0)))
    return best


def test_a_level_mass_has_a_sharp_straight_horizontal_top_to_its_sediment():
    for seed in range(4):
        level = ti.draw_mass(np.random.default_rng(seed), 80.0, 1.0, 0.0, "level")
        popcorn = ti.draw_mass(np.random.default_rng(seed), 80.0, 1.0, 0.0, "popcorn")
        # a level: one row-long step across the loculus; clumps alone step down in short pieces
        assert _longest_step_down_run(level) >= 18 > _longest_step_down_run(popcorn)


def test_the_film_edge_blur_is_measured():
    bars = np.where((np.arange(240) // 30) % 2, 0.8, 0.2).astype(np.float32)[None, :].repeat(120, axis=0)
    for sigma in (0.8, 1.5, 2.0):
        assert ti.edge_sigma(cv2.GaussianBlur(bars, (0, 0), sigma)) == pytest.approx(sigma, abs=0.15)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/radiographs is not beside the project")
def test_the_set_is_the_same_on_every_run_and_holds_only_heldout_films(tmp_path):
    a = ti.build(tmp_path / "a", SHARED, limit=4)
    b = ti.build(tmp_path / "b", SHARED, limit=4)
    assert a == b and len(a["images"]) == 4 and a["annotations"]  # the first four films hold masses
    assert a["info"]["description"] == "calcidet third-insertion held-out set"
    assert (tmp_path / "a" / "annotations.json").read_bytes() == (tmp_path / "b" / "annotations.json").read_bytes()
    for im in a["images"]:
        assert (tmp_path / "a" / "images" / im["file_name"]).read_bytes() == \
            (tmp_path / "b" / "images" / im["file_name"]).read_bytes()
    heldout = {line.split(",")[0] for line in ti.harness.SPLIT.read_text().splitlines() if ",heldout," in line}
    assert {im["source"] for im in a["images"]} <= heldout
    for ann in a["annotations"]:
        im = a["images"][ann["image_id"] - 1]
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= im["width"] and y + h <= im["height"] and w > 0 and h > 0
        assert {"diameter_frac", "peak_lift", "variant"} <= set(ann["attributes"])
