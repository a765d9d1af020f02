"""Named augmentation presets for radiographs, declared in one place (``PRESETS``).

    from calcidet.data.transforms import build_transforms
    t = build_transforms("train", image_size=384)
    out = t(image=image_u8, bboxes=boxes_xyxy, labels=labels)   # out["image"], out["bboxes"], out["labels"]

Inputs follow ``data.contract`` before tensor conversion: a uint8 ``H x W`` radiograph already resized
so that its longest side is about ``image_size`` (the dataset caches it that way), boxes float
``[N, 4]`` as ``[x1, y1, x2, y2]`` pixels (``N = 0`` is the normal case), labels int ``[N]``. Outputs
are the same, in the output image's pixels; every preset but ``none`` ends with the longest side
exactly ``image_size``, except that ``crop_size`` makes ``train`` and ``light`` end in a
``crop_size`` square (below).

- ``train``: geometry a radiograph can plausibly show (left/right flip, small rotation/scale/shift,
  an occasional zoom that keeps every lesion), then exposure, contrast, noise, blur and resolution
  changes as seen across X-ray units. No vertical flip: films are never shown upside down.
- ``light``: flip and brightness/contrast only, for fast CPU training.
- ``eval``: resize only. Boxes are never dropped (ground truth must stay whole).
- ``none``: identity.

Crop training (``crop_size``): the film stays at ``image_size`` (e.g. 768 px, where a mass of 3 % of
the short side keeps ~18 px), is rescaled by 0.5-1.1 (scale jitter: the network sees each lesion at
several sizes) and a ``crop_size`` square window is cut from it, holding a lesion in 2 of 3 crops.
Each step then costs what a ``crop_size`` film costs, while detection runs on the whole film at
``image_size``. This is how small masses get the pixels they need on a CPU budget.

Hard negatives: a film whose COCO record lists ``hard_negatives`` (regions where a model fired on
no lesion, ``calcidet mine``) passes them in with label ``HARD_NEGATIVE``. The windows cut
"anywhere" are then centred on one of them in ``hard_negative_share`` of draws, so the background
the model confuses is shown more often; the lesion windows never aim at them. Films without any
draw exactly as before.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # the import would otherwise call the network

from collections.abc import Callable
from typing import Any, Literal

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.crops.transforms import AtLeastOneBBoxRandomCrop, BaseCrop
from torch.utils.data import get_worker_info


class ZoomKeepingLesions(BaseCrop):
    """Crop a window of ``scale_range`` times the image side, same aspect ratio, holding every box.

    Albumentations' ``BBoxSafeRandomCrop`` can shrink to the lesion itself (a 10x zoom) and changes
    the aspect ratio; this zooms at most ``1 / scale_range[0]`` and grows the window when the boxes
    need more room. Images without boxes get a window anywhere.
    """

    def __init__(self, scale_range: tuple[float, float] = (0.6, 1.0), p: float = 1.0) -> None:
        super().__init__(p=p)
        if not 0.0 < scale_range[0] <= scale_range[1] <= 1.0:
            raise ValueError(f"scale_range must satisfy 0 < low <= high <= 1, got {scale_range}")
        self.scale_range = tuple(scale_range)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale_range",)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        scale = self.py_random.uniform(*self.scale_range)
        bboxes = data.get("bboxes")
        if bboxes is not None and len(bboxes):  # normalised xyxy here, clipped to [0, 1]
            size = np.array([width, height])
            lo = np.clip(np.floor(bboxes[:, :2].min(0) * size), 0, size)  # float error must not
            hi = np.clip(np.ceil(bboxes[:, 2:4].max(0) * size), 0, size)  # push past the border
            scale = max(scale, (hi[0] - lo[0]) / width, (hi[1] - lo[1]) / height)
        else:
            lo, hi = (width, height), (0, 0)  # no constraint
        crop_w, crop_h = min(width, int(np.ceil(scale * width))), min(height, int(np.ceil(scale * height)))
        x1 = self.py_random.randint(int(max(0, hi[0] - crop_w)), int(min(lo[0], width - crop_w)))
        y1 = self.py_random.randint(int(max(0, hi[1] - crop_h)), int(min(lo[1], height - crop_h)))
        return {"crop_coords": (x1, y1, x1 + crop_w, y1 + crop_h)}


# Label of a mined hard-negative region while it rides through the transforms (lesions are 1..K,
# ignore regions 0); the dataset drops these boxes once the crop has been cut.
HARD_NEGATIVE = -1

# Of the crop windows cut anywhere on a film that has mined hard negatives, the share centred on one.
DEFAULT_HARD_NEGATIVE_SHARE = 0.75


def _label_column(bboxes: np.ndarray) -> np.ndarray:
    """Labels of the boxes inside a transform: albumentations appends numeric label fields as columns."""
    return bboxes[:, 4] if bboxes.ndim == 2 and bboxes.shape[1] > 4 else np.zeros(len(bboxes))


class LesionWindowCrop(AtLeastOneBBoxRandomCrop):
    """A window over one lesion (or ignore region) drawn at random; mined hard negatives are not aimed at."""

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        bboxes = data.get("bboxes")
        if bboxes is not None and len(bboxes):
            data = {**data, "bboxes": bboxes[_label_column(bboxes) != HARD_NEGATIVE]}
        return super().get_params_dependent_on_data(params, data)


class HardNegativeWindowCrop(A.RandomCrop):
    """A window anywhere, or, in ``share`` of draws on a film with mined hard negatives, one holding one.

    The window holds the whole region where it fits (a region larger than the window: a part of
    it), at a random position. Films without hard negatives draw exactly what ``RandomCrop`` draws.
    """

    def __init__(self, height: int, width: int, share: float = DEFAULT_HARD_NEGATIVE_SHARE, p: float = 1.0) -> None:
        super().__init__(height=height, width=width, p=p)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"hard-negative share must be within 0..1, got {share}")
        self.share = share

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (*super().get_transform_init_args_names(), "share")

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        bboxes = data.get("bboxes")
        hard = bboxes[_label_column(bboxes) == HARD_NEGATIVE] if bboxes is not None and len(bboxes) else []
        height, width = params["shape"][:2]
        if not len(hard) or height < self.height or width < self.width or self.py_random.random() >= self.share:
            return super().get_params_dependent_on_data(params, data)
        x1, y1, x2, y2 = self.py_random.choice(list(hard))[:4] * np.array([width, height, width, height])
        corner = []
        for lo, hi, window, side in ((x1, x2, self.width, width), (y1, y2, self.height, height)):
            first, last = (hi - window, lo) if hi - lo <= window else (lo, hi - window)  # whole region, or inside it
            first, last = int(np.clip(np.ceil(first), 0, side - window)), int(np.clip(np.floor(last), 0, side - window))
            corner.append(self.py_random.randint(min(first, last), max(first, last)))
        return {"crop_coords": (corner[0], corner[1], corner[0] + self.width, corner[1] + self.height),
                "pad_params": None}


# Share of crop-mode samples that show the whole film shrunk into the crop instead: large masses
# and their joint then appear whole, with the context a window can cut off.
WHOLE_FILM_SHARE = 0.25


# The film (at ``image_size``) is rescaled by a factor drawn from this range before a window is cut.
DEFAULT_CROP_SCALE = (0.5, 1.1)


def _crops(image_size: int, crop_size: int, crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE,
           hard_negative_share: float = DEFAULT_HARD_NEGATIVE_SHARE) -> list[A.BasicTransform]:
    """Scale jitter, then a ``crop_size`` window that holds a lesion in 2 of 3 draws; or the whole film."""
    pad = A.PadIfNeeded(min_height=crop_size, min_width=crop_size, border_mode=cv2.BORDER_CONSTANT, fill=0)
    window = A.Sequential([
        A.LongestMaxSize(max_size=image_size),
        A.RandomScale(scale_limit=(crop_scale[0] - 1, crop_scale[1] - 1), area_for_downscale="image", p=1.0),
        pad,
        A.OneOf([
            # erosion: the crop must overlap the chosen lesion's central part, not hold all of it
            LesionWindowCrop(height=crop_size, width=crop_size, erosion_factor=0.5, p=2 / 3),
            # anywhere (markers, look-alikes), or over a mined false positive
            HardNegativeWindowCrop(height=crop_size, width=crop_size, share=hard_negative_share, p=1 / 3),
        ], p=1.0),
    ], p=1 - WHOLE_FILM_SHARE)
    whole = A.Sequential([A.LongestMaxSize(max_size=crop_size), pad], p=WHOLE_FILM_SHARE)
    return [A.OneOf([window, whole], p=1.0)]


def _train(image_size: int, crop_size: int | None = None, crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE,
           hard_negative_share: float = DEFAULT_HARD_NEGATIVE_SHARE) -> list[A.BasicTransform]:
    if crop_size is None:
        sizing = [ZoomKeepingLesions(scale_range=(0.6, 1.0), p=0.2), A.LongestMaxSize(max_size=image_size)]
    else:
        sizing = _crops(image_size, crop_size, crop_scale, hard_negative_share)
    return [
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.85, 1.15), translate_percent=(-0.05, 0.05), rotate=(-10, 10),
                 keep_ratio=True, border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.5),
        *sizing,
        # pixel-level changes after the resize: they then cost the same for every image
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
        A.RandomGamma(gamma_limit=(80, 120), p=0.3),
        A.CLAHE(clip_limit=(1.0, 2.0), tile_grid_size=(8, 8), p=0.15),
        A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
        A.GaussianBlur(sigma_limit=(0.3, 1.0), p=0.15),
        A.Downscale(scale_range=(0.5, 0.9), p=0.1,
                    interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}),
    ]


def _light(image_size: int, crop_size: int | None = None, crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE,
           hard_negative_share: float = DEFAULT_HARD_NEGATIVE_SHARE) -> list[A.BasicTransform]:
    sizing = ([A.LongestMaxSize(max_size=image_size)] if crop_size is None
              else _crops(image_size, crop_size, crop_scale, hard_negative_share))
    return [
        A.HorizontalFlip(p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
        *sizing,
    ]


def _eval(image_size: int, crop_size: int | None = None, crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE,
          hard_negative_share: float = 0.0) -> list[A.BasicTransform]:
    return [A.LongestMaxSize(max_size=image_size)]  # always the whole film: ground truth stays whole


def _none(image_size: int, crop_size: int | None = None, crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE,
          hard_negative_share: float = 0.0) -> list[A.BasicTransform]:
    return [A.NoOp(p=1.0)]  # an empty Compose warns that its box processor has nothing to do


# PRESETS' names, as a type so that LightningCLI lists them and rejects a typo when the config is
# parsed. tests/test_typed_configs.py keeps the two equal.
AugmentPreset = Literal["train", "light", "eval", "none"]

# name -> (transforms for image_size, crop_size, crop_scale and hard_negative_share; may the policy drop
# boxes that are mostly cut off)
PRESETS: dict[str, tuple[Callable[..., list[A.BasicTransform]], bool]] = {
    "train": (_train, True),
    "light": (_light, True),
    "eval": (_eval, False),
    "none": (_none, False),
}


class _WorkerSeededCompose(A.Compose):
    """Compose that reseeds itself once per DataLoader worker.

    Albumentations draws from its own generator, seeded when the Compose is built; forked workers
    would all inherit that state and repeat each other's augmentations. torch gives every worker
    its own seed (new each epoch unless workers persist), so follow it.
    """

    _worker_seed: int | None = None

    def __call__(self, *args: Any, force_apply: bool = False, **data: Any) -> dict[str, Any]:
        info = get_worker_info()
        if info is not None and info.seed != self._worker_seed:
            self._worker_seed = info.seed
            self.set_random_seed(info.seed)
        return super().__call__(*args, force_apply=force_apply, **data)


def build_transforms(preset: str, image_size: int, *, crop_size: int | None = None,
                     crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE,
                     hard_negative_share: float = DEFAULT_HARD_NEGATIVE_SHARE, seed: int | None = None) -> A.Compose:
    """Build the named augmentation policy.

    Args:
        preset: one of ``PRESETS``: ``train``, ``light``, ``eval``, ``none``.
        image_size: longest side of the output image (every preset but ``none``).
        crop_size: ``train`` and ``light`` return ``crop_size`` squares cut from the film at
            ``image_size`` with scale jitter (None: the whole film).
        crop_scale: the range of that scale jitter, as factors of the film at ``image_size``
            (default 0.5-1.1; detection runs at 1.0).
        hard_negative_share: with ``crop_size``, the share of the windows cut anywhere that are
            centred on a mined hard negative, on films that list some (module docstring).
        seed: seed of the policy's random draws (None: fresh entropy). In DataLoader workers
            the policy is reseeded from the worker's torch seed either way.

    Returns:
        A pipeline called as ``t(image=uint8 HxW, bboxes=float [N, 4] xyxy, labels=int [N])``.

    Raises:
        ValueError: for an unknown preset.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; choose one of {sorted(PRESETS)}")
    if crop_size is not None and not 32 <= crop_size <= image_size:
        raise ValueError(f"crop_size must be between 32 and image_size ({image_size}), got {crop_size}")
    if not 0.0 < crop_scale[0] <= crop_scale[1] <= 4.0:
        raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 4, got {tuple(crop_scale)}")
    if not 0.0 <= hard_negative_share <= 1.0:
        raise ValueError(f"hard_negative_share must be within 0..1, got {hard_negative_share}")
    make, may_drop = PRESETS[preset]
    bbox_params = A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        # a lesion cut down to a sliver by rotation/shift is not something to find any more
        min_visibility=0.3 if may_drop else 0.0,
        min_width=2.0 if may_drop else 0.0,
        min_height=2.0 if may_drop else 0.0,
        clip=True,  # boxes scaled to the cached image can overshoot its border by rounding
        filter_invalid_bboxes=True,
    )
    policy = make(image_size, crop_size, tuple(crop_scale), hard_negative_share)
    return _WorkerSeededCompose(policy, bbox_params=bbox_params, seed=seed)
