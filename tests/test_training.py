"""Training through the real entry point (`cli_main`), shrunk: tiny films, 128 px, a few steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from calcidet.model.checkpoint import load_checkpoint
from calcidet.train.cli import cli_main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def test_fit_validate_test_through_cli(tiny_synth, fit_args, tmp_path) -> None:
    cli = cli_main(["fit", *fit_args(tiny_synth, tmp_path, "--trainer.max_epochs", "1")])
    assert cli.trainer.global_step == 4  # 16 images / batch 4
    metrics = cli.trainer.callback_metrics
    for key in ("val/map_50", "val/froc_cpm", "val/auroc", "train/loss"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    last = tmp_path / "ckpt" / "last.ckpt"
    ckpt = load_checkpoint(last)  # loads with weights_only=True
    assert ckpt["calcidet"]["operating_threshold"] is not None
    assert ckpt["calcidet"]["image_size"] == 128
    test = cli_main(["test", *fit_args(tiny_synth, tmp_path), "--ckpt_path", str(last)])
    assert "test/map_50" in test.trainer.callback_metrics


class _StopAfterFirstEpoch(pl.Callback):
    """Ends training after epoch 0, as a preemption would (the schedule still spans 2 epochs)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.should_stop = True


@pytest.mark.parametrize("max_steps", [-1, 100], ids=["epochs", "max_steps"])
def test_resume_from_last_is_exact(tiny_synth, fit_args, tmp_path, max_steps: int) -> None:
    """2 epochs straight == stopped after epoch 1, then resumed from last.ckpt for the second.

    Also with ``max_steps`` set (beyond the 8 steps, as configs/demo.yaml sets it), where Lightning
    alone would count the ended epoch twice and stop the resumed run at once.
    """
    common = ("--trainer.max_epochs", "2", "--trainer.max_steps", str(max_steps), "--model.ema_decay", "0.9",
              "--data.augment", "none", "--checkpoint.save_top_k", "0")
    straight = cli_main(["fit", *fit_args(tiny_synth, tmp_path / "a", *common)])
    cut = cli_main(fit_args(tiny_synth, tmp_path / "b", *common), run=False)
    cut.trainer.callbacks.append(_StopAfterFirstEpoch())
    cut.trainer.fit(cut.model, cut.datamodule)
    assert cut.trainer.global_step == 4
    resumed = cli_main(["fit", *fit_args(tiny_synth, tmp_path / "b", *common),
                        "--ckpt_path", str(tmp_path / "b" / "ckpt" / "last.ckpt")])
    assert resumed.trainer.global_step == straight.trainer.global_step == 8
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
    opt_a = straight.trainer.optimizers[0].state_dict()["state"]
    opt_b = resumed.trainer.optimizers[0].state_dict()["state"]
    assert torch.allclose(opt_a[0]["exp_avg"], opt_b[0]["exp_avg"], atol=1e-6)
    assert straight.trainer.lr_scheduler_configs[0].scheduler.last_epoch == 8
    assert resumed.trainer.lr_scheduler_configs[0].scheduler.last_epoch == 8


class _CrashMidEpoch(pl.Callback):
    """Saves a checkpoint after step ``step`` (as SIGTERM or ``every_n_train_steps`` would), then dies."""

    def __init__(self, step: int, path: Path) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)
            raise RuntimeError("node lost")


def test_resume_mid_epoch_trains_the_rest_of_that_epoch(tiny_synth, fit_args, tmp_path) -> None:
    """Cut at step 6 of 8 (inside epoch 2): the resumed run trains batches 3-4 of epoch 2, not 1-2 again."""
    common = ("--trainer.max_epochs", "2", "--data.augment", "none", "--checkpoint.save_top_k", "0")
    straight = cli_main(["fit", *fit_args(tiny_synth, tmp_path / "a", *common)])
    cut = cli_main(fit_args(tiny_synth, tmp_path / "b", *common), run=False)
    mid = tmp_path / "b" / "mid.ckpt"
    cut.trainer.callbacks.append(_CrashMidEpoch(6, mid))
    with pytest.raises(RuntimeError, match="node lost"):
        cut.trainer.fit(cut.model, cut.datamodule)
    assert load_checkpoint(mid)["calcidet_data_position"] == {"epoch": 1, "batches": 2}
    resumed = cli_main(["fit", *fit_args(tiny_synth, tmp_path / "b", *common), "--ckpt_path", str(mid)])
    assert resumed.trainer.global_step == straight.trainer.global_step == 8
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k


