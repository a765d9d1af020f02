"""The ``calcidet`` command.

    calcidet synth    --out DIR --n N --seed S            # synthetic films with calcinosis (COCO)
    calcidet fit      --config configs/demo.yaml          # train (LightningCLI)
    calcidet validate --config configs/demo.yaml --ckpt_path CKPT
    calcidet test     --config configs/demo.yaml --ckpt_path CKPT
    calcidet detect   INPUT... --checkpoint CKPT --output DIR
    calcidet export   CKPT --format onnx --output model.onnx   # the network for ONNX Runtime
    calcidet evaluate --gt annotations.json --pred DIR/detections.csv --out REPORT_DIR
    calcidet mine     --gt annotations.json --pred DIR/detections.csv --out mined.json  # hard negatives
    calcidet report   DIR [--gt annotations.json] [--out report.html]  # HTML page to review a detect run
    calcidet export-images INPUT... --output DIR [--bits 8|16]  # PNGs + COCO skeleton for labelling
    calcidet convert  --from yolo|voc|cvat SRC --images DIR --output annotations.json
    calcidet split    annotations.json --out DIR [--fractions 0.7 0.15 0.15]  # by patient: train/val/test.json
    calcidet --version

fit/validate/test are LightningCLI subcommands: configs layer with repeated ``--config`` (last wins)
and any value can be overridden on the command line (``--trainer.max_epochs 3``).

Every subcommand takes ``-q``/``--quiet`` (warnings only) and ``-v``/``--verbose`` (debug lines), anywhere
on the line. Logs go to stderr, from rank 0 only under DDP; results go to stdout.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations otherwise calls the network

from pytorch_lightning.callbacks import ModelCheckpoint  # noqa: E402
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI  # noqa: E402
from pytorch_lightning.utilities import rank_zero_warn  # noqa: E402

from calcidet.data.datamodule import CalcinosisDataModule  # noqa: E402
from calcidet.model.module import CalcinosisDetector  # noqa: E402
from calcidet.train.allocator import keep_freed_memory  # noqa: E402
from calcidet.train.callbacks import CheckpointOnSigterm, DataPosition, LastCheckpoint  # noqa: E402
from calcidet.train.logs import setup_logging  # noqa: E402

TOOLS = ("synth", "detect", "evaluate", "mine", "export-images", "convert", "split", "export", "report")
VERBOSITY = {"-v": 1, "--verbose": 1, "-q": -1, "--quiet": -1}


def _default_loggers() -> list[dict]:
    loggers = [{"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "runs"}}]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return loggers
    loggers.append({"class_path": "pytorch_lightning.loggers.TensorBoardLogger", "init_args": {"save_dir": "runs"}})
    return loggers


def _class_names_of_data(*jsons: str | list[str] | None) -> list[str] | None:
    """Class names from the first COCO file given (train, else val, else test); None: the model's default."""
    from calcidet.data.coco import read_class_names

    path = next((j for j in jsons if j), None)
    if isinstance(path, list):
        path = path[0]
    return read_class_names(path) if path else None


