"""Time per click: one 512x512 image, a click model (--model: the shipped builtin:clicks by default, at
its recorded view size; `default` is `unetkit train --interactive`'s defaults with random weights:
widths 32-256, resize mode at 256x256), each installed engine and the one `--engine auto` picks.
Figures per engine: the network's own call, the model step (ClickPredictor.probs: resize, click disks,
network, upsampling) and the whole HTTP request of the page (POST /v1/interactive to the app behind
uvicorn on loopback: image and previous map by id, clicks in, mask PNG out), the stateless request
(previous map uploaded as a PNG, the map returned as one), and the page's request through FastAPI's
in-process test client (how rows before 2026-12-03 were measured). Median of --repeat clicks after a
warm-up.

    python benchmarks/bench_clicks.py [--model builtin:clicks] [--size 512] [--repeat 10]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import cpu_class, header, write_section  # noqa: E402


def default_click_model(folder: Path) -> Path:
    from unetkit import ModelMeta, UNet
    from unetkit.api import MaskSpec, TrainConfig, export_safetensors

    config = TrainConfig()
    torch.manual_seed(0)
    model = UNet(3 + 3, 1, config.model.widths).train()
    with torch.no_grad():
        model(torch.randn(2, 6, 64, 64))  # non-trivial BatchNorm statistics
    meta = ModelMeta(model.eval().config, ("background", "object"), MaskSpec("binary", 2), (0.5,) * 3, (0.25,) * 3,
                     config.data.resize, tuple(config.data.size), 3, clicks={"radius": 5})  # fmt: skip
    return export_safetensors(model, meta, folder / "click.safetensors")


def describe(path) -> str:
    from unetkit.api import load_model

    _, meta = load_model(path)
    m = meta.model
    net = f"{m.encoder} encoder, decoder widths {list(m.widths)}" if m.encoder != "unet" else f"widths {list(m.widths)}"
    if meta.resize == "resize":
        return f"Click model {path} ({net}, runs at {meta.size[0]}x{meta.size[1]})"
    view = f"longer side {meta.click_view_size}" if meta.click_view_size else "the image's own size"
    return f"Click model {path} ({net}, crop mode: runs at {view})"


def clicks_for(n: int, size: int) -> list[dict]:
    rng = np.random.default_rng(n)
    return [{"x": float(x), "y": float(y), "positive": bool(i % 3 != 2)}
            for i, (y, x) in enumerate(rng.integers(0, size, (n, 2)))]  # fmt: skip


class Timed:
    """The served network with a stopwatch: how much of a model step is the network's own call (the rest
    is click maps, resizing the view and the logits, the sigmoid)."""

    def __init__(self, model) -> None:
        self.model, self.times = model, []

    def __call__(self, x):
        t = time.perf_counter()
        out = self.model(x)
        self.times.append(time.perf_counter() - t)
        return out

    def __getattr__(self, name):
        return getattr(self.model, name)


class Instant(Timed):
    """A network that answers at once (zero logits): what the model step and the request cost around it."""

    def __call__(self, x):
        return torch.zeros(x.shape[0], 1, *x.shape[2:])


def time_model(predictor, image: torch.Tensor, repeat: int) -> tuple[float, float]:
    """(model step ms, the network's own call ms), medians after a warm-up click."""
    from unetkit.api import Click

    seg = predictor.seg
    seg.model, prev, times = Timed(seg.model), None, []
    try:
        for n in range(1, repeat + 2):
            clicks = [Click.from_dict(c) for c in clicks_for(n, image.shape[-1])]
            t = time.perf_counter()
            prev = predictor.probs(image, clicks, prev)
            times.append(time.perf_counter() - t)
        network = statistics.median(seg.model.times[1:]) * 1000
    finally:
        seg.model = seg.model.model
    return statistics.median(times[1:]) * 1000, network


@contextlib.contextmanager
def loopback_server(app):
    """The app behind uvicorn on a free loopback port, in a thread: real HTTP, as the page's requests."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True  # the lifespan's exit shuts the gate's pool: no thread of it stays behind
        thread.join()


@contextlib.contextmanager
def http_client(seg, transport: str):
    """transport "uvicorn": an HTTP client of the app served on loopback (keep-alive, as a browser);
    "testclient": FastAPI's in-process client (no socket; its portal thread adds a hop per request)."""
    import httpx
    from fastapi.testclient import TestClient

    from unetkit.api import create_app

    app = create_app(seg)
    if transport == "testclient":
        with TestClient(app) as client:
            yield client
        return
    with loopback_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def time_http(seg, png: bytes, repeat: int, by_id: bool, transport: str = "uvicorn") -> float:
    """The page's request per click: the previous map by the id the last answer gave (by_id, what the
    page sends) or uploaded as the PNG the last answer carried (the stateless form)."""
    with http_client(seg, transport) as client:
        out = client.post("/v1/interactive", files={"image": ("x.png", png)}).json()
        times = []
        for n in range(1, repeat + 2):
            data = {"image_id": out["image_id"], "clicks": json.dumps(clicks_for(n, 512))}
            t = time.perf_counter()
            if by_id:
                r = client.post("/v1/interactive", data={**data, "prev_id": out["probs_id"], "return_probs": "false"})
            else:
                prev = base64.b64decode(out["probs_png_base64"])
                r = client.post("/v1/interactive", data=data, files={"prev": ("p.png", prev, "image/png")})
            times.append(time.perf_counter() - t)
            out = r.json()
    return statistics.median(times[1:]) * 1000


def around_network(path, array: np.ndarray, png: bytes, repeat: int) -> tuple[float, float, float, float]:
    """(model step, HTTP, HTTP with the map as PNG, test client) ms with a network that answers at once."""
    from unetkit.api import ClickPredictor, load_segmenter

    seg = load_segmenter(path, "torch", "cpu", "auto", log=lambda m: None)
    seg.model = Instant(seg.model)
    ms_model, _ = time_model(ClickPredictor(seg), seg.to_tensor(array), repeat)
    return (ms_model, time_http(seg, png, repeat, by_id=True), time_http(seg, png, repeat, by_id=False),
            time_http(seg, png, repeat, by_id=True, transport="testclient"))  # fmt: skip


def other_weight_range(path, folder: Path) -> str:
    """The gate of the int8 graph with the other weight range than this CPU's (8-bit weights where it
    lacks VNNI, 7-bit where it has it), scored the same way: what the choice of range is worth here."""
    from unetkit.api import OnnxRuntimeEngine, build_int8, cpu_has_vnni, export_onnx, load_segmenter

    seg = load_segmenter(path, "torch", "cpu", "fp32", log=lambda m: None)
    fp32 = export_onnx(seg.model, seg.meta, folder / "other.onnx", variant="raw")
    threads = torch.get_num_threads()
    seven = cpu_has_vnni()  # the other range than the one the engines use here
    report = build_int8(seg.model, seg.meta, fp32, folder / "other.int8.onnx", lambda p: OnnxRuntimeEngine(p, threads),
                        log=lambda m: None, reduce_range=seven)  # fmt: skip
    ours = "8-bit weights (this CPU has VNNI)" if seven else "7-bit weights (this CPU has no VNNI)"
    return f" The engines' graph has {ours}; with {'7' if seven else '8'}-bit weights instead: {report}."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--model", default="builtin:clicks", help="checkpoint, builtin:NAME, or default")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--int8", action="store_true", help="also build, score and time the int8 engines")
    args = ap.parse_args()
    from unetkit import ConfigError
    from unetkit.api import ClickPredictor, Int8Report, installed_engines, load_segmenter

    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ["UNETKIT_CACHE"] = tmp  # engines export into a fresh cache
        path = default_click_model(Path(tmp)) if args.model == "default" else args.model
        gate = ""
        if args.int8:  # calibrated on the model's training images, scored on its validation split
            try:
                load_segmenter(path, "onnxruntime-int8", "cpu", "auto", log=lambda m: print(m, flush=True))
            except ConfigError as e:  # refused by its own score: timed without it, and the table says so
                print(e, flush=True)
            report = Int8Report.read(next(Path(tmp, "engines").glob("*.int8.json")))
            gate = f" The int8 graph's gate: {report}." + "".join(
                f" {name} runs it to onnxruntime's mask pixels on {share:.2%} of the calibration inputs."
                for name, share in report.runtimes.items()
            )
            gate += other_weight_range(path, Path(tmp))
        for engine in ["auto", *installed_engines(path)]:
            seg = load_segmenter(path, engine, "cpu", "auto", log=lambda m: None)
            predictor = ClickPredictor(seg)
            image = seg.to_tensor(array)
            if hasattr(seg.model, "prepare"):  # OpenVINO: the view's graph, as an image's second click starts it
                view = predictor.net_size((0, 0, args.size, args.size), True)
                seg.model.prepare((1, seg.meta.model.in_channels, *view))
            ms_model, ms_network = time_model(predictor, image, args.repeat)
            ms_http = time_http(seg, buf.getvalue(), args.repeat, by_id=True)
            ms_png = time_http(seg, buf.getvalue(), args.repeat, by_id=False)
            ms_test = time_http(seg, buf.getvalue(), args.repeat, by_id=True, transport="testclient")
            precision = getattr(seg.model, "precision", seg.rt.precision)
            name = f"{seg.engine} {precision}" + (" (--engine auto)" if engine == "auto" else "")
            rows.append((name, ms_network, ms_model, ms_http, ms_png, ms_test))
            print(rows[-1], flush=True)
        around = around_network(path, array, buf.getvalue(), args.repeat)
        rows.append(("no network (zero logits at once): the cost around it", 0.0, *around))
    lines = [
        f"## Time per click (cpu, {cpu_class()})",
        "",
        header(
            f"python benchmarks/bench_clicks.py --model {args.model} --size {args.size} --repeat {args.repeat}"
            + " --int8" * args.int8
        ),
        f"{describe(path)}, one {args.size}x{args.size} image, median of {args.repeat} clicks after a warm-up. "
        "Targets: <= 60 ms for the model step of the shipped click model with the engine auto picks (issue 21), "
        f"<= 30 ms for the whole HTTP request (issue 23). Network: the served network's own call, part of the "
        "model step (which adds the click maps, resizing and the sigmoid); the HTTP request adds the multipart "
        "form, encoding the mask as PNG and the round trip to the app served by uvicorn on loopback (client and "
        "server in one process, sharing the 2 cores): the page's request sends the previous map by the id "
        "the last answer gave (`prev_id`, `return_probs=false`), the stateless one uploads it as the PNG the last "
        "answer carried (one more PNG to encode, send and decode per click); test client: the page's request "
        f"through FastAPI's in-process TestClient, no socket (how the rows before 2026-12-03 were taken). OpenVINO "
        "rows: the graph compiled for the view's shape before timing (from an image's second click it compiles in "
        "the background, 0.5-1.5 s in bench_openvino_shapes.py; int8 from the first, onnxruntime answering meanwhile). "
        "The last "
        f"row swaps the network for one that returns zero logits at once: what the rest costs.{gate}",
        "",
        "| engine | network ms | model step ms | HTTP request ms (the page's: map by id) | HTTP, map as PNG "
        "| page's request, test client |",
        "|---|---|---|---|---|---|",
        *[f"| {name} | {n:.0f} | {a:.0f} | {b:.0f} | {c:.0f} | {d:.0f} |" for name, n, a, b, c, d in rows],
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(f"clicks-cpu-{cpu_class()}", text)


if __name__ == "__main__":
    main()
