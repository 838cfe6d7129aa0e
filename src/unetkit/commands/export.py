"""`unetkit export CKPT --format onnx|safetensors|triton --out PATH`: write, verify against PyTorch, or fail."""

from __future__ import annotations

import argparse
from pathlib import Path

from unetkit.deploy.engines import export_int8

HELP = "export a checkpoint to ONNX, safetensors or a Triton model repository, verified against PyTorch"


def add_parser(sub) -> None:
    p = sub.add_parser("export", help=HELP, description=HELP)
    p.add_argument("checkpoint", help="checkpoint file (.pt) written by unetkit train, or builtin:NAME")
    p.add_argument(
        "--format",
        required=True,
        choices=["onnx", "onnx-int8", "safetensors", "triton"],
        help="what to write; onnx-int8: the raw graph quantized, calibrated on the run's training images and "
        "refused if its validation metric drops by more than 0.005 (report in OUT.json)",
    )
    p.add_argument(
        "--out", required=True, help="output file (.onnx, .safetensors) or, for triton, the repository folder"
    )
    p.add_argument(
        "--variant",
        choices=["e2e", "raw"],
        default="e2e",
        help="onnx: e2e = uint8 image in, class-index mask out; raw = normalised float in, logits out (default: e2e)",
    )
    p.add_argument(
        "--images", nargs="*", help="real images to verify on (default: the run's recorded test images, if present)"
    )

    t = p.add_argument_group("triton (--format triton)")
    t.add_argument("--name", default="unetkit", help="model name in the repository (default: unetkit)")
    t.add_argument("--triton-kind", choices=["cpu", "gpu"], default="cpu", help="instance kind (default: cpu)")
    t.add_argument("--instances", type=int, default=1, help="model instances (default: 1)")
    t.add_argument("--max-batch-size", type=int, default=8, help="largest dynamic batch (default: 8)")
    t.add_argument("--queue-delay-us", type=int, default=2000, help="wait to fill a batch (default: 2000)")


def run(args: argparse.Namespace) -> int:
    # imported here: torch.onnx and the exporters would slow every other command's start-up
    from unetkit.deploy.export import export
    from unetkit.deploy.triton import TritonOptions, write_repository

    images = [Path(p) for p in args.images] if args.images else None
    if args.format == "triton":
        opts = TritonOptions(args.name, args.triton_kind, args.instances, args.max_batch_size, args.queue_delay_us)
        print(f"exporting {args.checkpoint} -> Triton model repository {args.out}")
        write_repository(args.checkpoint, args.out, opts, images)
        return 0
    if args.format == "onnx-int8":
        print(f"exporting {args.checkpoint} -> {args.out} (int8 raw graph)")
        export_int8(args.checkpoint, args.out)
        return 0
    kind = f"{args.format}, {args.variant}" if args.format == "onnx" else args.format
    print(f"exporting {args.checkpoint} -> {args.out} ({kind})")
    export(args.checkpoint, args.format, args.out, args.variant, images)
    return 0
