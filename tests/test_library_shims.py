"""The places calcidet leans on library behaviour that no public API promises, each checked here.

- ``train.callbacks.save_as_epoch_cadence``: ModelCheckpoint's private top-k save (no public call).
- ``model.metrics._ResampledCOCOeval``: pycocotools' ``evaluate()`` calling the overridable
  ``computeIoU``/``evaluateImg`` per image (public methods, undocumented call pattern).

A library upgrade that breaks either fails here, by name, rather than as wrong numbers elsewhere.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.demos.boring_classes import BoringModel

from calcidet.model.metrics import ImageResult, _ResampledCOCOeval, coco_ap, coco_eval
from calcidet.train.callbacks import LastCheckpoint
from tests.bad_inputs import random_results


def test_model_checkpoint_private_methods_keep_their_signatures() -> None:
    assert list(inspect.signature(ModelCheckpoint._save_topk_checkpoint).parameters) == [
        "self", "trainer", "monitor_candidates"]
    assert list(inspect.signature(ModelCheckpoint._monitor_candidates).parameters) == ["self", "trainer"]


def test_last_checkpoint_with_steps_saves_after_each_validation_too(tmp_path) -> None:
    """Steps 3 and 6 by cadence, validation after 2, 4, 6 and 8: the file ends at step 8, not 6."""
    last = LastCheckpoint(dirpath=tmp_path, filename="last", monitor=None, every_n_train_steps=3,
                          enable_version_counter=False)
    trainer = pl.Trainer(max_epochs=4, limit_train_batches=2, limit_val_batches=1, callbacks=[last],
                         logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", num_sanity_val_steps=0)
    trainer.fit(BoringModel())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 8


def _results(seed: int, n: int = 25) -> list[ImageResult]:
    return random_results(seed, n, two_classes=True, first_id=3, id_step=10)


def test_resampled_cocoeval_reproduces_pycocotools_without_matching_again() -> None:
    results = _results(0)
    ev = coco_eval(results)
    resampled = _ResampledCOCOeval(ev, [r.image_id for r in results])
    # Every image once: exactly the source's precision (area "all", most detections).
    identity = resampled.precision(np.arange(len(results)))
    np.testing.assert_array_equal(identity, ev.eval["precision"][:, :, :, 0, -1])
    # A draw with repeats: what a fresh pycocotools evaluation of the repeated images gives.
    picks = np.random.default_rng(1).integers(0, len(results), len(results))
    repeated = [ImageResult(k + 1, results[j].gt_boxes, results[j].boxes, results[j].scores,
                            results[j].gt_labels, results[j].labels) for k, j in enumerate(picks)]
    prec = resampled.precision(picks)
    assert float(prec[prec > -1].mean()) == pytest.approx(coco_ap(repeated)["map"])
