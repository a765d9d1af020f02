"""Callbacks the ``calcidet`` command always installs.

``CheckpointOnSigterm``: SLURM (and Kubernetes, and most schedulers) send SIGTERM before killing a
preempted job. Lightning notices the signal and stops after the current batch; this callback first
writes ``last.ckpt`` into the checkpoint folder, so that the requeued job resumes with
``--ckpt_path last`` having lost at most one batch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger("calcidet")


class CheckpointOnSigterm(Callback):
    """Save ``last.ckpt`` when the trainer has received SIGTERM, before Lightning stops the run.

    Usually at the end of the batch under way. A signal that lands during validation or at an
    epoch's end stops the run before another training batch ends: then at the exception Lightning
    raises for it (``SIGTERMException``, which every callback's ``on_exception`` sees).
    """

    def __init__(self) -> None:
        self.saved = False

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.received_sigterm:
            self._save(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        if self.saved:
            return
        self.saved = True
        ckpt_cb = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.dirpath), None)
        folder = Path(ckpt_cb.dirpath) if ckpt_cb else Path(trainer.default_root_dir) / "checkpoints"
        path = folder / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"
        trainer.save_checkpoint(path)  # collective: every rank calls it, rank 0 writes
        log.info("SIGTERM received at step %d; saved %s and stopping. Resume with --ckpt_path last.",
                 trainer.global_step, path)


class DataPosition(Callback):
    """Checkpoint where the training loader was inside its epoch, and continue there on resume.

    Lightning's own hook for loader state is not applied when the loader was built before the
    checkpoint was restored (``estimated_stepping_batches`` in ``configure_optimizers`` builds it),
    so this does it with public hooks: the position is written beside the weights and handed to the
    loader when training starts, before its first batch.
    """

    KEY = "calcidet_data_position"

    def __init__(self) -> None:
        self._pending: dict | None = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        loader = trainer.train_dataloader
        if hasattr(loader, "position"):
            checkpoint[self.KEY] = loader.position()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get(self.KEY)
        if trainer.max_steps != -1:
            resume_epoch_end_as_last_batch(checkpoint)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        if self._pending is not None and hasattr(loader, "resume_at"):
            loader.resume_at(self._pending)
        self._pending = None


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``: after every validation and, with ``every_n_train_steps``, every N steps too.

    ModelCheckpoint takes either an epoch or a step (or time) cadence, not several; with steps alone,
    ``last.ckpt`` would miss the end of training and the validation results (operating threshold)
    that detect reads from it. So the step cadence is ModelCheckpoint's own and, whenever there is
    no epoch cadence, the save after validation is added here.
    """

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs:  # epoch cadence: ModelCheckpoint already saves after validation
            return super().on_validation_end(trainer, pl_module)
        # ModelCheckpoint's own skip test would also skip when the step cadence saved at this very
        # step, before validation; this save must still happen, to carry the validation's results.
        if trainer.sanity_checking or trainer.state.fn != "fit" or trainer.fast_dev_run:
            return None
        save_as_epoch_cadence(self, trainer)
        return None


def save_as_epoch_cadence(checkpoint: ModelCheckpoint, trainer: pl.Trainer) -> None:
    """Make now the save ``checkpoint``'s epoch cadence makes: filename template, top-k, old files.

    Lightning has no public call for it (its hooks decide by themselves whether to save), so this is
    the one place calcidet reaches into ModelCheckpoint's private methods.
    tests/test_library_shims.py fails if they disappear, change signature or stop saving.
    """
    checkpoint._save_topk_checkpoint(trainer, checkpoint._monitor_candidates(trainer))


def resume_epoch_end_as_last_batch(checkpoint: dict) -> bool:
    """Rewrite a checkpoint saved at an epoch's end as if saved after that epoch's last batch.

    With ``max_steps`` set, Lightning (2.4-2.6) resumes such a checkpoint by finishing the ended
    epoch a second time and counting it again, so with ``max_epochs`` also set a resumed run can stop
    at once, one epoch short. A save after the last batch is a state it resumes correctly (a new
    epoch starts). Runs before the loops are restored; returns whether it changed anything.
    This reads Lightning's loop-progress layout in the checkpoint, which has no public API:
    tests/test_training.py (``test_resume_from_last_is_exact[max_steps]``) fails if it changes.
    """
    fit = checkpoint.get("loops", {}).get("fit_loop")
    if not fit:
        return False
    epochs, batches = fit["epoch_progress"], fit["epoch_loop.batch_progress"]
    ended = epochs["total"]
    at_epoch_end = (ended["ready"] == ended["started"] == ended["processed"] == ended["completed"] + 1
                    and batches["is_last_batch"]
                    and batches["total"]["completed"] == batches["total"]["processed"])
    if not at_epoch_end:
        return False
    for scope in ("total", "current"):
        epochs[scope]["processed"] -= 1
        batches[scope]["completed"] -= 1
    fit["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1  # re-added when the batch "ends" again
    return True
