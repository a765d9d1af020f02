"""``calcidet report`` on a real (tiny, untrained) detect run: a well-formed page that links only real files.

    .venv/bin/python -m pytest tests/test_report.py -q

The network is ``fcos_tiny`` with random weights at 64 px (``tests.bad_inputs``): its scores sit
around 0.071-0.079, so a threshold of 0.074 marks some boxes and not others.
"""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from calcidet.model.metrics import ImageResult
from calcidet.train.cli import main as calcidet_main
from calcidet.train.detect_cmd import main as detect_main
from calcidet.train.report_cmd import review_against_gt, review_image
from tests.bad_inputs import encode, noise_image

ODD_NAME = "a <b>&\"q' #1 %20?.png"  # HTML and URL specials: must be escaped, and its overlay still found
VOID = {"meta", "img", "input", "br", "hr", "link"}


class PageChecker(HTMLParser):
    """Collects ids, tags and links, and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.tags: list[str] = []
        self.links: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for key, value in attrs:
            if key == "id":
                self.ids.append(value or "")
            if key in ("href", "src") and value is not None:
                self.links.append(value)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def check_page(page: Path) -> PageChecker:
    """Parse ``page``; assert it is well-formed, ids unique, and every link a file that exists."""
    checker = PageChecker()
    checker.feed(page.read_text(encoding="utf-8"))
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert len(checker.ids) == len(set(checker.ids))
    for link in checker.links:
        if link.startswith("#"):
            assert link[1:] in checker.ids, link
        elif link.startswith("data:"):
            assert link.startswith("data:image/png;base64,")
        else:
            parts = urlsplit(link)
            assert not parts.scheme and not parts.netloc and not parts.query and not parts.fragment, link
            assert (page.parent / unquote(parts.path)).is_file(), link
    return checker


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory, small_untrained_checkpoint) -> Path:
    """A detect output folder with overlays, over 4 films, one with an awkward name."""
    root = tmp_path_factory.mktemp("report")
    films = root / "films"
    films.mkdir()
    for i, name in enumerate(["film0.png", "film1.png", "film2.png", ODD_NAME]):
        (films / name).write_bytes(encode(".png", noise_image(96, 80 + 16 * (i % 2), seed=i)))
    out = root / "run"
    assert detect_main([str(films), "--checkpoint", str(small_untrained_checkpoint), "--output", str(out),
                        "--overlays", "--num-workers", "0", "--batch-size", "2", "--threshold", "0.074"]) == 0
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes, [len(a), len(b)]."""
    lo, hi = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _boxes(rows: list[dict[str, str]]) -> np.ndarray:
    return np.array([[float(r[k]) for k in ("x_min", "y_min", "x_max", "y_max")] for r in rows]).reshape(-1, 4)


def _ground_truth(run: Path) -> tuple[Path, np.ndarray]:
    """film0: a lesion exactly on its best box at the threshold (found) and one that no box finds (missed)."""
    rows = [r for r in _rows(run / "detections.csv") if r["image"] == "film0.png" and r["above_threshold"] == "true"]
    assert rows, "the untrained network should put a box above 0.074 on film0"
    boxes = _boxes(rows)
    x1, y1, x2, y2 = boxes[0]
    hit = [x1, y1, x2 - x1, y2 - y1]
    # a 4 px lesion where no box at the threshold overlaps it at IoU 0.3
    spots = [np.array([[x, y, x + 4.0, y + 4.0]]) for y in range(0, 92, 4) for x in range(0, 76, 4)]
    spot = next(s for s in spots if _iou(boxes, s).max() < 0.3 and _iou(boxes[:1], s).max() == 0)[0]
    far = [float(spot[0]), float(spot[1]), 4.0, 4.0]
    images = [{"id": 7, "file_name": "film0.png", "width": 80, "height": 96},
              {"id": 8, "file_name": "film1.png", "width": 96, "height": 96}]
    anns = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": hit, "area": hit[2] * hit[3], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": far, "area": 4.0, "iscrowd": 0}]
    path = run.parent / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "calcinosis"}]}))
    return path, boxes


