"""``CalcinosisDataModule``: train/val/test loaders from COCO files, plus a predict loader over a folder.

Configured from YAML (``configs/*.yaml``, section ``data:``). With only ``train_json`` given, the
validation set is split off by patient (``data.coco.patient_split``), so no patient is on both sides.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from calcidet.data.coco import CocoIndex, concat_indexes, load_coco, patient_split
from calcidet.data.dataset import (
    CACHE_MODES,
    CacheMode,
    FolderDataset,
    RadiographDataset,
    detection_collate,
)
from calcidet.data.folders import find_radiographs, relative_name
from calcidet.data.transforms import (
    DEFAULT_CROP_SCALE,
    DEFAULT_HARD_NEGATIVE_SHARE,
    AugmentPreset,
    build_transforms,
)


class EpochSeededSampler(Sampler[int]):
    """Shuffles with a permutation that depends only on (seed, epoch).

    A resumed run then replays exactly the order an uninterrupted run would have used: the global
    RNG (which a plain RandomSampler draws from) is not part of a checkpoint. Lightning calls
    ``set_epoch`` at the start of every epoch.
    """

    def __init__(self, length: int, seed: int = 0) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=g).tolist())


class ResumableLoader(DataLoader):
    """A training DataLoader that knows how far into the current epoch it got, and can continue there.

    ``position()`` goes into every checkpoint and ``resume_at()`` applies it on resume (see
    ``train.callbacks.DataPosition``). Resuming from a mid-epoch checkpoint (SIGTERM,
    ``every_n_train_steps``) then skips the batches already trained on, by index and without loading
    them, so the rest of the epoch is the batches an uninterrupted run sees. A plain DataLoader would
    restart the epoch's order and train its first batches twice. The skip works on batches of
    indices, so it also holds under DDP, where Lightning wraps the sampler per rank.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._served = 0  # batches handed out in the current epoch
        self._resume: dict[str, int | None] | None = None

    def _epoch(self) -> int | None:
        return getattr(self.sampler, "epoch", None)

    def __iter__(self) -> Iterator:
        # A generator: this runs at the first batch, after Lightning has set the sampler's epoch.
        skip = 0
        if self._resume is not None:
            if self._resume["epoch"] == self._epoch():  # the checkpoint was written inside this epoch
                skip = int(self._resume["batches"] or 0)
            self._resume = None
        self._served = skip
        for batch in super().__iter__() if skip == 0 else _skipping_iter(self, skip):
            self._served += 1
            yield batch

    def position(self) -> dict[str, int | None]:
        return {"epoch": self._epoch(), "batches": self._served}

    def resume_at(self, position: dict[str, int | None]) -> None:
        self._resume = dict(position)


def _skipping_iter(loader: DataLoader, skip: int) -> Iterator:
    """Iterate ``loader`` without its first ``skip`` batches: a one-off loader over the remaining indices."""
    batches = list(loader.batch_sampler)[skip:]
    rest = DataLoader(
        loader.dataset,
        batch_sampler=batches,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
    )
    return iter(rest)


