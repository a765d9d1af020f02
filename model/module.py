"""``CalcinosisDetector``: the LightningModule that fine-tunes a torchvision detector on radiographs.

    calcidet fit --config configs/demo.yaml

Training logs each torchvision loss under ``train/``; validation and test compute COCO AP/AP50,
lesion-level FROC (sensitivity at 1/8..8 FP per image, CPM) and image-level AUROC with
``model.metrics`` (the same code ``calcidet evaluate`` uses), logged as ``val/map_50``,
``val/froc_cpm``, ... The validation FROC also sets the checkpoint's operating threshold: the score at
which the detector makes ``operating_fp_per_image`` false positives per image, which ``calcidet
detect`` uses unless told otherwise.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, get_args

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Timer
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from calcidet.model.builder import Arch, build_detector
from calcidet.model.ignore_regions import (
    TORCHVISION_FOCAL_ALPHA,
    TORCHVISION_FOCAL_GAMMA,
    IgnoreRegionFCOSHead,
)
from calcidet.model.inference import DEFAULT_THRESHOLD, CalcinosisPredictor, Detections
from calcidet.model.metrics import ImageResult, detection_metrics, froc_curve, threshold_at_fp_rate

log = logging.getLogger("calcidet")

# Choices as types: LightningCLI lists them in --help and rejects a typo when the config is parsed.
Optimizer = Literal["adamw", "sgd"]
Scheduler = Literal["cosine", "step", "constant"]

# fit_schedule_to_max_time measures the pace over this many steps at a time, and re-plans as often.
PACE_EVERY = 10


class CalcinosisDetector(pl.LightningModule):
    """Detector of periarticular calcinosis.

    Args:
        arch, weights, weights_backbone, trainable_backbone_layers, allow_download: see
            ``model.builder.build_detector``.
        class_names: lesion classes (label k is ``class_names[k - 1]``). ``calcidet fit`` sets them from
            the training COCO's categories; they are stored in the checkpoint.
        image_size: longest image side fed to the network (the data module resizes to it).
        crop_size: side of the square training crops when the data module cuts them
            (``data.crop_size``; None: whole films). Training steps then run the network at that size.
        optimizer: ``adamw`` or ``sgd``.
        lr, weight_decay, momentum: optimiser settings (momentum for SGD only).
        head_lr_scale: learning rate of the layers outside the backbone's feature extractor
            (``backbone.body``: the FPN and the detection head, which start from random) as a multiple of
            ``lr``. With a pretrained body a short run can let the new layers learn faster than the
            features they read; 1.0 trains everything at ``lr``.
        focal_gamma, focal_alpha: the focal loss of calcidet's FCOS models (torchvision's 2 and 0.25 by
            default). A lower gamma weights the easy background less against the hard cases; on the
            demo's CPU runs gamma 1.5 read a little higher CPM on real films (benchmarks/RESULTS.md).
        scheduler: ``cosine`` (linear warm-up, then cosine decay to ``lr * min_lr_ratio``), ``step``
            (warm-up, then multiply by ``step_gamma`` at each fraction of training in
            ``step_milestones``) or ``constant`` (warm-up only).
        warmup_steps: optimiser steps of linear warm-up from ``lr * 0.01``.
        fit_schedule_to_max_time: when ``trainer.max_time`` will stop training before ``max_steps``
            (a slower machine than the config was written for), shorten the schedule to the steps that
            fit, measured as training goes, so that the run ends annealed rather than cut off at a high
            learning rate. Leave off where ``max_time`` is a safety net before a requeue and resume.
        ema_decay: keep an exponential moving average of the weights (e.g. 0.999) and evaluate,
            predict and export with it; None turns it off.
        init_from: a calcidet checkpoint whose weights start this run (fine-tuning, e.g. synthetic
            pretraining then a hospital's own cases); the optimiser starts fresh.
        freeze_backbone: keep backbone weights (and its BatchNorm statistics) fixed.
        score_thresh: lowest score the network reports (metrics sweep everything above it).
        operating_fp_per_image: FP rate on validation that defines the operating threshold.
        hit_iou: IoU at which a detection finds a lesion for FROC.
    """

    def __init__(
        self,
        arch: Arch = "fcos_tiny",
        class_names: list[str] | None = None,
        weights: str | None = None,
        weights_backbone: str | None = None,
        trainable_backbone_layers: int | None = None,
        allow_download: bool = False,
        image_size: int = 384,
        crop_size: int | None = None,
        optimizer: Optimizer = "adamw",
        lr: float = 1e-3,
        head_lr_scale: float = 1.0,
        focal_gamma: float = TORCHVISION_FOCAL_GAMMA,
        focal_alpha: float = TORCHVISION_FOCAL_ALPHA,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: Scheduler = "cosine",
        warmup_steps: int = 100,
        fit_schedule_to_max_time: bool = False,
        min_lr_ratio: float = 0.01,
        step_milestones: tuple[float, ...] = (0.7, 0.9),
        step_gamma: float = 0.1,
        ema_decay: float | None = None,
        init_from: str | None = None,
        freeze_backbone: bool = False,
        score_thresh: float = 0.05,
        operating_fp_per_image: float = 0.25,
        hit_iou: float = 0.3,
    ) -> None:
        super().__init__()
        # The CLI checks these when parsing; from Python, fail here rather than when fit starts.
        for name, value, choices in (("optimizer", optimizer, Optimizer), ("scheduler", scheduler, Scheduler)):
            if value not in get_args(choices):
                raise ValueError(f"{name} must be one of {', '.join(get_args(choices))}, not {value!r}")
        if not head_lr_scale > 0:
            raise ValueError(f"head_lr_scale must be > 0, not {head_lr_scale}")
        if not (focal_gamma >= 0 and 0 <= focal_alpha <= 1):
            raise ValueError(f"focal_gamma must be >= 0 and focal_alpha in [0, 1], not {focal_gamma}, {focal_alpha}")
        self.save_hyperparameters()
        self.class_names = list(class_names or ["calcinosis"])
        self.model = build_detector(
            arch=arch, num_classes=len(self.class_names) + 1, weights=weights, weights_backbone=weights_backbone,
            min_size=image_size, max_size=image_size, trainable_backbone_layers=trainable_backbone_layers,
            score_thresh=score_thresh, allow_download=allow_download,
        )
        self._set_focal_loss(arch, focal_alpha, focal_gamma)
        if init_from:
            self._load_init_weights(init_from)
        if freeze_backbone:
            self.model.net.backbone.requires_grad_(False)
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            if ema_decay else None
        )
        if self.ema is not None:
            # The average is updated from the trained weights, never by gradients. Without this, DDP
            # counts its copy as parameters that "were not used in producing the loss" and stops.
            # DDP keeps the trained weights equal on every rank, so the averages stay equal too.
            self.ema.requires_grad_(False)
        self.operating_threshold: float | None = None
        self._results: list[ImageResult] = []
        # Optimiser steps the schedule spans: set in configure_optimizers, shortened by the time budget.
        self.schedule_steps: int | None = None
        self._budget_start: tuple[int, float] | None = None  # (step, seconds elapsed) the pace is measured from

    # --- weights -------------------------------------------------------------------------------
    def _set_focal_loss(self, arch: str, alpha: float, gamma: float) -> None:
        head = getattr(self.model.net, "head", None)
        if isinstance(head, IgnoreRegionFCOSHead):
            head.focal_alpha, head.focal_gamma = alpha, gamma
        elif (alpha, gamma) != (TORCHVISION_FOCAL_ALPHA, TORCHVISION_FOCAL_GAMMA):
            raise ValueError(f"focal_alpha and focal_gamma apply to calcidet's own FCOS models (fcos_tiny, "
                             f"fcos_efficientnet_lite*), not to {arch}")

    def _load_init_weights(self, path: str) -> None:
        from calcidet.model.checkpoint import load_checkpoint, model_state_dict

        state = model_state_dict(load_checkpoint(path))
        own = self.model.state_dict()
        fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not fitting:
            raise ValueError(f"init_from={path}: no weights fit arch {self.hparams.arch!r}")
        self.model.load_state_dict(fitting, strict=False)
        skipped = sorted(set(own) - set(fitting))
        if skipped:
            log.info("init_from %s: %d tensors loaded, %d kept fresh (e.g. %s)", path, len(fitting),
                     len(skipped), skipped[:3])

    @property
    def inference_model(self) -> nn.Module:
        """The weights used for evaluation and prediction: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def setup(self, stage: str) -> None:
        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        indexes = getattr(data, "indexes", {})
        for split, index in indexes.items():
            if index.class_names != self.class_names:
                raise ValueError(
                    f"the {split} file {index.json_path} has categories {index.class_names}, but the model "
                    f"detects {self.class_names}: evaluate a checkpoint on files with its own categories"
                )

    def on_train_epoch_start(self) -> None:
        if self.hparams.freeze_backbone:
            self.model.net.backbone.eval()  # frozen means BatchNorm statistics too

    # --- training ------------------------------------------------------------------------------
    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return self.inference_model(images)

    def training_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> Tensor:
        images, targets = batch
        with self._network_size(self.hparams.crop_size):
            losses = self.model(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            ids = [int(t["image_id"]) for t in targets]
            parts = {k: float(v) for k, v in losses.items()}
            raise FloatingPointError(
                f"non-finite training loss at step {self.global_step} (epoch {self.current_epoch}, "
                f"batch {batch_idx}, image ids {ids}): {parts}. Lower the learning rate or enable "
                f"gradient clipping (trainer.gradient_clip_val)."
            )
        bs = len(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=bs)
        if self._trainer is not None and self._trainer.optimizers:
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)
        return loss

    @contextmanager
    def _network_size(self, size: int | None) -> Iterator[None]:
        """Run torchvision's internal resize at ``size`` instead of ``image_size`` for a while.

        Its target sizes are public attributes; a crop must pass through at its own size, not be
        blown up to the film size the resize is set to for whole films.
        """
        transform = self.model.net.transform
        saved = transform.min_size, transform.max_size
        if size is not None:
            transform.min_size, transform.max_size = (size,), size
        try:
            yield
        finally:
            transform.min_size, transform.max_size = saved

    def on_fit_start(self) -> None:
        self._fit_started = time.monotonic()

    def on_fit_end(self) -> None:
        seconds = time.monotonic() - self._fit_started
        log.info("training took %.0f s (%d optimiser steps)", seconds, self.global_step)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        if self.hparams.fit_schedule_to_max_time:
            self._fit_schedule_to_time()

    def _fit_schedule_to_time(self) -> None:
        """Every ``PACE_EVERY`` steps, fit the schedule to the steps that ``max_time`` leaves room for.

        The pace is measured from the second step on (the first holds start-up: workers, caches) and
        includes validations; the schedule never grows past the trainer's own step count.
        """
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        remaining = None if timer is None else timer.time_remaining()
        if remaining is None or self.schedule_steps is None:
            return
        step, elapsed = self.global_step, timer.time_elapsed()
        if self._budget_start is None:  # the first steps include start-up (workers, caches): pace from here
            self._budget_start = (step, elapsed)
            return
        start_step, start_elapsed = self._budget_start
        if step - start_step < PACE_EVERY or (step - start_step) % PACE_EVERY:
            return
        seconds_per_step = (elapsed - start_elapsed) / (step - start_step)
        fit = step + int(remaining / max(seconds_per_step, 1e-6))
        configured = self._configured_steps()
        planned = min(max(fit, step + 1), configured)
        # Every rank must step the same schedule (DDP keeps the weights equal only under equal rates).
        planned = int(self.trainer.strategy.broadcast(planned, src=0))
        if planned < self.schedule_steps == configured:  # the first shortening: say so once
            log.info("trainer.max_time leaves time for about %d of the %d optimiser steps (%.2f s each): the "
                     "learning-rate schedule now ends there", planned, self.schedule_steps, seconds_per_step)
        self.schedule_steps = planned

    # --- evaluation ----------------------------------------------------------------------------
    def _eval_step(self, batch: tuple[list[Tensor], list[dict]]) -> None:
        images, targets = batch
        for det, tgt in zip(self.inference_model(images), targets):
            self._results.append(ImageResult(
                image_id=int(tgt["image_id"]),
                gt_boxes=tgt["boxes"].cpu().numpy(), gt_labels=tgt["labels"].cpu().numpy(),
                boxes=det["boxes"].float().cpu().numpy(), scores=det["scores"].float().cpu().numpy(),
                labels=det["labels"].cpu().numpy(),
                ignore_boxes=tgt["ignore_boxes"].cpu().numpy() if "ignore_boxes" in tgt else None,
            ))

    def validation_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> None:
        self._eval_step(batch)

    def _gather_results(self) -> list[ImageResult]:
        results, self._results = self._results, []
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[list[ImageResult] | None] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, results)
            # The distributed sampler pads with repeats so every rank gets as many: drop them.
            unique = {r.image_id: r for part in parts for r in (part or [])}
            results = [unique[k] for k in sorted(unique)]
        return results

    def _log_metrics(self, prefix: str) -> dict[str, float]:
        results = self._gather_results()
        metrics = detection_metrics(results, self.hparams.hit_iou)
        # NaN (e.g. AUROC with one class only) would break "best checkpoint" comparisons.
        clean = {f"{prefix}/{k}": (v if math.isfinite(v) else 0.0) for k, v in metrics.items()}
        # Every rank holds the same gathered results, hence the same values: the mean over ranks that
        # sync_dist takes is the value itself (and Lightning stops warning about epoch-level logging).
        self.log_dict(clean, sync_dist=True)
        if prefix == "val" and not self.trainer.sanity_checking:
            curve = froc_curve(results, self.hparams.hit_iou)
            self.operating_threshold = threshold_at_fp_rate(curve, self.hparams.operating_fp_per_image)
            self.log("val/operating_threshold", self.operating_threshold, sync_dist=True)
        return clean

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    # --- prediction ----------------------------------------------------------------------------
    def predict_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> list[Detections]:
        """One ``Detections`` per image of a ``FolderDataset`` batch (``data.predict_dir``).

        Goes through ``CalcinosisPredictor``, the one detection path: the operating threshold, boxes
        in original pixels, unreadable files as results with ``error``. ``calcidet detect`` is the
        command that writes files; this serves ``Trainer.predict`` from Python.
        """
        images, metas = batch
        threshold = self.operating_threshold if self.operating_threshold is not None else DEFAULT_THRESHOLD
        predictor = CalcinosisPredictor(self.inference_model, self.hparams.image_size, threshold,
                                        self.class_names, self.device)
        return predictor.detect_samples(images, metas)

    # --- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        # (decay?, new layer?) -> parameters. Norms and biases are not weight-decayed; the layers
        # outside the feature extractor get their own rate only when it differs (old checkpoints
        # resume with the two groups they were saved with).
        split = hp.head_lr_scale != 1.0
        buckets: dict[tuple[bool, bool], list[Tensor]] = {}
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                decays = not (p.ndim <= 1 or name.endswith(".bias"))
                new_layer = split and not name.startswith("net.backbone.body.")
                buckets.setdefault((decays, new_layer), []).append(p)
        groups = [
            {"params": params, "weight_decay": hp.weight_decay if decays else 0.0,
             "lr": hp.lr * (hp.head_lr_scale if new_layer else 1.0)}
            for (decays, new_layer), params in sorted(buckets.items(), key=lambda kv: (not kv[0][0], kv[0][1]))
        ]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=True)
        else:  # "adamw" (__init__ checked the choice)
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        if self.schedule_steps is None:  # a resumed run keeps the length its checkpoint planned
            self.schedule_steps = self._configured_steps()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=self._lr_factor())
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _configured_steps(self) -> int:
        """The optimiser steps the trainer is set to run (``max_steps``, or what the epochs hold)."""
        return max(int(self.trainer.estimated_stepping_batches), 1)

    def _lr_factor(self):
        hp = self.hparams

        def factor(step: int) -> float:
            total = self.schedule_steps or 1  # read at every step: the time budget may shorten it
            warmup = min(hp.warmup_steps, total // 2)
            if step < warmup:
                return 0.01 + 0.99 * step / warmup
            if hp.scheduler == "cosine":
                t = (step - warmup) / max(total - warmup, 1)
                return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
            if hp.scheduler == "step":
                return hp.step_gamma ** sum(step >= m * total for m in hp.step_milestones)
            return 1.0

        return factor

    # --- checkpoint metadata -------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["calcidet"] = {
            "operating_threshold": self.operating_threshold,
            "class_names": self.class_names,
            "image_size": self.hparams.image_size,
            "arch": self.hparams.arch,
            "schedule_steps": self.schedule_steps,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("calcidet", {})
        stored = meta.get("class_names")
        if stored is not None and list(stored) != self.class_names:
            raise ValueError(f"the checkpoint detects {list(stored)}, but this run's data has categories "
                             f"{self.class_names}: use files with the checkpoint's categories")
        self.operating_threshold = meta.get("operating_threshold")
        if self.hparams.fit_schedule_to_max_time:  # otherwise the config's length, which a resume may extend
            self.schedule_steps = meta.get("schedule_steps")