@pytest.mark.slow
def test_report_is_well_formed_escaped_and_links_existing_files(detect_run) -> None:
    page = detect_run.parent / "pages" / "report.html"  # elsewhere than the run: links must still resolve
    assert calcidet_main(["report", str(detect_run), "--out", str(page)]) == 0
    checker = check_page(page)
    text = page.read_text(encoding="utf-8")
    assert "research software, not a medical device" in text
    assert "0.0740" in text  # the run's threshold
    assert "b" not in checker.tags  # the <b> of the file name is text, not markup
    assert "a &lt;b&gt;&amp;&quot;q&#x27; #1 %20?.png" in text
    overlays = [unquote(link) for link in checker.links if link.endswith(".png")]
    assert len(set(overlays)) == 4  # each film's overlay, the awkward one included
    assert not any(link.startswith(("http:", "https:", "//")) for link in checker.links)


@pytest.mark.slow
def test_detect_report_flag_writes_the_page_into_the_run(detect_run, small_untrained_checkpoint) -> None:
    films, ckpt = detect_run.parent / "films", small_untrained_checkpoint
    out = detect_run.parent / "run_with_report"
    assert detect_main([str(films), "--checkpoint", str(ckpt), "--output", str(out), "--overlays", "--report",
                        "--num-workers", "0", "--batch-size", "2", "--threshold", "0.074"]) == 0
    checker = check_page(out / "report.html")
    assert "0.0740" in (out / "report.html").read_text(encoding="utf-8")
    assert len({link for link in checker.links if link.endswith(".png")}) == 4


@pytest.mark.slow
def test_report_with_ground_truth_shows_misses_and_false_positives(detect_run) -> None:
    gt, boxes = _ground_truth(detect_run)
    summary = review_against_gt(str(gt), detect_run, 0.074, 0.3)
    by_film = {r.film: r for r in summary.reviews}
    assert set(by_film) == {"film0.png", "film1.png"}
    assert [hit for _, hit in by_film["film0.png"].lesions] == [True, False]
    # boxes overlapping the found lesion at IoU >= 0.3 are duplicates (the FROC rule), not false positives
    lesions = np.array([b for b, _ in by_film["film0.png"].lesions])
    assert len(by_film["film0.png"].false_positives) == int((_iou(boxes, lesions).max(axis=1) < 0.3).sum())
    film1 = [r for r in _rows(detect_run / "detections.csv") if r["image"] == "film1.png"]
    assert len(by_film["film1.png"].false_positives) == sum(r["above_threshold"] == "true" for r in film1)
    assert set(summary.plots) == {"FROC", "Precision-recall"}

    page = detect_run / "report.html"
    assert calcidet_main(["report", str(detect_run), "--gt", str(gt)]) == 0
    checker = check_page(page)
    assert "gt" in checker.ids
    assert sum(link.startswith("data:image/png") for link in checker.links) == 2
    assert "Missed lesions (1)" in page.read_text(encoding="utf-8")


def test_report_refuses_a_folder_without_a_finished_run(tmp_path, capsys) -> None:
    assert calcidet_main(["report", str(tmp_path)]) == 2
    assert "not a complete calcidet detect output" in capsys.readouterr().err


def test_a_box_in_an_ignore_region_is_not_shown_as_a_false_positive() -> None:
    result = ImageResult(1, np.asarray([[10, 10, 30, 30]], np.float32),
                         np.asarray([[10, 10, 30, 30], [60, 40, 80, 60], [0, 60, 10, 70]], np.float32),
                         np.asarray([0.8, 0.9, 0.7], np.float32),
                         ignore_boxes=np.asarray([[55, 35, 95, 75]], np.float32))
    found, false_positives = review_image(result, threshold=0.5, hit_iou=0.3)
    assert found == [True] and false_positives == [2]  # the box at 0.9 lies in the region
    found, false_positives = review_image(result, threshold=0.85, hit_iou=0.3)
    assert found == [False] and false_positives == []