class CalcinosisDataModule(pl.LightningDataModule):
    """Loaders for calcinosis detection.

    Args:
        train_json, val_json, test_json: COCO annotation files (image paths relative to each file's
            folder unless ``image_root`` is given); a list of files is read as one set (e.g.
            procedural films plus real films with inserted masses).
        image_root: folder the COCO ``file_name``s are relative to (default: the JSON's folder).
        predict_dir: a folder (searched recursively) or a single file for ``predict``.
        val_fraction: share of images split off for validation when ``val_json`` is not given.
        image_size: longest side of the model input; images are resized to it once and cached.
        augment: training augmentation preset (``train``, ``light``, ``eval``, ``none``; see
            ``data.transforms``).
        crop_size: train on ``crop_size`` squares cut from the films at ``image_size`` with scale
            jitter (None: whole films). Validation, test and detection always see the whole film.
        crop_scale: the range of that jitter, as factors of the film at ``image_size`` (detection
            runs at 1.0; the default 0.5-1.1 also shows large masses whole inside a crop).
        hard_negative_share: with ``crop_size``, the share of the windows cut anywhere that are
            centred on one of a film's mined ``hard_negatives`` (``calcidet mine``); films without
            any are cut as before.
        batch_size: images per batch, per device.
        num_workers: DataLoader worker processes per device (-1: one per CPU core, up to 8).
        pin_memory: page-locked host memory for faster host-to-GPU copies (None: when CUDA is present).
        seed: seed of the patient split.
        cache: where decoded films are kept: ``memory`` (each process, the fastest), ``disk``
            (memory-mapped files in ``cache_dir``, one copy per node: films that do not fit in RAM)
            or ``none`` (decoded on every access). See ``data.dataset.RadiographDataset``.
        cache_dir: the ``disk`` cache folder (None: ``.calcidet_cache`` beside the first of
            train_json, val_json, test_json). Entries are keyed by file path, size, mtime and
            ``image_size``, so one folder serves every split and size.
    """

    def __init__(
        self,
        train_json: str | list[str] | None = None,
        val_json: str | list[str] | None = None,
        test_json: str | list[str] | None = None,
        image_root: str | None = None,
        predict_dir: str | None = None,
        val_fraction: float = 0.2,
        image_size: int = 384,
        augment: AugmentPreset = "train",
        crop_size: int | None = None,
        crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE,
        hard_negative_share: float = DEFAULT_HARD_NEGATIVE_SHARE,
        batch_size: int = 8,
        num_workers: int = 2,
        pin_memory: bool | None = None,
        seed: int = 0,
        cache: CacheMode = "memory",
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_json, self.val_json, self.test_json = train_json, val_json, test_json
        self.image_root = image_root
        self.predict_dir = predict_dir
        self.val_fraction = val_fraction
        self.image_size = image_size
        self.augment = augment
        self.crop_size = crop_size
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.hard_negative_share = hard_negative_share
        self.batch_size = batch_size
        self.num_workers = min(os.cpu_count() or 1, 8) if num_workers < 0 else num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.seed = seed
        if cache not in CACHE_MODES:  # checked here too: before any COCO file is read
            raise ValueError(f"data.cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
        self.cache, self.cache_dir = cache, cache_dir
        self.datasets: dict[str, RadiographDataset | FolderDataset] = {}
        self.indexes: dict[str, CocoIndex] = {}

    def _index(self, paths: str | list[str]) -> CocoIndex:
        if isinstance(paths, str):
            return load_coco(paths, self.image_root)
        return concat_indexes([load_coco(p, self.image_root) for p in paths])

    def _coco_dataset(self, index: CocoIndex, preset: str) -> RadiographDataset:
        transforms = build_transforms(preset, self.image_size, crop_size=self.crop_size,
                                      crop_scale=self.crop_scale, hard_negative_share=self.hard_negative_share)
        return RadiographDataset(index.images, self.image_size, transforms,
                                 preload_threads=max(1, min(os.cpu_count() or 1, 8)),
                                 cache=self.cache, cache_dir=self._cache_folder() if self.cache == "disk" else None)

    def _cache_folder(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        first = next(j for j in (self.train_json, self.val_json, self.test_json) if j is not None)
        return Path(first if isinstance(first, str) else first[0]).parent / ".calcidet_cache"

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate") and "val" not in self.datasets:
            if self.train_json is None and self.val_json is None:
                raise ValueError("data.train_json (or data.val_json for validate) is required")
            if self.val_json is not None:
                self.indexes["val"] = self._index(self.val_json)
                if self.train_json is not None and stage == "fit":
                    self.indexes["train"] = self._index(self.train_json)
            else:
                self.indexes["train"], self.indexes["val"] = patient_split(
                    self._index(self.train_json), self.val_fraction, self.seed
                )
            self._check_same_classes()  # before decoding any film
            if stage == "fit":
                self.datasets["train"] = self._coco_dataset(self.indexes["train"], self.augment)
            self.datasets["val"] = self._coco_dataset(self.indexes["val"], "eval")
        if stage == "test" and "test" not in self.datasets:
            if self.test_json is None:
                raise ValueError("data.test_json is required for test")
            self.indexes["test"] = self._index(self.test_json)
            self.datasets["test"] = self._coco_dataset(self.indexes["test"], "eval")
        if stage == "predict" and "predict" not in self.datasets:
            if self.predict_dir is None:
                raise ValueError("data.predict_dir is required for predict")
            root = Path(self.predict_dir)
            files = find_radiographs(root)
            self.datasets["predict"] = FolderDataset(files, [relative_name(f, root) for f in files], self.image_size)

    @property
    def class_names(self) -> list[str]:
        index = next(iter(self.indexes.values()), None)
        return index.class_names if index is not None else ["calcinosis"]

    def _check_same_classes(self) -> None:
        """Every split must name the same classes in the same order: labels are category ranks."""
        loaded = sorted(self.indexes.items(), key=lambda item: ("train", "val", "test").index(item[0]))
        first_split, first = loaded[0]
        for split, index in loaded[1:]:
            if index.class_names != first.class_names:
                raise ValueError(
                    f"the {split} file {index.json_path} has categories {index.class_names}, but the "
                    f"{first_split} file {first.json_path} has {first.class_names}: every split needs the same "
                    f"categories (names, in category-id order)"
                )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return (ResumableLoader if shuffle else DataLoader)(
            self.datasets[split],
            batch_size=self.batch_size,
            sampler=EpochSeededSampler(len(self.datasets[split]), self.seed) if shuffle else None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=detection_collate,
            persistent_workers=self.num_workers > 0 and split == "train",
            drop_last=shuffle and len(self.datasets[split]) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)
