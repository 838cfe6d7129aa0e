"""Time per click: one 512x512 image, the default click model (`unetkit train --interactive` defaults:
widths 32-256, resize mode at 256x256; random weights: speed, not quality), each installed engine.
Two figures per engine: the model step alone (ClickPredictor.probs: resize, click disks, network,
upsampling) and the whole HTTP request of the page (POST /v1/interactive in-process: upload by id,
clicks, previous-mask PNG in, mask and probability PNGs out). Median of --repeat clicks after a warm-up.

    python benchmarks/bench_clicks.py [--size 512] [--repeat 10]
"""

from __future__ import annotations

import argparse
import base64
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
from common import header, write_section  # noqa: E402


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


def clicks_for(n: int, size: int) -> list[dict]:
    rng = np.random.default_rng(n)
    return [{"x": float(x), "y": float(y), "positive": bool(i % 3 != 2)}
            for i, (y, x) in enumerate(rng.integers(0, size, (n, 2)))]  # fmt: skip


def time_model(predictor, image: torch.Tensor, repeat: int) -> float:
    from unetkit.api import Click

    prev, times = None, []
    for n in range(1, repeat + 2):
        clicks = [Click.from_dict(c) for c in clicks_for(n, image.shape[-1])]
        t = time.perf_counter()
        prev = predictor.probs(image, clicks, prev)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:]) * 1000


def time_http(seg, png: bytes, repeat: int) -> float:
    from fastapi.testclient import TestClient

    from unetkit.api import create_app

    client = TestClient(create_app(seg))
    out = client.post("/v1/interactive", files={"image": ("x.png", png)}).json()
    times = []
    for n in range(1, repeat + 2):
        prev = base64.b64decode(out["probs_png_base64"])
        t = time.perf_counter()
        r = client.post("/v1/interactive", data={"image_id": out["image_id"], "clicks": json.dumps(clicks_for(n, 512))},
                        files={"prev": ("p.png", prev, "image/png")})  # fmt: skip
        times.append(time.perf_counter() - t)
        out = r.json()
    return statistics.median(times[1:]) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from unetkit.api import ClickPredictor, installed_engines, load_segmenter

    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ["UNETKIT_CACHE"] = tmp  # engines export into a fresh cache
        path = default_click_model(Path(tmp))
        for engine in installed_engines():
            seg = load_segmenter(path, engine, "cpu", "auto", log=lambda m: None)
            predictor = ClickPredictor(seg)
            image = seg.to_tensor(array)
            ms_model = time_model(predictor, image, args.repeat)
            ms_http = time_http(seg, buf.getvalue(), args.repeat)
            precision = getattr(seg.model, "precision", seg.rt.precision)
            rows.append((f"{engine} {precision}", ms_model, ms_http))
            print(rows[-1], flush=True)
    lines = [
        "## Time per click (cpu)",
        "",
        header(f"python benchmarks/bench_clicks.py --size {args.size} --repeat {args.repeat}"),
        f"Default click model (widths 32-256, 6 input channels, runs at 256x256), one {args.size}x{args.size} "
        f"image, median of {args.repeat} clicks after a warm-up. Target: < 200 ms per click.",
        "",
        "| engine | model step ms | HTTP request ms (page's /v1/interactive) |",
        "|---|---|---|",
        *[f"| {name} | {a:.0f} | {b:.0f} |" for name, a, b in rows],
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("clicks-cpu", text)


if __name__ == "__main__":
    main()
