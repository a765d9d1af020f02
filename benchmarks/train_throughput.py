"""Training throughput of the demo and the two GPU configs, and the data loader's throughput per worker.

    .venv/bin/python benchmarks/train_throughput.py [--steps 20] [--data DIR/annotations.json]

Prints, for each config: training images/s of the model alone (batches already in memory) and the
loader's images/s per worker at the same resolution and augmentation, so a reader sees whether
loading would starve the model (goal: loader >= 3x what the model consumes). Without --data, a small
synthetic set is generated in a temporary folder first. On a machine without CUDA the
GPU configs are measured on the CPU at batch 2 with few steps, which says little; run it on a GPU
machine. Configs that train on crops (``data.crop_size``) are measured on crops, as they train.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# The module logs from its training step; here it runs without a Trainer, which Lightning warns about.
warnings.filterwarnings("ignore", message=".*self.log.*")

import torch  # noqa: E402
import yaml  # noqa: E402
from pytorch_lightning.utilities import move_data_to_device  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from calcidet.data.coco import load_coco  # noqa: E402
from calcidet.data.dataset import RadiographDataset, detection_collate  # noqa: E402
from calcidet.data.transforms import build_transforms  # noqa: E402
from calcidet.model.module import CalcinosisDetector  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load_config(name: str) -> dict:
    return yaml.safe_load((REPO / "configs" / name).read_text())


def loader_images_per_s(dataset: RadiographDataset, batch_size: int, workers: int, batches: int) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        collate_fn=detection_collate, persistent_workers=False)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        try:
            images, _ = next(it)
        except StopIteration:
            it = iter(loader)
            images, _ = next(it)
        seen += len(images)
    return seen / (time.perf_counter() - start)


def model_images_per_s(module: CalcinosisDetector, batch: tuple, steps: int, device: torch.device,
                       precision: str | None) -> float:
    module.to(device).train()
    opt = torch.optim.AdamW(module.model.parameters(), lr=1e-4)
    images, targets = move_data_to_device(batch, device)  # every tensor in the nested lists and dicts
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def step() -> None:
        with autocast:  # the module's own step: crops run at their own size, as in training
            loss = module.training_step((images, targets), 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, cuDNN autotune)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="COCO annotations.json to read images from (default: synthesise 48)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--loader-batches", type=int, default=20)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        json_path = args.data
        if json_path is None:
            from calcidet.data.synth import synthesize

            synthesize(Path(tmp) / "s", n=48, seed=0)
            json_path = Path(tmp) / "s" / "annotations.json"
        index = load_coco(json_path)
        print(f"device: {torch.cuda.get_device_name() if cuda else 'cpu'}; torch threads {torch.get_num_threads()}; "
              f"{len(index)} images from {json_path}")
        for name in ("demo.yaml", "gpu_lite0.yaml", "gpu.yaml"):
            cfg = load_config(name)
            data, model = cfg["data"], cfg["model"]
            size = data["image_size"]
            batch_size = data["batch_size"] if (cuda or name == "demo.yaml") else 2
            steps = args.steps if (cuda or name == "demo.yaml") else 3
            crop = data.get("crop_size")
            dataset = RadiographDataset(index.images, size, build_transforms(data["augment"], size, crop_size=crop))
            module = CalcinosisDetector(arch=model["arch"], image_size=size, crop_size=crop)  # no weights: speed only
            batch = detection_collate([dataset[i % len(dataset)] for i in range(batch_size)])
            precision = cfg["trainer"].get("precision") if cuda else None
            model_ips = model_images_per_s(module, batch, steps, device, precision)
            per_worker = loader_images_per_s(dataset, batch_size, 1, args.loader_batches)
            workers = data["num_workers"]
            crops = f" as {crop} px crops" if crop else ""
            print(f"\n{name}: {model['arch']} at {size} px{crops}, batch {batch_size}, augment={data['augment']}, "
                  f"precision={precision or '32'}")
            print(f"  model training      {model_ips:8.1f} images/s ({steps} steps)")
            print(f"  loader, 1 worker    {per_worker:8.1f} images/s")
            print(f"  loader, {workers} worker{'s' if workers != 1 else ' '}   ~{per_worker * max(workers, 1):7.1f} images/s (x{workers}, "
                  f"if cores allow) -> {per_worker * max(workers, 1) / model_ips:.1f}x what the model consumes")


if __name__ == "__main__":
    main()
