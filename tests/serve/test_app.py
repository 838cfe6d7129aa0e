"""The HTTP API in-process: metadata, health, masks equal to predict's, bounded uploads and queue."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from unetkit.infer.predict import Segmenter  # noqa: E402
from unetkit.serve.app import Limits, create_app  # noqa: E402


@pytest.fixture(scope="module")
def seg(trained_run):
    return Segmenter.load(trained_run.best_checkpoint, "cpu", "fp32")


@pytest.fixture
def client(seg):
    with TestClient(create_app(seg, Limits(max_bytes=2**20, max_pixels=1_000_000, slots=1, queue=0))) as c:
        yield c


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (nothing behind it): a decompression bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + end


def test_health_model_and_page(client):
    import os

    assert client.get("/health").json() == {"status": "ok", "pid": os.getpid()}
    info = client.get("/v1/model").json()
    assert info["classes"] == ["background", "foreground"] and info["binary"] and info["limits"]["slots"] == 1
    page = client.get("/")
    assert page.status_code == 200 and "/v1/predict?format=json" in page.text
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_every_request_gets_one_log_line_with_its_status_and_size(client, capfd):
    capfd.readouterr()
    client.get("/health")
    client.post("/v1/predict", files={"image": ("f", b"not an image at all")})
    lines = capfd.readouterr().err.strip().splitlines()
    assert lines[0].startswith("GET /health 200 0 B ") and lines[0].endswith(" ms")
    method, path, status, size = lines[1].split()[:4]
    assert (method, path, status) == ("POST", "/v1/predict", "415") and int(size) > 19


def test_predict_returns_predicts_mask_as_png_and_json(client, seg, learn_dir):
    path = sorted((learn_dir / "test" / "images").iterdir())[0]
    expected = seg.predict(path)
    r = client.post("/v1/predict", files={"image": ("x.png", path.read_bytes(), "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))) > 0, expected > 0)
    j = client.post("/v1/predict?format=json", files={"image": ("x.png", path.read_bytes())}).json()
    assert (j["width"], j["height"]) == (64, 64)
    assert [c["pixels"] for c in j["classes"]] == [int((expected == 0).sum()), int((expected == 1).sum())]
    import base64

    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(j["mask_png_base64"]))))
    assert np.array_equal(decoded > 0, expected > 0)


def test_bad_uploads_get_a_json_4xx_and_the_server_keeps_serving(client):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    cases = {
        "text": (b"not an image at all", 415),
        "truncated": (png_bytes(rgb)[:60], 422),
        "bomb": (png_header(20000, 20000), 413),
        "too big": (b"\x89PNG" + b"0" * (2**20 + 10), 413),
    }
    for name, (data, status) in cases.items():
        r = client.post("/v1/predict", files={"image": ("f", data)})
        assert r.status_code == status and "error" in r.json(), (name, r.status_code, r.text)
    for ok in (png_bytes(rgb[..., 0].astype(np.uint16) * 200), png_bytes(rgb[..., :1].repeat(2, 2), "LA")):
        assert client.post("/v1/predict", files={"image": ("f", ok)}).status_code == 200  # 16-bit, grey+alpha
    assert client.get("/health").status_code == 200


def test_a_full_queue_gets_503_with_retry_after(client):
    import asyncio

    gate = client.app.state.gate
    asyncio.run(gate.semaphore.acquire())  # one inference running, none may wait (queue 0)
    rgb = np.zeros((8, 8, 3), np.uint8)
    r = client.post("/v1/predict", files={"image": ("f", png_bytes(rgb))})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    gate.semaphore.release()
    assert client.post("/v1/predict", files={"image": ("f", png_bytes(rgb))}).status_code == 200


def test_workers_are_processes_each_serving_the_model(trained_run, learn_dir):
    """--workers 2: two uvicorn worker processes (spawned by the server) answer, each with its model."""
    import json
    import urllib.request
    from pathlib import Path

    import httpx

    from serving import running_server

    def spawned_children(pid: int) -> set[int]:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return {int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()}

    image = sorted((learn_dir / "test" / "images").iterdir())[0]
    with running_server(trained_run.best_checkpoint, "--workers", "2") as (url, proc):
        workers = spawned_children(proc.pid)
        pids = {json.load(urllib.request.urlopen(url + "/health"))["pid"] for _ in range(20)}
        r = httpx.post(url + "/v1/predict", files={"image": (image.name, image.read_bytes())}, timeout=30)
    assert len(workers) == 2 and pids <= workers
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