def test_init_from_and_freeze_backbone(tiny_synth, fit_args, tmp_path) -> None:
    first = cli_main(["fit", *fit_args(tiny_synth, tmp_path / "pre", "--trainer.max_steps", "2")])
    source = tmp_path / "pre" / "ckpt" / "last.ckpt"
    tuned = cli_main(["fit", *fit_args(tiny_synth, tmp_path / "ft", "--trainer.max_steps", "2"),
                      "--model.init_from", str(source), "--model.freeze_backbone", "true"])
    before = first.model.model.net.backbone.state_dict()
    after = tuned.model.model.net.backbone.state_dict()
    for k in before:  # frozen: weights *and* BatchNorm statistics untouched by fine-tuning
        assert torch.equal(before[k], after[k]), k
    head_a = first.model.model.net.head.state_dict()
    head_b = tuned.model.model.net.head.state_dict()
    assert any(not torch.equal(head_a[k], head_b[k]) for k in head_a)  # the head did train


def test_batch_of_only_negative_images_trains(tmp_path) -> None:
    from calcidet.model.module import CalcinosisDetector

    module = CalcinosisDetector(image_size=128)
    images = [torch.rand(1, 128, 128) for _ in range(3)]
    targets = [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64), "image_id": i}
               for i in range(3)]
    loss = module.training_step((images, targets), 0)
    assert torch.isfinite(loss) and loss > 0  # classification still learns "nothing here"
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in module.parameters())


def test_ddp_two_cpu_processes(tiny_synth, fit_args, tmp_path) -> None:
    """`--trainer.strategy ddp --trainer.devices 2` on CPU (gloo) trains in two processes."""
    cmd = [sys.executable, "-m", "calcidet.train.cli", "fit", *fit_args(tiny_synth, tmp_path, "--trainer.max_steps", "2"),
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert "world_size: 2" in done.stderr or "GLOBAL_RANK: 1" in done.stderr + done.stdout


def test_last_checkpoint_with_a_step_cadence_still_ends_at_the_end(tiny_synth, fit_args, tmp_path) -> None:
    """every_n_train_steps=3 over 2 epochs of 4 steps: saves at 3 and 6, and after each validation (4, 8)."""
    cli = cli_main(["fit", *fit_args(tiny_synth, tmp_path, "--trainer.max_epochs", "2", "--checkpoint.save_top_k", "0",
                                  "--last_checkpoint.every_n_train_steps", "3")])
    ckpt = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert ckpt["global_step"] == cli.trainer.global_step == 8
    assert ckpt["calcidet"]["operating_threshold"] == pytest.approx(cli.model.operating_threshold)


def test_crop_training_runs_the_network_at_the_crop_size(tiny_synth, fit_args, tmp_path) -> None:
    from calcidet.model.module import CalcinosisDetector

    module = CalcinosisDetector(arch="fcos_tiny", image_size=128, crop_size=64)
    seen: list[tuple[int, int]] = []
    module.model.net.backbone.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    images = [torch.rand(1, 64, 64) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 30.0, 26.0]]), "labels": torch.tensor([1]), "image_id": i}
               for i in range(2)]
    assert torch.isfinite(module.training_step((images, targets), 0))
    assert seen == [(64, 64)]  # a crop is not blown up to the film size
    module.eval()
    with torch.no_grad():
        module([torch.rand(1, 96, 128)])
    assert seen[-1] == (96, 128)  # whole films still run at image_size (the resize is restored)

    # through the CLI: data.crop_size reaches the model and the checkpoint keeps the film size for detect
    cli = cli_main(["fit", *fit_args(tiny_synth, tmp_path, "--trainer.max_steps", "2", "--data.crop_size", "64")])
    assert cli.model.hparams.crop_size == 64
    ckpt = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert ckpt["calcidet"]["image_size"] == 128 and ckpt["hyper_parameters"]["crop_size"] == 64


