"""Inference latency and throughput (eager fp32 NCHW vs unetkit's default path), peak memory, and how
time per image grows with image size.

    python benchmarks/bench_infer.py [--device cpu|cuda] [--widths 64,128,256,512]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import header, peak_rss_mb, run_isolated, timeit, write_section  # noqa: E402


def single(args: dict) -> dict:
    from unetkit import UNet
    from unetkit.api import InferenceSpec, predict_logits, setup

    torch.manual_seed(0)
    size, batch, widths, mode = args["size"], args["batch"], tuple(args["widths"]), args["mode"]
    device = torch.device(args["device"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model = UNet(widths=widths).to(device).eval()
    images = torch.rand(batch, 3, size, size)
    if mode == "reference":
        x = images.to(device)

        def run():
            with torch.no_grad():
                return model(x)

        label = "fp32 NCHW eager"
    else:
        rt = setup(args["device"], "auto", channels_last=True)
        model = model.to(memory_format=torch.channels_last)
        spec = InferenceSpec((0.5,) * 3, (0.25,) * 3, "crop", (size, size), True, tile=4096)

        def run():
            return predict_logits(model, images, spec, rt)

        label = f"{rt.precision} + channels_last"
    sec = timeit(run, device, warmup=1, repeat=args["repeat"])
    mem = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()
    return {"seconds": sec, "images_per_s": batch / sec, "label": label, "peak_mb": mem}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--single")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--widths", default="64,128,256,512")
    cpu = not torch.cuda.is_available()
    # CPU defaults finish in minutes without bf16 hardware (the seed net takes ~4 s per 512px image there).
    p.add_argument("--repeat", type=int, default=2 if cpu else 3)
    p.add_argument("--sizes", default="512" if cpu else "512,1024", help="latency/throughput sizes")
    p.add_argument("--section", default="")
    a = p.parse_args()
    if a.single:
        print(json.dumps(single(json.loads(a.single))))
        return
    widths = [int(w) for w in a.widths.split(",")]
    big = 8 if a.device == "cuda" else 2
    sizes = [int(s) for s in a.sizes.split(",")]
    base = {"widths": widths, "device": a.device, "repeat": a.repeat}
    rows = []
    for size in sizes:
        print(f"measuring {size}px: latency (batch 1), throughput (batch {big}); reference, unetkit ...", flush=True)
        lat = {m: run_isolated(__file__, {**base, "size": size, "batch": 1, "mode": m}) for m in ("reference", "ours")}
        thr = {
            m: run_isolated(__file__, {**base, "size": size, "batch": big, "mode": m}) for m in ("reference", "ours")
        }
        for m in ("reference", "ours"):
            row = (
                f"| {size} | {lat[m]['label']} | {lat[m]['seconds'] * 1000:.0f} | {thr[m]['images_per_s']:.2f} | "
                f"{thr[m]['images_per_s'] / thr['reference']['images_per_s']:.2f}x | "
                f"{max(lat[m]['peak_mb'], thr[m]['peak_mb']):.0f} |"
            )
            print(row, flush=True)
            rows.append(row)
    growth = []
    for size in [s for s in (128, 256, 512, 1024) if s <= max(sizes)]:
        r = run_isolated(__file__, {**base, "size": size, "batch": 1, "mode": "ours"})
        growth.append(f"| {size} | {r['seconds'] * 1000:.1f} | {r['seconds'] * 1000 / (size / 128) ** 2:.1f} |")
        print(growth[-1], flush=True)
    command = "python benchmarks/bench_infer.py " + " ".join(sys.argv[1:])
    md = [
        f"## Inference ({a.device}{' ' + a.section if a.section else ''})",
        "",
        header(command),
        f"U-Net widths {widths}, one logit. Latency: batch 1, median of {a.repeat}. Throughput: batch {big}. "
        "Memory: peak of the process (CPU RSS) or peak GPU memory allocated.",
        "",
        "| px | path | latency ms | throughput img/s | vs reference | peak MiB |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Cost growth (default path, batch 1): time per image and per 128x128 tile of area.",
        "",
        "| px | ms / image | ms per 128^2 of area |",
        "|---|---|---|",
        *growth,
    ]
    write_section(f"infer-{a.device}{a.section}", "\n".join(md))


if __name__ == "__main__":
    main()
