"""Collimator and plate edges on real films: what each style draws, that masses are never touched, the CLI.

    .venv/bin/python -m pytest tests/test_synth_edges.py -q
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from calcidet.data.readers import read_radiograph
from calcidet.data.synth import synthesize
from calcidet.data.synth_edges import CLEARANCE, CLEARANCE_PX, STYLES, _draw_edge, add_edges

FILMS = Path(__file__).resolve().parents[1] / "data" / "films"


def _film() -> np.ndarray:
    """A mid-grey film with a vertical ramp, so that any change shows."""
    return np.tile(np.linspace(0.3, 0.6, 300, dtype=np.float32)[:, None], (1, 240))


@pytest.mark.parametrize("style", STYLES)
def test_each_style_draws_its_edge(style: str) -> None:
    film = _film()
    for seed in range(6):
        out, weight = _draw_edge(np.random.default_rng(seed), film, style)
        full = weight > 0.5
        assert 0 < full.mean() < 0.5, "an edge covers part of the film, not none or most of it"
        assert np.abs(out - film)[weight < 1e-3].max(initial=0) < 1e-2
        beyond = out[full]
        if style == "unexposed":
            assert beyond.mean() > 0.7  # near white
        elif style in ("shutter", "rimmed_shutter"):
            assert np.median(beyond) < 0.1  # black, whatever the rim
        if style == "rimmed_shutter":
            assert out[weight > 0.01].max() >= 0.45  # the plate's bright border band, at the field's edge
        if style == "split":
            assert beyond.max() >= 0.5  # the bright bar between the two exposures


def test_edges_never_come_near_a_mass() -> None:
    film = _film()
    keep = [[100.0, 120.0, 30.0, 24.0], [10.0, 10.0, 12.0, 12.0]]
    drawn = 0
    for seed in range(30):
        out, changed = add_edges(np.random.default_rng(seed), film, keep)
        assert np.array_equal(out[~changed], film[~changed])
        for x, y, w, h in keep:
            pad = int(max(CLEARANCE * max(w, h), CLEARANCE_PX))
            sl = np.s_[max(int(y) - pad, 0):int(y + h) + pad, max(int(x) - pad, 0):int(x + w) + pad]
            assert not changed[sl].any()
            assert np.array_equal(out[sl], film[sl])
        drawn += bool(changed.any())
    assert drawn >= 20, "most films find a clear margin for an edge"


def test_synthesize_edges_keep_the_masses_and_draw_from_their_own_stream(tmp_path: Path) -> None:
    rows = list(csv.DictReader((FILMS / "manifest.csv").open()))
    picks = [r for r in rows if r["role"] == "train" and int(r["width"]) < 1000][:4]
    listing = tmp_path / "films.txt"
    listing.write_text("\n".join(r["file"] for r in picks) + "\n")
    runs = {}
    for share in (0.0, 1.0):
        out = tmp_path / f"edges{share}"
        synthesize(out, n=6, seed=4, backgrounds=listing, background_root=FILMS, workers=1, dicom_fraction=0.0,
                   edge_share=share, verbose=False)
        runs[share] = out, json.loads((out / "annotations.json").read_text())
    (plain_dir, plain), (edged_dir, edged) = runs[0.0], runs[1.0]
    assert plain["annotations"] == edged["annotations"], "edges move no mass"
    assert "edges" not in plain["images"][0] and edged["info"]["edge_share"] == 1.0
    changed = 0
    for a, b in zip(plain["images"], edged["images"]):
        assert b["edges"] in (True, False) and a["file_name"] == b["file_name"]
        before = read_radiograph(plain_dir / a["file_name"]).image
        after = read_radiograph(edged_dir / b["file_name"]).image
        assert b["edges"] == (not np.array_equal(before, after))
        changed += b["edges"]
        assert len(b["distractors"]) <= len(a["distractors"])
    assert changed >= 4


def test_synth_refuses_edges_without_backgrounds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from calcidet.train.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["synth", "--out", str(tmp_path / "x"), "--edges", "0.5"])
    assert exc.value.code == 2 and "--edges needs --backgrounds" in capsys.readouterr().err
