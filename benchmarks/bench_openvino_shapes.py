"""OpenVINO with dynamic H and W against graphs compiled per input shape (what unetkit's OpenVinoEngine
runs), for the shipped click model: the masks of its int8 graph against onnxruntime's (the runtime the
int8 gate scores) on GrabCut photos with their first click, and the network's time per call at the
512x512 page view (320x320), fp32 and int8, in rounds. `--seed-network`: also the seed network and the
default one (widths 32-256; random weights, fp32) at 512x512, with the memory each graph adds (the
process's resident set).

The int8 graph is the engine cache's (built and gated once by `--engine onnxruntime-int8`; ~2 min the
first time, on the model's recorded duts2k splits). Needs ../shared/data/grabcut.

    python benchmarks/bench_openvino_shapes.py [--images 50] [--repeat 20] [--rounds 3] [--seed-network]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from click_mix import SHARED, grabcut_objects  # noqa: E402
from common import cpu_class, header, timeit, write_section  # noqa: E402

GRABCUT = SHARED / "grabcut"


def grabcut_pairs():
    """(RGB image, object mask, ignore mask: the 128 band) of each GrabCut image (click_mix's reader)."""
    from PIL import Image

    for path, gt, ignore, _ in grabcut_objects():
        yield np.asarray(Image.open(path).convert("RGB")), gt, ignore


def first_click_inputs(seg, n: int) -> list[torch.Tensor]:
    """The network's input for RITM's first click on each of `n` GrabCut images."""
    from unetkit.api import ClickPredictor, InputRecorder, next_click

    model = seg.model
    seg.model = recorder = InputRecorder(model, limit=n)
    try:
        for image, gt, ignore in itertools.islice(grabcut_pairs(), n):
            click = next_click(np.zeros_like(gt), gt, ignore)
            ClickPredictor(seg).probs(seg.to_tensor(image), [click])
    finally:
        seg.model = model
    return [torch.from_numpy(x) for x in recorder.inputs]


def plain_openvino(path: Path):
    """OpenVINO as a user would call it on the raw graph: compiled once, H and W dynamic."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads()})
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        request.infer(x.numpy(), share_inputs=True)
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    return run


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a > 0) == (b > 0)).float().mean())


def timed(fn, x: torch.Tensor, repeat: int) -> float:
    """Median ms per call after a warm-up."""
    return timeit(lambda: fn(x), torch.device("cpu"), repeat=repeat) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed-network", action="store_true", help="also plain U-Nets at 512x512 (slow)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if not GRABCUT.is_dir():
        raise SystemExit(f"{GRABCUT} not found: GrabCut lives in ../shared/data beside the repo")
    from unetkit.api import OnnxRuntimeEngine, OpenVinoEngine, export_int8, export_onnx, load_segmenter

    seg = load_segmenter("builtin:clicks", "torch", "cpu", "fp32", log=lambda m: None)
    threads, multiple = torch.get_num_threads(), 2**seg.model.depth
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {
            "fp32": export_onnx(seg.model, seg.meta, Path(tmp) / "clicks.onnx", variant="raw"),
            "int8": export_int8("builtin:clicks", Path(tmp) / "clicks.int8.onnx", log=lambda m: print(m, flush=True)),
        }
        inputs = first_click_inputs(seg, args.images)
        scored, dynamic = OnnxRuntimeEngine(graphs["int8"], threads), plain_openvino(graphs["int8"])
        static = OpenVinoEngine(graphs["int8"], threads, multiple)
        shares = [(agreement(dynamic(x), scored(x)), agreement(static(x), scored(x))) for x in inputs]
        x = torch.randn(1, seg.meta.model.in_channels, 320, 320)
        engines = {(p, "dynamic"): plain_openvino(g) for p, g in graphs.items()}
        engines |= {(p, "per shape (unetkit)"): OpenVinoEngine(g, threads, multiple) for p, g in graphs.items()}
        compile_s = {}
        for (precision, _), engine in engines.items():
            if hasattr(engine, "prepare"):
                t = time.perf_counter()
                engine.prepare(tuple(x.shape))
                compile_s[precision] = time.perf_counter() - t
        times = {key: [] for key in engines}
        for _ in range(args.rounds):
            for key, engine in engines.items():
                times[key].append(timed(engine, x, args.repeat))
        seed = ""
        if args.seed_network:
            seed = "".join(plain_unet(Path(tmp), args.rounds, name, widths) for name, widths in UNETS.items())
    write(args, np.array(shares), times, compile_s, seed)


def rss_mb() -> float:
    """The process's resident set, after handing freed memory back (so a network timed before does not
    leave room that hides the next one's growth)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


UNETS = {"Default network (32-256)": (32, 64, 128, 256), "Seed network": (64, 128, 256, 512)}


def plain_unet(folder: Path, rounds: int, name: str, widths: tuple[int, ...]) -> str:
    """A plain U-Net (random weights) at 512x512 fp32: dynamic vs one graph per shape, and how much the
    process grows per graph."""
    from bench_engines import build
    from unetkit.api import OpenVinoEngine, export_onnx

    model, meta = build(widths)
    graph = export_onnx(model, meta, folder / f"unet{widths[0]}.onnx", variant="raw")
    threads, x = torch.get_num_threads(), torch.randn(1, 3, 512, 512)
    before = rss_mb()
    dynamic = plain_openvino(graph)
    dynamic(x)
    grown = [rss_mb() - before]
    static = OpenVinoEngine(graph, threads, 2**model.depth)  # prepare() compiles whatever the graph's size
    for size in (512, 480):
        mark = rss_mb()
        static.prepare((1, 3, size, size))
        static(torch.randn(1, 3, size, size))
        grown.append(rss_mb() - mark)
    times = {"dynamic": [], "per shape": []}
    for _ in range(rounds):
        times["dynamic"].append(timed(dynamic, x, 3))
        times["per shape"].append(timed(static, x, 3))
    ms = {k: statistics.median(v) for k, v in times.items()}
    return (
        f" {name} at 512x512 fp32 ({graph.stat().st_size / 2**20:.0f} MB graph, random weights; median of 3 calls "
        f"per round, {rounds} rounds): dynamic "
        f"{' / '.join(f'{t:.0f}' for t in times['dynamic'])} ms, per shape "
        f"{' / '.join(f'{t:.0f}' for t in times['per shape'])} ms ({ms['dynamic'] / ms['per shape']:.2f}x); the "
        f"process grew {grown[0]:.0f} MB with the dynamic graph's first call and {grown[1]:.0f} / {grown[2]:.0f} MB "
        "with each per-shape graph (512, 480)."
    )


def write(args, shares: np.ndarray, times: dict, compile_s: dict, seed: str = "") -> None:
    rows = []
    for precision in ("fp32", "int8"):
        base = statistics.median(times[(precision, "dynamic")])
        for (p, how), ms in times.items():
            if p == precision:
                runs = " / ".join(f"{m:.1f}" for m in ms)
                rows.append(f"| {p} | {how} | {runs} | {base / statistics.median(ms):.2f}x |")
    lines = [
        f"## OpenVINO per input shape vs dynamic (cpu, {cpu_class()})",
        "",
        header(
            f"python benchmarks/bench_openvino_shapes.py --images {args.images} --repeat {args.repeat} "
            f"--rounds {args.rounds}" + " --seed-network" * args.seed_network
        ),
        "The shipped click model (builtin:clicks); int8: the engine cache's gated graph. Masks: share of pixels "
        "whose mask (logit > 0) equals onnxruntime's, on the first RITM click of "
        f"{len(shares)} GrabCut images: dynamic OpenVINO min {shares[:, 0].min():.4f}, mean "
        f"{shares[:, 0].mean():.4f}, {int((shares[:, 0] < 0.98).sum())} of {len(shares)} under 0.98; compiled for "
        f"the shape (unetkit's engine) min {shares[:, 1].min():.4f}, mean {shares[:, 1].mean():.4f}, "
        f"{int((shares[:, 1] < 0.98).sum())} under 0.98. Time: the network's call at 320x320 (the view of a "
        f"512x512 image), median of {args.repeat} per round, the four taking turns. Compiling the 320x320 graph took "
        f"{compile_s['fp32']:.2f} s (fp32) and {compile_s['int8']:.2f} s (int8).{seed}",
        "",
        "| graph | OpenVINO compiled | ms per call (each round) | speed vs dynamic |",
        "|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(f"openvino-shapes-cpu-{cpu_class()}", text)


if __name__ == "__main__":
    main()
