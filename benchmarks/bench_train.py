"""Training throughput: unetkit's defaults vs a plain fp32 NCHW eager reference of the same network
and, where the CPU has bf16, vs plain bf16 autocast on NCHW (what milesial/Pytorch-UNet's --amp does).

Prints and records images/s, the speed-up, achieved conv GFLOP/s as a fraction of the bf16 (and
fp32) matmul ceilings measured in the same run, and peak memory. Each measurement runs in its own
process so its peak memory is its own.

    python benchmarks/bench_train.py [--device cpu|cuda] [--steps 3] [--sizes 256,512]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import conv_flops, cpu_class, header, matmul_gflops, peak_rss_mb, run_isolated, timeit, write_section  # noqa: E402

NETWORKS = {  # --networks picks by key; seed and width32 are the default rows
    "seed": ("seed (64-512)", {"widths": (64, 128, 256, 512)}),
    "width32": ("width 32 (32-256)", {"widths": (32, 64, 128, 256)}),
    "width16": ("width 16 (16-128)", {"widths": (16, 32, 64, 128)}),  # what --time-budget picks for short runs
    # ... with GroupNorm, as norm "auto" makes it under 100 training images (ISBI, DRIVE, GrabCut)
    "width16gn": ("width 16 (16-128), GroupNorm", {"widths": (16, 32, 64, 128), "norm": "group"}),
    "width32gn": ("width 32 (32-256), GroupNorm", {"widths": (32, 64, 128, 256), "norm": "group"}),
    "lite0": ("efficientnet-lite0, decoder 16-128", {"widths": (16, 32, 64, 128), "encoder": "efficientnet-lite0"}),
}


def make_step(args: dict):
    """(one training step as a function, its precision in words) for args' mode: reference (fp32 NCHW
    eager), autocast (plain bf16 autocast on NCHW) or ours (unetkit's own step)."""
    from unetkit import ModelConfig
    from unetkit.api import build_network, build_training, load_batch, resolve, setup, train_step, training_runtime

    torch.manual_seed(0)
    size, batch, net, mode = args["size"], args["batch"], args["model"], args["mode"]
    net = {**net, "widths": tuple(net["widths"])}
    device = torch.device(args["device"])
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch * 2, 3, size, size, generator=g).half()
    masks = (torch.rand(batch * 2, size, size, generator=g) > 0.5).to(torch.uint8)
    dataset = list(zip(images, masks, strict=True))
    if mode in ("reference", "autocast"):
        model = build_network(ModelConfig(**net)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = images[:batch].float().to(device)
        y = masks[:batch].float().unsqueeze(1).to(device)
        cast = torch.autocast(device.type, torch.bfloat16, enabled=mode == "autocast")

        def step():
            with cast:
                loss = F.binary_cross_entropy_with_logits(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        precision = "fp32 NCHW eager" if mode == "reference" else "bf16 autocast NCHW eager (milesial --amp)"
    else:
        config = resolve(
            overrides={
                "model": {**net, **({"encoder_weights": "none"} if "encoder" in net else {})},
                "data": {"size": (size, size)},
                "batch_size": batch,
                "device": args["device"],
                "compile": args.get("compile", False),
                "channels_last": args.get("channels_last", True),
            }
        )
        rt = setup(config.device, config.precision, config.channels_last)
        if "channels_last" not in args:  # the layout training picks; else the one asked for
            rt = training_runtime(rt, config)
        training = build_training(config, rt, num_classes=2)
        train_model = torch.compile(training.model) if config.compile else training.model
        counter = [0]

        def step():
            counter[0] += 1
            x, t = load_batch(dataset, list(range(batch)), config, rt, [0.5] * 3, [0.25] * 3, counter[0])
            return train_step(train_model, x, t, config, rt, training, counter[0])

        precision = (
            f"{rt.precision}{' + channels_last' if rt.channels_last else ''}{' + compile' if config.compile else ''}"
        )
    return step, precision


def single(args: dict) -> dict:
    from unetkit import ModelConfig
    from unetkit.api import build_network

    device = torch.device(args["device"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step, precision = make_step(args)
    size, batch = args["size"], args["batch"]
    net = {**args["model"], "widths": tuple(args["model"]["widths"])}
    sec = timeit(step, device, warmup=2 if args.get("compile") else 1, repeat=args["steps"])
    flops = 3 * batch * conv_flops(build_network(ModelConfig(**net)), torch.randn(1, 3, size, size))
    mem = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()
    return {
        "images_per_s": batch / sec,
        "seconds_per_step": sec,
        "conv_gflops": flops / sec / 1e9,
        "precision": precision,
        "peak_mb": mem,
    }


def ceilings(device: torch.device) -> tuple[float | None, float]:
    """Matmul GFLOP/s in bf16 (only where the hardware has it: emulated bf16 takes minutes) and fp32."""
    from unetkit.api import cpu_has_fast_bf16

    print("measuring matmul ceilings ...", flush=True)
    bf16 = matmul_gflops(torch.bfloat16, device) if device.type == "cuda" or cpu_has_fast_bf16() else None
    fp32 = matmul_gflops(torch.float32, device)
    print(f"matmul ceilings: bf16 {fmt_ceiling(bf16)}, fp32 {fmt_ceiling(fp32)}", flush=True)
    return bf16, fp32


def fmt_ceiling(gflops: float | None) -> str:
    return "n/a (no bf16 hardware)" if gflops is None else f"{gflops:.0f} GFLOP/s"


def share(value: float, ceiling: float | None) -> str:
    return "n/a" if ceiling is None else f"{value / ceiling:.0%}"


def vs_autocast(r: dict, results: list) -> str:
    plain = dict(results).get("plain autocast")
    return "n/a" if plain is None else f"{r['images_per_s'] / plain['images_per_s']:.2f}x"


def measure(base: dict, has_bf16: bool, a) -> list[tuple[str, dict]]:
    """[(label, result)] for the reference, plain autocast (where the CPU has bf16), unetkit and the
    asked-for variants; with --rounds N, all of them N times in turn (a slow spell of a shared VM hits
    every row alike) and each row's median run."""
    runs = [("reference", {**base, "mode": "reference"})]
    if has_bf16:  # emulated bf16 (AVX2) is ~13x slower: no peer would run it there
        runs.append(("plain autocast", {**base, "mode": "autocast"}))
    runs.append(("unetkit", {**base, "mode": "ours"}))
    if a.nchw:  # the other layout than the one unetkit picks (known once its first run says which)
        runs.append(("unetkit other layout", {**base, "mode": "ours"}))
    if a.compile:
        runs.append(("unetkit --compile", {**base, "mode": "ours", "compile": True}))
    measured: dict[str, list[dict]] = {label: [] for label, _ in runs}
    for _ in range(a.rounds):
        for label, args in runs:
            if label == "unetkit other layout":
                args = {**args, "channels_last": "channels_last" not in measured["unetkit"][0]["precision"]}
            measured[label].append(run_isolated(__file__, args))
    out = []
    for label, _ in runs:
        rs = sorted(measured[label], key=lambda r: r["images_per_s"])
        r = {**rs[len(rs) // 2], "all_images_per_s": [x["images_per_s"] for x in measured[label]]}
        if label == "unetkit other layout":
            label = "unetkit NCHW" if "channels_last" not in r["precision"] else "unetkit channels_last"
        out.append((label, r))
    return out


def spread(r: dict) -> str:
    runs = r.get("all_images_per_s", [])
    return f" ({min(runs):.2f}-{max(runs):.2f})" if len(runs) > 1 else ""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--single")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    cpu = not torch.cuda.is_available()
    # CPU defaults finish in minutes even without bf16 hardware (one 512px seed-net step there is ~90 s).
    p.add_argument("--steps", type=int, default=2 if cpu else 3)
    p.add_argument("--batch", type=int, default=4 if cpu else 8)
    p.add_argument("--sizes", default="256" if cpu else "256,512")
    p.add_argument("--compile", action="store_true", help="also measure the defaults with --compile")
    p.add_argument("--section", default="")
    p.add_argument("--nchw", action="store_true", help="also measure unetkit's step without channels_last")
    p.add_argument("--networks", default="seed,width32", help="rows: " + ", ".join(NETWORKS))
    p.add_argument("--rounds", type=int, default=1, help="measure every row this many times in turn; the median")
    a = p.parse_args()
    if a.single:
        print(json.dumps(single(json.loads(a.single))))
        return
    device = torch.device(a.device)
    section = a.section or (cpu_class() if device.type == "cpu" else torch.cuda.get_device_name(0))
    bf16, fp32 = ceilings(device)
    rows = []
    for name, net in (NETWORKS[k] for k in a.networks.split(",")):
        for size in (int(s) for s in a.sizes.split(",")):
            base = {"size": size, "batch": a.batch, "model": net, "device": a.device, "steps": a.steps}
            print(f"measuring {name} at {size}px, batch {a.batch}: reference, then unetkit ...", flush=True)
            results = measure(base, bf16 is not None, a)
            ref = results[0][1]
            for label, r in results:
                row = (
                    f"| {name} | {size} | {label}: {r['precision']} | {r['images_per_s']:.2f}{spread(r)} | "
                    f"{r['images_per_s'] / ref['images_per_s']:.2f}x | {vs_autocast(r, results)} | "
                    f"{r['conv_gflops']:.0f} | "
                    f"{share(r['conv_gflops'], bf16)} | {share(r['conv_gflops'], fp32)} | {r['peak_mb']:.0f} |"
                )
                print(row, flush=True)
                rows.append(row)
    command = "python benchmarks/bench_train.py " + " ".join(sys.argv[1:])
    mem = "peak GPU memory allocated" if device.type == "cuda" else "peak RSS of the process"
    md = [
        f"## Training throughput ({a.device}, {section})",
        "",
        header(command),
        f"Matmul ceilings measured in this run: bf16 {fmt_ceiling(bf16)}, fp32 {fmt_ceiling(fp32)}. "
        f"Batch {a.batch}; median of {a.steps} steps after warm-up"
        + (f", each row measured {a.rounds} times in turn and its median run shown" if a.rounds > 1 else "")
        + ". Conv GFLOP/s counts 3x the forward "
        f"convolution FLOPs per image. Memory: {mem}.",
        "",
        "| network | px | run | img/s | vs fp32 eager | vs plain autocast | conv GFLOP/s | of bf16 ceiling | "
        "of fp32 ceiling | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    write_section(f"train-{a.device}-{section}", "\n".join(md))


if __name__ == "__main__":
    main()
