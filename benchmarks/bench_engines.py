"""Inference engines against torch fp32 eager (what milesial's predict does), measured in one run:
latency (batch 1) and throughput (batch 2) for the seed and default networks at 512^2 and 1024^2,
and how often each engine's mask agrees with the reference's. Random weights (BatchNorm statistics
included) and random images: speed and numerics, not quality (the int8 engines' accuracy on real
data is what their gate measures at export: see the int8 section). The int8 graphs are calibrated
here on 4 random images of the measured size. One RESULTS section per class of CPU.

    python benchmarks/bench_engines.py [--sizes 512,1024] [--repeat 2]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_class, header, write_section  # noqa: E402

NETS = {"seed (64-512)": (64, 128, 256, 512), "default (32-256)": (32, 64, 128, 256)}


def build(widths):
    from unetkit import ModelMeta, UNet
    from unetkit.api import MaskSpec

    torch.manual_seed(0)
    model = UNet(3, 1, widths).train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))  # non-trivial BatchNorm statistics
    model.eval()
    meta = ModelMeta(
        model.config,
        ("background", "foreground"),
        MaskSpec("binary", 2),
        (0.5,) * 3,
        (0.25,) * 3,
        "crop",
        (512, 512),
        3,
    )
    return model, meta


def engines(model, meta, folder: Path, int8: int = 0) -> dict:
    """name -> callable; with `int8` (a size), also the int8 graph calibrated at that size."""
    from unetkit.api import (
        OnnxRuntimeEngine,
        OpenVinoEngine,
        export_onnx,
        installed_engines,
        quantize_int8,
        run_model,
        setup,
    )

    threads = torch.get_num_threads()
    onnx = export_onnx(model, meta, folder / "raw.onnx", variant="raw")
    out = {"torch fp32 eager (reference)": lambda x: model(x)}
    rt = setup("cpu", "auto", channels_last=True)
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    out[f"torch {rt.precision} channels_last (unetkit)"] = lambda x: run_model(fast, x, rt)
    if "onnxruntime" in installed_engines():
        ort = OnnxRuntimeEngine(onnx, threads)
        out["onnxruntime fp32"] = ort
    if "openvino" in installed_engines():
        ov = OpenVinoEngine(onnx, threads)
        out[f"openvino {ov.precision}"] = ov
    if int8 and "onnxruntime" in installed_engines():
        g = torch.Generator().manual_seed(1)
        calibration = [torch.randn(1, 3, int8, int8, generator=g).numpy() for _ in range(4)]
        q = quantize_int8(onnx, folder / "raw.int8.onnx", calibration)
        out["onnxruntime int8"] = OnnxRuntimeEngine(q, threads)
        if "openvino" in installed_engines():
            out["openvino int8"] = OpenVinoEngine(q, threads)
    return out


def timed(fn, x, repeat: int) -> float:
    with torch.no_grad():
        fn(x)  # warm-up
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="512,1024")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--no-int8", action="store_true", help="leave the int8 engines out")
    a = p.parse_args()
    rows = []
    for net, widths in NETS.items():
        model, meta = build(widths)
        for size in (int(s) for s in a.sizes.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                runners = engines(model, meta, Path(tmp), 0 if a.no_int8 else size)
                g = torch.Generator().manual_seed(size)
                one, two = torch.randn(1, 3, size, size, generator=g), torch.randn(2, 3, size, size, generator=g)
                with torch.no_grad():
                    ref_mask = model(one) > 0
                ref = None
                for name, fn in runners.items():
                    print(f"measuring {net} {size}px {name} ...", flush=True)
                    lat = timed(fn, one, a.repeat)
                    thr = 2 / timed(fn, two, a.repeat)
                    with torch.no_grad():
                        agree = float(((fn(one) > 0) == ref_mask).float().mean())
                    ref = ref or (lat, thr)
                    row = (
                        f"| {net} | {size} | {name} | {lat * 1000:.0f} | {ref[0] / lat:.2f}x | {thr:.2f} | "
                        f"{thr / ref[1]:.2f}x | {agree:.5f} |"
                    )
                    print(row, flush=True)
                    rows.append(row)
    command = "python benchmarks/bench_engines.py " + " ".join(sys.argv[1:])
    md = [
        f"## Inference engines (cpu, {cpu_class()})",
        "",
        header(command),
        f"One logit, random weights and images; latency = batch 1, throughput = batch 2, median of {a.repeat} after "
        "a warm-up; speed-ups against torch fp32 eager NCHW measured in the same run; agreement = share of mask "
        "pixels (logit > 0) equal to the reference's. ONNX engines run the raw graph of `unetkit export` (BatchNorm "
        "folded); OpenVINO uses bf16 inference precision where the CPU has bf16. int8: the same graph quantized "
        "(onnxruntime's QDQ quantizer, per-channel int8 weights, uint8 activations; 7-bit weights where the CPU lacks "
        "VNNI, as the engines build them), run by each runtime.",
        "",
        "| network | px | engine | latency ms | vs eager | img/s | vs eager | mask agreement |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    write_section(f"engines-cpu-{cpu_class()}", "\n".join(md))


if __name__ == "__main__":
    main()
