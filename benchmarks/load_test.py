"""A bounded load test of `unetkit serve` on loopback: N concurrent clients post the same image for T
seconds at each of several concurrencies; latency percentiles of the answered requests, throughput,
503s (the queue is full: by design beyond --slots + --queue), other errors (must be none) and the
server's resident memory (sampled through each level: it must not grow with the load).

Clients honour Retry-After, as a well-behaved client would. The server is started here and stopped at
the end; nothing listens beyond 127.0.0.1. Default model: the default network (widths 32-256, random
weights: speed, not quality) as a safetensors file, so no training is needed.

    python benchmarks/load_test.py [--clients 1,4,16,64] [--seconds 15] [--size 256] [--checkpoint CKPT]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import header, write_section  # noqa: E402


def default_model(folder: Path) -> Path:
    import torch

    from unetkit import ModelMeta, UNet
    from unetkit.api import MaskSpec, export_safetensors

    torch.manual_seed(0)
    model = UNet(3, 1, (32, 64, 128, 256)).eval()
    meta = ModelMeta(model.config, ("background", "foreground"), MaskSpec("binary", 2), (0.5,) * 3, (0.25,) * 3,
                     "crop", (256, 256), 3)  # fmt: skip
    return export_safetensors(model, meta, folder / "default.safetensors")


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), MiB."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return total


class Level:
    """One concurrency level: clients post until the deadline; results are collected under a lock."""

    def __init__(self, url: str, body: bytes, clients: int, seconds: float) -> None:
        self.url, self.body, self.clients, self.seconds = url, body, clients, seconds
        self.latencies: list[float] = []
        self.busy = self.errors = 0
        self.lock = threading.Lock()

    def client(self, deadline: float) -> None:
        import httpx

        with httpx.Client(timeout=120) as http:
            while time.monotonic() < deadline:
                t = time.perf_counter()
                try:
                    r = http.post(self.url, files={"image": ("load.png", self.body, "image/png")})
                except httpx.HTTPError:
                    with self.lock:
                        self.errors += 1
                    continue
                ms = (time.perf_counter() - t) * 1000
                with self.lock:
                    if r.status_code == 200:
                        self.latencies.append(ms)
                    elif r.status_code == 503:
                        self.busy += 1
                    else:
                        self.errors += 1
                if r.status_code == 503:
                    time.sleep(min(float(r.headers.get("retry-after", 1)), max(0.0, deadline - time.monotonic())))

    def run(self, server_pid: int) -> dict:
        deadline = time.monotonic() + self.seconds
        threads = [threading.Thread(target=self.client, args=(deadline,)) for _ in range(self.clients)]
        start = time.monotonic()
        for t in threads:
            t.start()
        rss = []
        while any(t.is_alive() for t in threads):
            rss.append(rss_mib(server_pid))
            time.sleep(0.25)
        elapsed = time.monotonic() - start
        lat = sorted(self.latencies)
        pct = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) >= 2 else lat * 99 or [float("nan")] * 99
        return {
            "clients": self.clients,
            "ok": len(lat),
            "busy": self.busy,
            "errors": self.errors,
            "p50": pct[49],
            "p95": pct[94],
            "p99": pct[98],
            "rps": len(lat) / elapsed,
            "rss_max": max(rss),
            "rss_end": rss[-1],
        }


def start_server(checkpoint: Path, port: int, flags: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "unetkit", "serve", str(checkpoint), "--port", str(port), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"unetkit serve exited with {proc.returncode}: {' '.join(cmd)}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("unetkit serve did not answer /health within 60 s")


def png(size: int) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="model to serve (default: the default network, random weights)")
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--size", type=int, default=256, help="side of the square test image")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--serve-flags", default="--slots 1 --queue 8", help="passed to unetkit serve")
    ap.add_argument("--section", default="load-cpu", help="RESULTS.md section to (re)write")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else default_model(Path(tmp))
        proc = start_server(checkpoint, args.port, args.serve_flags.split())
        try:
            url = f"http://127.0.0.1:{args.port}/v1/predict"
            body = png(args.size)
            Level(url, body, 1, 3).run(proc.pid)  # warm-up: first-call allocations out of the figures
            idle = rss_mib(proc.pid)
            rows = []
            for n in (int(c) for c in args.clients.split(",")):
                row = Level(url, body, n, args.seconds).run(proc.pid)
                rows.append(row)
                print(row, flush=True)
            alive = proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(10)
    model = args.checkpoint or "default network 32-256, random weights"
    lines = [
        f"## Serving under load (cpu, loopback: {args.serve_flags})",
        "",
        header(
            f"python benchmarks/load_test.py --clients {args.clients} --seconds {args.seconds:g} "
            f"--size {args.size} --serve-flags '{args.serve_flags}'"
        ),  # fmt: skip
        f"Model: {model}; one {args.size}x{args.size} PNG per request; `unetkit serve {args.serve_flags}` "
        f"(torch engine). {args.seconds:g} s per level; clients honour Retry-After (1 s). Server RSS after warm-up: "
        f"{idle:.0f} MiB. Server still alive after the run: {'yes' if alive else 'NO'}.",
        "",
        "| clients | answered | 503 busy | other errors | p50 ms | p95 ms | p99 ms | answered/s "
        "| RSS max MiB | RSS end MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['clients']} | {r['ok']} | {r['busy']} | {r['errors']} | {r['p50']:.0f} | {r['p95']:.0f} | "
            f"{r['p99']:.0f} | {r['rps']:.2f} | {r['rss_max']:.0f} | {r['rss_end']:.0f} |"
        )
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(args.section, text)


if __name__ == "__main__":
    main()
