"""`unetkit export CKPT --format onnx|safetensors --out PATH`: write, verify against PyTorch, or fail."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a checkpoint to ONNX or safetensors, verified against PyTorch"


def add_parser(sub) -> None:
    p = sub.add_parser("export", help=HELP, description=HELP)
    p.add_argument("checkpoint", help="checkpoint file (.pt) written by unetkit train")
    p.add_argument("--format", required=True, choices=["onnx", "safetensors"], help="what to write")
    p.add_argument("--out", required=True, help="output file (.onnx or .safetensors)")
    p.add_argument(
        "--variant",
        choices=["e2e", "raw"],
        default="e2e",
        help="onnx: e2e = uint8 image in, class-index mask out; raw = normalised float in, logits out (default: e2e)",
    )
    p.add_argument(
        "--images", nargs="*", help="real images to verify on (default: the run's recorded test images, if present)"
    )


def run(args: argparse.Namespace) -> int:
    from unetkit.export import export

    images = [Path(p) for p in args.images] if args.images else None
    kind = f"{args.format}, {args.variant}" if args.format == "onnx" else args.format
    print(f"exporting {args.checkpoint} -> {args.out} ({kind})")
    export(args.checkpoint, args.format, args.out, args.variant, images)
    return 0
