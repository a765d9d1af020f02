"""The cluster configuration (configs/gpu.yaml + configs/cluster.yaml) trained on 2 CPU processes.

Only what a CPU cannot run is changed: gloo instead of NCCL, fp32 instead of bf16, the small
``fcos_tiny`` at 128 px instead of Faster R-CNN at 1024 px, no SyncBatchNorm (torch's DDP refuses it
on CPU; calcidet turns it off with a warning). EMA, the DDP strategy block (no unused-parameter search,
gradients as bucket views), the distributed sampler and the step cadence of last.ckpt are the shipped ones.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from calcidet.model.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

# Lightning's DDP launcher re-runs this script once per extra rank, so it must be a file of its own.
FIT_SCRIPT = '''
import sys
import pytorch_lightning as pl
import torch
from calcidet.train.cli import cli_main


class Probe(pl.Callback):
    """Stops after epoch ``stop`` (a preemption) and saves each rank's final weights for comparison."""

    def __init__(self, out, stop):
        self.out, self.stop = out, stop

    def on_train_epoch_end(self, trainer, pl_module):
        if self.stop >= 0 and trainer.current_epoch == self.stop:
            trainer.should_stop = True

    def on_fit_end(self, trainer, pl_module):
        state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, f"{self.out}/rank{trainer.global_rank}.pt")


out, stop, ckpt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cli = cli_main(sys.argv[4:], run=False)
cli.trainer.callbacks.append(Probe(out, stop))
cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=ckpt or None)
'''


def _cluster_args(tiny_synth, root: Path) -> list[str]:
    return [
        "--config", str(REPO / "configs" / "gpu.yaml"), "--config", str(REPO / "configs" / "cluster.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.num_nodes", "1",
        "--trainer.precision", "32-true", "--trainer.benchmark", "false",
        "--model.arch", "fcos_tiny", "--model.weights", "null", "--model.optimizer", "adamw",
        "--model.lr", "0.003", "--model.warmup_steps", "2", "--model.ema_decay", "0.9",
        "--data.train_json", str(tiny_synth["train"]), "--data.val_json", str(tiny_synth["val"]),
        "--data.image_size", "128", "--data.batch_size", "4", "--data.num_workers", "0", "--data.augment", "none",
        "--trainer.max_epochs", "2", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root), "--checkpoint.dirpath", str(root / "ckpt"),
        "--last_checkpoint.every_n_train_steps", "1",
    ]


def _fit(tiny_synth, root: Path, stop: int = -1, ckpt: str = "") -> dict[str, torch.Tensor]:
    root.mkdir(parents=True, exist_ok=True)
    script = root / "fit.py"
    script.write_text(FIT_SCRIPT)
    cmd = [sys.executable, str(script), str(root), str(stop), ckpt, *_cluster_args(tiny_synth, root)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "sync_batchnorm needs GPUs" in done.stderr
    ranks = [torch.load(root / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for k in ranks[0]:  # DDP keeps the weights, and so the EMA, identical on every rank
        assert torch.equal(ranks[0][k], ranks[1][k]), k
    return ranks[0]


def test_cluster_config_trains_with_ema_under_ddp_and_resumes_exactly(tiny_synth, tmp_path) -> None:
    straight = _fit(tiny_synth, tmp_path / "straight")
    ema = {k for k in straight if k.startswith("ema.module.")}
    assert ema, "EMA is on in gpu.yaml: its weights must be in the module"
    # The average differs from the trained weights (it lags them), so it is really being kept.
    assert any(not torch.equal(straight[k], straight["model." + k[len("ema.module."):]]) for k in ema)
    ckpt = load_checkpoint(tmp_path / "straight" / "ckpt" / "last.ckpt")
    assert ckpt["global_step"] == 4  # 16 films, batch 4 per rank, 2 ranks, 2 epochs
    assert ema <= set(ckpt["state_dict"])
    assert ckpt["calcidet"]["operating_threshold"] is not None

    # Preempted after the first epoch, then resumed from last.ckpt: the same weights as straight through.
    _fit(tiny_synth, tmp_path / "cut", stop=0)
    last = tmp_path / "cut" / "ckpt" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == 2
    resumed = _fit(tiny_synth, tmp_path / "cut", ckpt=str(last))
    assert resumed.keys() == straight.keys()
    for k in straight:
        assert torch.allclose(straight[k].float(), resumed[k].float(), atol=1e-5), k
