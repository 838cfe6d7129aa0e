"""Shared helpers for the benchmark scripts: machine facts, FLOP counting, timing, RESULTS.md."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


def cpu_flags() -> set[str]:
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return set()
    return set(line.split(":", 1)[1].split())


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    bf16 = "amx_bf16" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else "no bf16"
    info = {
        "cpu": f"{cpu} ({torch.backends.cpu.get_cpu_capability()}, {bf16})",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def cpu_class() -> str:
    """amx | avx512-bf16 | no-bf16: RESULTS sections keep one table per class of CPU."""
    flags = cpu_flags()
    return "amx" if "amx_bf16" in flags else "avx512-bf16" if "avx512_bf16" in flags else "no-bf16"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn, device: torch.device, warmup: int = 1, repeat: int = 3) -> float:
    """Median seconds per call after warm-up."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def matmul_gflops(dtype: torch.dtype, device: torch.device, n: int = 2048) -> float:
    """Measured dense matmul throughput: the ceiling that conv throughput is compared with."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    reps = 8 if device.type == "cpu" else 50
    sec = timeit(lambda: [a @ b for _ in range(reps)], device, warmup=1, repeat=3)
    return 2 * n**3 * reps / sec / 1e9


def conv_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Forward FLOPs of all convolutions (2 per multiply-add) for input x."""
    total = [0.0]

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        total[0] += 2.0 * out.numel() * (m.in_channels // m.groups) * k

    def tconv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        total[0] += 2.0 * inp[0].numel() * m.out_channels * k

    hooks = []
    for m in model.modules():
        if isinstance(m, torch.nn.ConvTranspose2d):
            hooks.append(m.register_forward_hook(tconv_hook))
        elif isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total[0]


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(script: str, args: dict) -> dict:
    """Run one measurement in a fresh process (so its peak memory is its own); returns its JSON."""
    out = subprocess.run([sys.executable, script, "--single", json.dumps(args)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section between <!-- name --> markers in RESULTS.md."""
    text = (
        RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nWritten by the scripts in benchmarks/.\n"
    )
    block = f"<!-- {name} -->\n{markdown.strip()}\n<!-- /{name} -->"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def header(command: str) -> str:
    m = machine()
    facts = ", ".join(f"{k} {v}" for k, v in m.items())
    return f"Machine: {facts}. Date: {time.strftime('%Y-%m-%d')}. Command: `{command}`\n"