class CalcidetCLI(LightningCLI):
    """LightningCLI with calcidet's checkpointing and the data/model settings tied together."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # No ``predict``: Trainer.predict here would write nothing. ``calcidet detect`` is the one way
        # to run a checkpoint over films, so --help lists fit, validate and test only.
        return {name: skip for name, skip in LightningCLI.subcommands().items() if name != "predict"}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The best checkpoint by a validation metric...
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/froc_cpm",
            "checkpoint.mode": "max",
            "checkpoint.save_last": False,
            "checkpoint.filename": "best-{epoch:03d}-{step:06d}",
            "checkpoint.auto_insert_metric_name": False,
        })
        # ...and last.ckpt, rewritten after every validation (and every_n_train_steps) whatever the metric did:
        # ModelCheckpoint's own save_last only follows saves of the monitored top-k, so it can be stale.
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.set_defaults({
            "last_checkpoint.filename": "last",
            "last_checkpoint.monitor": None,
            "last_checkpoint.save_top_k": 1,
            "last_checkpoint.enable_version_counter": False,
        })
        parser.link_arguments("checkpoint.dirpath", "last_checkpoint.dirpath")
        parser.add_lightning_class_args(CheckpointOnSigterm, "sigterm_checkpoint")
        parser.add_lightning_class_args(DataPosition, "data_position")  # exact mid-epoch resume
        # One image size for the data pipeline and the network's internal resize.
        parser.link_arguments("data.image_size", "model.image_size")
        parser.link_arguments("data.crop_size", "model.crop_size")  # training crops pass through unresized
        # The head's classes are the training COCO's categories (any ids, any names), not a setting.
        parser.link_arguments(("data.train_json", "data.val_json", "data.test_json"), "model.class_names",
                              compute_fn=_class_names_of_data)


    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.config.get("subcommand") or "", self.config)
        trainer = config.get("trainer", {})
        if trainer.get("sync_batchnorm") and str(trainer.get("accelerator")) == "cpu":
            # torch's DDP refuses SyncBatchNorm on CPU processes; the cluster configs turn it on for GPUs.
            rank_zero_warn("trainer.sync_batchnorm needs GPUs: off for this CPU run (each process keeps "
                           "its own BatchNorm statistics)")
            trainer["sync_batchnorm"] = False


def cli_main(args: list[str] | None = None, run: bool = True) -> CalcidetCLI:
    """Run LightningCLI (``fit``/``validate``/``test``) on ``args`` (default: sys.argv)."""
    return CalcidetCLI(
        CalcinosisDetector,
        CalcinosisDataModule,
        args=args,
        run=run,
        seed_everything_default=0,
        trainer_defaults={"logger": _default_loggers()},
        save_config_kwargs={"overwrite": True},
    )


def take_verbosity(argv: list[str]) -> tuple[int, list[str]]:
    """Remove ``-v``/``-q`` (and long forms) from ``argv``, wherever they are before a ``--``.

    Taken here, once, so that every subcommand has them and neither the argparse tools nor
    LightningCLI need to know about them.

    Returns:
        The verbosity (-1 quiet, 0 default, 1 verbose; the last flag wins) and the remaining arguments.
    """
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in VERBOSITY]
    rest = [a for a in argv[:end] if a not in VERBOSITY] + argv[end:]
    return (VERBOSITY[flags[-1]] if flags else 0), rest


def main(argv: list[str] | None = None) -> int:
    try:
        code = _run(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
        return code
    except BrokenPipeError:
        # `calcidet evaluate ... | head`: the reader left early. Files already written are whole;
        # stdout goes to /dev/null so the exit flush does not raise again and print a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE: what a shell reports for a command whose reader went away


def _run(argv: list[str] | None) -> int:
    verbosity, argv = take_verbosity(list(sys.argv[1:] if argv is None else argv))
    setup_logging(verbosity)
    keep_freed_memory()  # CPU training and detection: reuse freed activations instead of faulting them in
    if argv and argv[0] in TOOLS:
        import importlib

        module = argv[0].replace("-", "_")  # export-images -> calcidet.train.export_images_cmd
        return int(importlib.import_module(f"calcidet.train.{module}_cmd").main(argv[1:]) or 0)
    if argv[:1] == ["predict"]:  # LightningCLI's predict wrote nothing: one command detects
        print("calcidet predict is not a command: use `calcidet detect INPUT... --checkpoint CKPT --output DIR` "
              "(same predictor, writes the result files), or calcidet.model.inference.CalcinosisPredictor from Python",
              file=sys.stderr)
        return 2
    if argv[:1] == ["--version"]:
        from importlib.metadata import version

        print(f"calcidet {version('calcidet')}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        if not argv:
            return 2
    # None: LightningCLI reads sys.argv itself. DDP relaunches ranks from sys.argv, which still holds
    # -v/-q, so every rank sets its own level the same way.
    cli_main(None if argv == sys.argv[1:] else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
