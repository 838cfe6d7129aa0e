"""Where unetkit's training step spends its time (issue 23, item 1): torch.profiler over a few steps of
bench_train.py's own step (same network, data, precision and layout), the operators' self time grouped
by kind. The conv row gives the convolutions' own GFLOP/s (their FLOPs over their own time), to set
beside the matmul ceiling measured in the same run: a step can sit far below the ceiling while its
convolutions run near it, when memory-bound operators (BatchNorm, ReLU, pooling, concatenation, the
optimizer) take the rest.

    python benchmarks/profile_train.py [--networks seed,width32] [--size 256] [--batch 8] [--steps 3] [--nchw]
        [--section NAME]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import NETWORKS, make_step  # noqa: E402
from common import conv_flops, cpu_class, header, matmul_gflops, write_section  # noqa: E402

KINDS = (  # first match wins, on the aten operator's name
    ("convolution (forward and backward)", ("conv",)),
    ("BatchNorm", ("batch_norm",)),
    ("GroupNorm", ("group_norm",)),
    ("ReLU", ("relu", "threshold", "clamp_min")),
    ("max-pool", ("pool",)),
    ("concatenation and copies (layout, dtype)", ("cat", "copy", "contiguous", "clone", "to_dense", "_to_copy")),
    ("optimizer and gradient clipping", ("_foreach", "adam", "lerp", "addcdiv", "sqrt", "vector_norm")),
    ("loss and augmentation", ("sigmoid", "binary_cross", "softmax", "nll", "grid_sampler", "flip", "interp")),
)


def kind(name: str) -> str:
    name = name.lower()
    return next((k for k, keys in KINDS if any(key in name for key in keys)), "other")


def profile_step(
    net_key: str, size: int, batch: int, steps: int, channels_last: bool = True
) -> tuple[dict[str, float], float, str]:
    """(seconds per step by kind, step seconds, precision): self CPU time of every aten operator."""
    args = {"size": size, "batch": batch, "model": NETWORKS[net_key][1], "device": "cpu", "mode": "ours"}
    step, precision = make_step({**args, "channels_last": channels_last})
    precision += "" if channels_last else " NCHW"
    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    by_kind: dict[str, float] = defaultdict(float)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    for e in events:
        by_kind[kind(e.key)] += e.self_cpu_time_total / 1e6 / steps
    other = sorted((e for e in events if kind(e.key) == "other"), key=lambda e: -e.self_cpu_time_total)[:8]
    print(
        "largest 'other' operators: "
        + ", ".join(f"{e.key} {e.self_cpu_time_total / 1e3 / steps:.0f} ms" for e in other)
    )
    wall = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e6 / steps
    return dict(by_kind), wall, precision


def main() -> None:
    from unetkit import ModelConfig
    from unetkit.api import build_network, cpu_has_fast_bf16

    p = argparse.ArgumentParser()
    p.add_argument("--networks", default="seed,width32")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--nchw", action="store_true", help="also profile the step without channels_last")
    p.add_argument("--section", default="", help="suffix of the RESULTS.md section's name")
    a = p.parse_args()
    # no bf16 ceiling where the CPU emulates bf16: its 2048^3 matmuls alone would take many minutes there
    bf16 = matmul_gflops(torch.bfloat16, torch.device("cpu")) if cpu_has_fast_bf16() else None
    fp32 = matmul_gflops(torch.float32, torch.device("cpu"))
    rows = []
    for key, channels_last in [(k, cl) for k in a.networks.split(",") for cl in (True, False)[: 1 + a.nchw]]:
        name, net = NETWORKS[key]
        by_kind, total, precision = profile_step(key, a.size, a.batch, a.steps, channels_last)
        net = {**net, "widths": tuple(net["widths"])}
        flops = 3 * a.batch * conv_flops(build_network(ModelConfig(**net)), torch.randn(1, 3, a.size, a.size))
        ceiling = bf16 if precision.startswith("bf16") and bf16 else fp32
        for k in [*(k for k, _ in KINDS), "other"]:
            seconds = by_kind.get(k, 0.0)
            own = f"{flops / seconds / 1e9:.0f} ({flops / seconds / 1e9 / ceiling:.0%})" if k == KINDS[0][0] else ""
            rows.append(f"| {name} | {precision} | {k} | {seconds * 1000:.0f} | {seconds / total:.0%} | {own} |")
        step_gflops = flops / total / 1e9
        rows.append(f"| {name} | {precision} | whole step | {total * 1000:.0f} | 100% | "
                    f"{step_gflops:.0f} ({step_gflops / ceiling:.0%}) |")  # fmt: skip
        print("\n".join(rows[-len(KINDS) - 2 :]), flush=True)
    command = "python benchmarks/profile_train.py " + " ".join(sys.argv[1:])
    md = [
        f"## Where the training step's time goes (cpu, {cpu_class()})",
        "",
        header(command),
        f"unetkit's training step (bench_train.py's), {a.size} px, batch {a.batch}, profiled over {a.steps} steps "
        f"after a warm-up; self CPU time of the aten operators by kind, per step. Matmul ceilings in this run: "
        f"bf16 {f'{bf16:.0f}' if bf16 else 'n/a (no bf16 hardware)'}, fp32 {fp32:.0f} GFLOP/s. "
        "GFLOP/s: 3x the forward convolution FLOPs over the "
        "convolutions' own time (conv row) or over the whole step, with the share of the ceiling of the step's "
        "precision.",
        "",
        "| network | precision | kind | ms per step | share | conv GFLOP/s (of ceiling) |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    write_section(f"train-profile-cpu-{cpu_class()}" + (f"-{a.section}" if a.section else ""), "\n".join(md))


if __name__ == "__main__":
    main()