def test_gpu_lite0_config_trains_on_cpu(tiny_synth, tmp_path) -> None:
    """configs/gpu_lite0.yaml as shipped, but on the CPU and shrunk: 256 px films as 128 px crops, 2 steps.

    Its model (pretrained Lite0), precision (bf16-mixed: CPU autocast), crops, schedule and the one
    validation at the last step are the config's own; the checkpoint must carry a threshold.
    """
    cli = cli_main([
        "fit", "--config", str(REPO / "configs" / "gpu_lite0.yaml"),
        "--data.train_json", str(tiny_synth["train"]), "--data.val_json", str(tiny_synth["val"]),
        "--trainer.accelerator", "cpu", "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
        "--data.image_size", "256", "--data.crop_size", "128", "--data.batch_size", "4", "--data.num_workers", "0",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--checkpoint.dirpath", str(tmp_path / "ckpt"),
    ])
    assert cli.trainer.global_step == 2
    assert cli.trainer.precision == "bf16-mixed"
    ckpt = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert ckpt["hyper_parameters"]["arch"] == "fcos_efficientnet_lite0"
    assert ckpt["calcidet"]["image_size"] == 256 and ckpt["calcidet"]["operating_threshold"] is not None


def test_cpu_long_config_layers_over_the_demo(tiny_synth) -> None:
    """configs/cpu_long.yaml over demo.yaml: the demo's crops on Lite2, 3600 steps, one validation at the end.

    The one validation must fall on the last step (it sets the operating threshold), and the time
    limit must keep the demo's fitted schedule so a slower CPU still ends annealed. The films are the
    tiny set's: a clean clone has no demo_out/, and the class names are read from the data.
    """
    cli = cli_main(["--config", str(REPO / "configs" / "demo.yaml"), "--config", str(REPO / "configs" / "cpu_long.yaml"),
                    "--data.train_json", str(tiny_synth["train"]), "--data.val_json", str(tiny_synth["val"]),
                    "--data.test_json", str(tiny_synth["val"])], run=False)
    trainer, data = cli.config["trainer"], cli.config["data"]
    assert trainer["max_steps"] == trainer["val_check_interval"] == 3600
    assert cli.trainer.max_steps == 3600 and trainer["max_time"] == "00:01:30:00"
    assert cli.model.hparams.fit_schedule_to_max_time and cli.model.hparams.warmup_steps == 100
    assert cli.model.hparams.arch == "fcos_efficientnet_lite2" and cli.model.hparams.focal_gamma == 1.5
    assert cli.model.hparams.weights_backbone == "DEFAULT"  # ImageNet Lite2, from the `lite` extra
    assert (data["image_size"], data["crop_size"], data["batch_size"]) == (768, 384, 8)
    assert cli.config["checkpoint"]["dirpath"] == "runs/cpu_long/checkpoints"


@pytest.mark.parametrize("fit_to_time", [True, False], ids=["fitted", "cut_off"])
def test_schedule_fitted_to_max_time_ends_annealed(tiny_synth, fit_args, tmp_path, fit_to_time: bool) -> None:
    """An 8-second budget for a 100,000-step cosine: fitted, the run ends at the schedule's low end.

    The other case is the contrast that makes the test mean something: left alone, ``max_time`` cuts
    the same schedule off near its start, at almost the full learning rate.
    """
    cli = cli_main(["fit", *fit_args(
        {"train": tiny_synth["train"], "val": tiny_synth["val"]}, tmp_path, "--trainer.max_steps", "100000", "--trainer.max_epochs", "-1",
        "--trainer.max_time", "00:00:00:08", "--trainer.limit_val_batches", "0", "--model.warmup_steps", "5",
        "--model.fit_schedule_to_max_time", str(fit_to_time).lower(), "--checkpoint.save_top_k", "0",
        "--data.augment", "none", "--model.arch", "fcos_tiny", "--model.weights_backbone", "null",
        "--data.crop_size", "64")])  # one batch shape: a steady pace from the first steps
    steps, lr = cli.trainer.global_step, cli.trainer.optimizers[0].param_groups[0]["lr"]
    assert steps > 25, f"only {steps} steps in 8 s: too few to measure the pace"
    if fit_to_time:
        assert cli.model.schedule_steps < 1000  # planned from the measured pace, not the configured 100,000
        assert lr < 0.2 * cli.model.hparams.lr, (steps, cli.model.schedule_steps, lr)
        saved = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")["calcidet"]["schedule_steps"]
        assert saved == cli.model.schedule_steps  # a resumed run continues the same plan
    else:
        assert cli.model.schedule_steps == 100000
        assert lr > 0.9 * cli.model.hparams.lr
