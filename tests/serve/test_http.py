"""serve.http on its own: uploads refused by size, header and content before they are decoded, and the
add-on seam of serve.app (routes and GET /v1/model entries from one function)."""

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from unetkit.infer.predict import Segmenter  # noqa: E402
from unetkit.serve.app import KIND_ADD_ONS, create_app  # noqa: E402
from unetkit.serve.http import Gate, Limits, UploadError, gated, read_upload  # noqa: E402


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def status_of(data: bytes, limits: Limits, channels: int = 3) -> int:
    with pytest.raises(UploadError) as e:
        read_upload(data, limits, channels)
    return e.value.status


def test_uploads_are_checked_before_decoding():
    small = Limits(max_bytes=10_000, max_pixels=100)
    rgb = np.zeros((8, 9, 3), np.uint8)
    assert read_upload(png(rgb), small, 3).shape == (8, 9, 3)
    assert status_of(png(np.zeros((11, 10, 3), np.uint8)), small) == 413  # 110 pixels > 100
    assert status_of(b"x" * 10_001, small) == 413
    assert status_of(b"not an image at all", small) == 415
    colour = np.random.default_rng(0).integers(0, 255, (4, 4, 3), dtype=np.uint8)
    assert status_of(png(colour), small, channels=1) == 422  # colour into a grey model


def test_the_gate_is_full_only_when_every_slot_runs_and_the_queue_is_full():
    gate = Gate(Limits(slots=1, queue=1))
    assert not gate.full()
    gate.semaphore._value = 0  # the one slot taken
    assert not gate.full()
    gate.waiting = 1
    assert gate.full()


def test_an_add_on_brings_its_routes_and_model_info(open_client, trained_run):
    seg = Segmenter.load(trained_run.best_checkpoint, "cpu", "fp32")

    def hello(app, seg, limits) -> dict:
        app.get("/v1/hello")(lambda: {"classes": len(seg.classes), "max_bytes": limits.max_bytes})
        return {"hello": {"enabled": True}}

    client = open_client(create_app(seg, Limits(max_bytes=1234), add_ons=[hello]))
    assert client.get("/v1/hello").json() == {"classes": 2, "max_bytes": 1234}
    assert client.get("/v1/model").json()["hello"] == {"enabled": True}
    assert client.post("/v1/interactive").status_code in (404, 405)  # not a click model: no click routes
    assert set(KIND_ADD_ONS) == {"segmentation", "interactive"} and KIND_ADD_ONS["segmentation"] == ()


def test_gated_work_runs_on_the_gates_own_threads():
    """Inference stays on `slots` threads of the gate's own (one OpenMP team each), off the event loop."""
    import asyncio
    import threading

    async def run(gate, n):
        return [await gated(gate, threading.current_thread) for _ in range(n)]

    one = asyncio.run(run(Gate(Limits(slots=1)), 6))
    assert len(set(one)) == 1 and one[0].name.startswith("unetkit-inference")


def test_the_apps_inference_thread_ends_with_the_app(trained_run):
    seg = Segmenter.load(trained_run.best_checkpoint, "cpu", "fp32")
    app = create_app(seg)
    with TestClient(app) as client:
        image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
        assert client.post("/v1/predict", files={"image": ("x.png", png(image))}).status_code == 200
        threads = list(app.state.gate.pool._threads)
        assert threads and all(t.is_alive() for t in threads)
    for t in threads:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in threads)
