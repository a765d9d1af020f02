"""``calcidet export``: write a checkpoint's inference network as ONNX for deployment.

    calcidet export runs/demo/checkpoints/last.ckpt --format onnx --output model.onnx
    calcidet detect films/ --checkpoint runs/demo/checkpoints/last.ckpt --output results/ \\
        --backend onnxruntime --onnx model.onnx

The weights are the ones ``calcidet detect`` uses (the EMA copy when the run kept one). The graph
ends at the raw head outputs; decoding and NMS run in Python (see ``model.onnx_export``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calcidet.model.checkpoint import CheckpointError
from calcidet.model.inference import CalcinosisPredictor


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="calcidet export", description=__doc__.split("\n")[0].replace("``", ""))
    p.add_argument("checkpoint", help="calcidet checkpoint (.ckpt)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="onnx (the only format so far)")
    p.add_argument("--output", required=True, help="file to write, e.g. model.onnx")
    p.add_argument("--image-size", type=int, default=None,
                   help="longest side of the example input (default: the size the network was trained at)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run ``calcidet export``; returns 0, or 2 for an unusable checkpoint or arch."""
    args = parse_args(argv)
    try:
        predictor = CalcinosisPredictor.from_checkpoint(args.checkpoint, "cpu", image_size=args.image_size)
    except (CheckpointError, KeyError, RuntimeError) as exc:
        print(f"calcidet export: cannot use checkpoint {args.checkpoint}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    try:
        from calcidet.model.onnx_export import export_onnx
    except ImportError as exc:
        print(f"calcidet export: {exc}; install the extra: pip install 'calcidet[export]'", file=sys.stderr)
        return 2
    info = predictor.checkpoint
    metadata = {"arch": info["arch"], "class_names": predictor.class_names, "threshold": predictor.threshold,
                "checkpoint_sha256": info["sha256"]}
    try:
        path = export_onnx(predictor.model, args.output, predictor.image_size, metadata)
    except ValueError as exc:  # an arch the export does not cover
        print(f"calcidet export: {exc}", file=sys.stderr)
        return 2
    print(f"calcidet export: wrote {path} ({Path(path).stat().st_size / 1e6:.1f} MB; {json.dumps(metadata)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
