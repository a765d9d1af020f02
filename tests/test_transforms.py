"""Augmentation presets keep boxes on their lesions, pass empty targets through, and respect image_size."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from calcidet.data.contract import check_target, make_target
from calcidet.data.transforms import PRESETS, build_transforms

# wide, tall and square boxes (labels 1, 2, 3) in the central part of a 288 x 384 image, left of centre
BOXES = np.array([[60, 80, 150, 110], [170, 70, 190, 150], [100, 170, 160, 230]], dtype=np.float32)
LABELS = np.array([1, 2, 3], dtype=np.int64)


def bright_boxes_image(shape: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    image = np.full(shape, 25, dtype=np.uint8)
    for x1, y1, x2, y2 in boxes.astype(int):
        image[y1:y2, x1:x2] = 230
    return image


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def aspect(box: np.ndarray) -> np.ndarray:
    return (box[2] - box[0]) / (box[3] - box[1])


def bright_region_boxes(image: np.ndarray) -> np.ndarray:
    """xyxy boxes of the bright connected regions (Otsu threshold copes with contrast/gamma/noise)."""
    _, mask = cv2.threshold(image, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    stats = stats[1:][stats[1:, cv2.CC_STAT_AREA] >= 20]  # noise specks are not lesions
    x, y, w, h = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3]
    return np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_boxes_stay_on_their_lesions(preset: str) -> None:
    image = bright_boxes_image((288, 384), BOXES)
    moved = 0
    for seed in range(25):
        out = build_transforms(preset, 384, seed=seed)(image=image, bboxes=BOXES, labels=LABELS)
        boxes, labels = np.asarray(out["bboxes"]).reshape(-1, 4), np.asarray(out["labels"])
        # boxes sit well inside the image, so no policy may lose one
        assert sorted(labels.tolist()) == [1, 2, 3], (preset, seed)
        regions = bright_region_boxes(out["image"])
        assert len(regions) == 3, (preset, seed)
        for box, label in zip(boxes, labels, strict=True):
            best = max(iou(box, r) for r in regions)
            assert best >= 0.8, (preset, seed, box, regions)
            # the label travels with its box: sources are wide (3:1), tall (1:4) and square, and a
            # box keeps the aspect ratio nearest to its own source's through flips, zoom and +-10 deg
            nearest = np.argmin(np.abs(np.log(aspect(box)) - np.log(aspect(BOXES.T))))
            assert nearest + 1 == label, (preset, seed, label, box)
        moved += not np.allclose(boxes[np.argsort(labels)], BOXES, atol=1.0)
    if preset in ("train", "light"):
        assert moved >= 5, "the policy hardly ever moved a box: is the geometry applied?"
    else:
        assert moved == 0


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize(("shape", "image_size"), [((288, 384), 384), ((320, 180), 320), ((200, 150), 256)])
def test_sizes_and_empty_targets(preset: str, shape: tuple[int, int], image_size: int) -> None:
    t = build_transforms(preset, image_size, seed=0)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    for _ in range(10):
        out = t(image=image, bboxes=np.zeros((0, 4), np.float32), labels=np.zeros((0,), np.int64))
        assert out["image"].dtype == np.uint8 and out["image"].ndim == 2
        expected = shape if preset == "none" else image_size
        assert (out["image"].shape if preset == "none" else max(out["image"].shape)) == expected
        assert np.asarray(out["bboxes"]).reshape(-1, 4).shape == (0, 4) and len(out["labels"]) == 0
        # boxes at the border or overshooting it by rounding stay inside the output image
        boxes = np.array([[0, 0, 30, 20], [shape[1] - 25, shape[0] - 40, shape[1] + 0.4, shape[0] + 0.3]],
                         dtype=np.float32)
        out = t(image=image, bboxes=boxes, labels=np.array([1, 1]))
        h, w = out["image"].shape
        check_target(make_target(out["bboxes"], out["labels"], 0), h, w)


def test_eval_never_drops_ground_truth() -> None:
    tiny = np.array([[10, 10, 11, 11], [50, 40, 50.5, 48]], dtype=np.float32)  # sub-2-pixel lesions
    out = build_transforms("eval", 384)(image=np.zeros((288, 384), np.uint8), bboxes=tiny, labels=[1, 1])
    np.testing.assert_allclose(out["bboxes"], tiny)


def test_unknown_preset_lists_the_names() -> None:
    with pytest.raises(ValueError, match="heavy") as info:
        build_transforms("heavy", 384)
    for name in PRESETS:
        assert name in str(info.value)


class _Repeated(Dataset):
    """The same radiograph, augmented anew at every index."""

    def __init__(self) -> None:
        self.image = bright_boxes_image((288, 384), BOXES)
        self.t = build_transforms("train", 384, seed=0)

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self.t(image=self.image, bboxes=BOXES, labels=LABELS)["bboxes"], dtype=np.float32)


def test_dataloader_workers_draw_different_augmentations() -> None:
    torch.manual_seed(0)
    loader = DataLoader(_Repeated(), batch_size=None, num_workers=2)
    boxes = [b.numpy() for b in loader]  # items alternate between worker 0 and worker 1
    worker0, worker1 = np.concatenate(boxes[0::2]), np.concatenate(boxes[1::2])
    assert worker0.shape != worker1.shape or not np.allclose(worker0, worker1)


@pytest.mark.parametrize("preset", ["train", "light"])
def test_crops_are_squares_whose_boxes_sit_on_their_lesions(preset: str) -> None:
    # a 576 x 768 film with one small bright lesion: crops must be 256 squares, mostly holding it
    lesion = np.array([[600, 420, 640, 450]], dtype=np.float32)
    image = bright_boxes_image((576, 768), lesion)
    t = build_transforms(preset, 768, crop_size=256, seed=0)
    held, sizes = 0, []
    for _ in range(60):
        out = t(image=image, bboxes=lesion, labels=np.array([1]))
        assert out["image"].shape == (256, 256)
        boxes = np.asarray(out["bboxes"]).reshape(-1, 4)
        assert len(boxes) <= 1
        if len(boxes):
            held += 1
            sizes.append(boxes[0, 2] - boxes[0, 0])
            x1, y1, x2, y2 = boxes[0].astype(int)
            # the box covers bright pixels only; a crop's edge may cut it (min_visibility keeps >= 30 %)
            assert out["image"][y1:y2, x1:x2].mean() > 150, boxes[0]
    assert held >= 30, "crops should hold the lesion about 2 times in 3"
    # scale jitter: the 40 px lesion is seen at 0.5-1.1 times its size on the film
    assert min(sizes) < 30 and max(sizes) > 38, (min(sizes), max(sizes))


def test_crops_keep_evaluation_whole_and_reject_bad_sizes() -> None:
    lesion = np.array([[600, 420, 640, 450]], dtype=np.float32)
    out = build_transforms("eval", 768, crop_size=256)(image=np.zeros((576, 768), np.uint8), bboxes=lesion,
                                                       labels=[1])
    assert out["image"].shape == (576, 768)
    np.testing.assert_allclose(out["bboxes"], lesion)
    with pytest.raises(ValueError, match="crop_size"):
        build_transforms("train", 384, crop_size=512)


def test_crop_scale_sets_the_window_scale_jitter() -> None:
    # the 40 px lesion on a 768 px film: windows at exactly 1.5x show it at 60 px, whole-film views
    # (a quarter of draws, the film shrunk into the 256 crop) at 40 * 256 / 768
    lesion = np.array([[600, 420, 640, 450]], dtype=np.float32)
    image = bright_boxes_image((576, 768), lesion)
    t = build_transforms("light", 768, crop_size=256, crop_scale=(1.5, 1.5), seed=0)
    widths = set()
    for _ in range(40):
        boxes = np.asarray(t(image=image, bboxes=lesion, labels=np.array([1]))["bboxes"]).reshape(-1, 4)
        widths.update(round(float(b[2] - b[0])) for b in boxes if b[0] > 0 and b[2] < 256)  # uncut boxes only
    assert widths == {60, 13}, widths
    with pytest.raises(ValueError, match="crop_scale"):
        build_transforms("train", 768, crop_size=256, crop_scale=(1.2, 0.8))
