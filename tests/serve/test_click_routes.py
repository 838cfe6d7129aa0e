"""POST /v1/interactive: stateless click-guided predictions (image or cached id, clicks, previous
probabilities) equal to the ClickPredictor's; bad clicks and stale ids get clear 4xx answers."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from unetkit.infer.predict import Segmenter  # noqa: E402
from unetkit.interactive.clicks import Click  # noqa: E402
from unetkit.interactive.predictor import ClickPredictor, next_box  # noqa: E402
from unetkit.serve.app import Limits, create_app  # noqa: E402
from unetkit.serve.clicks import ClickOptions, ImageCache  # noqa: E402


@pytest.fixture(scope="module")
def seg(click_run):
    return Segmenter.load(click_run.best_checkpoint, "cpu", "fp32")


@pytest.fixture(scope="module")
def client(seg):
    with TestClient(create_app(seg, Limits(max_bytes=2**20, max_pixels=1_000_000, slots=1, queue=4))) as c:
        yield c


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_clicks_and_previous_mask_give_the_predictors_mask(client, seg, learn_dir):
    assert client.get("/v1/model").json()["interactive"] is True
    path = sorted((learn_dir / "test" / "images").iterdir())[2]
    predictor = ClickPredictor(seg)
    image = seg.to_tensor(path)
    first = client.post("/v1/interactive", files={"image": ("x.png", path.read_bytes())}).json()
    auto = predictor.probs(image, [])
    assert first["clicks"] == 0 and np.array_equal(decode(first["mask_png_base64"]) > 0, auto > 0.49)
    assert np.abs(decode(first["probs_png_base64"]) / 255 - auto).max() <= 0.5 / 255 + 1e-6

    clicks = [{"x": 20, "y": 30, "positive": True}, {"x": 50, "y": 5, "positive": False}]
    prev_png = base64.b64decode(first["probs_png_base64"])
    r = client.post(
        "/v1/interactive",
        data={"image_id": first["image_id"], "clicks": json.dumps(clicks)},
        files={"prev": ("prev.png", prev_png, "image/png")},
    ).json()
    prev = decode(first["probs_png_base64"]).astype(np.float32) / 255
    expected = predictor.probs(image, [Click.from_dict(c) for c in clicks], prev)
    assert r["clicks"] == 2 and r["image_id"] == first["image_id"]
    assert np.array_equal(decode(r["mask_png_base64"]) > 0, expected > 0.49)


def test_the_previous_map_by_id_gives_what_its_png_gives(client, learn_dir):
    """The page sends the map back by the id the answer gave (no PNG each way): same mask as the PNG."""
    path = sorted((learn_dir / "test" / "images").iterdir())[1]
    first = client.post("/v1/interactive", files={"image": ("x.png", path.read_bytes())}).json()

    def click(clicks, prev_out, by_id, **fields):
        data = {"image_id": first["image_id"], "clicks": json.dumps(clicks), **fields}
        if by_id:
            return client.post("/v1/interactive", data={**data, "prev_id": prev_out["probs_id"]}).json()
        prev = base64.b64decode(prev_out["probs_png_base64"])
        return client.post("/v1/interactive", data=data, files={"prev": ("p.png", prev, "image/png")}).json()

    one = [{"x": 12, "y": 40, "positive": True}]
    by_png, by_id = click(one, first, False), click(one, first, True, return_probs="false")
    assert "probs_png_base64" not in by_id and "probs_png_base64" in by_png
    assert np.array_equal(decode(by_id["mask_png_base64"]), decode(by_png["mask_png_base64"]))
    two = [*one, {"x": 60, "y": 60, "positive": False}]
    chained_id, chained_png = click(two, by_id, True), click(two, by_png, False)
    assert np.array_equal(decode(chained_id["probs_png_base64"]), decode(chained_png["probs_png_base64"]))
    assert chained_id["clicks"] == 2 and chained_id["probs_id"] != by_id["probs_id"]
    stale = client.post("/v1/interactive", data={"image_id": first["image_id"], "prev_id": "feedbeef"})
    assert stale.status_code == 404 and "prev_id" in stale.json()["error"]


def test_zoom_in_predicts_in_ritms_box_and_keeps_it_with_the_map(open_client, seg, learn_dir, tmp_path):
    """From the 2nd click the model sees a box around the object (200 px at least, so the picture is
    larger here); a map sent back by id carries its box on while clicks land inside it (the rule ClickSession's
    zoom-in follows: next_box); `zoom_in=false` (or the server's --no-zoom-in) predicts on the whole image."""
    path = sorted((learn_dir / "test" / "images").iterdir())[3]
    big = tmp_path / "big.png"
    Image.open(path).resize((448, 384), Image.BILINEAR).save(big)
    client = open_client(create_app(seg, Limits(max_bytes=2**20, max_pixels=1_000_000, slots=1, queue=4)))
    first = client.post("/v1/interactive", files={"image": ("x.png", big.read_bytes())}).json()
    predictor, image = ClickPredictor(seg), seg.to_tensor(big)
    clicks = [Click(100.0, 120.0, True), Click(110.0, 140.0, False), Click(95.0, 115.0, True)]
    out, box, boxes = first, None, []
    for k in range(1, 4):
        prev = decode(out["probs_png_base64"]).astype(np.float32) / 255
        data = {"image_id": first["image_id"], "clicks": json.dumps([c.to_dict() for c in clicks[:k]])}
        out = client.post("/v1/interactive", data={**data, "prev_id": out["probs_id"]}).json()
        box = next_box(box, prev, clicks[:k], predictor.threshold)
        boxes.append(out["box"])
        assert out["box"] == (list(box) if box else None)
        expected = predictor.probs(image, clicks[:k], prev, box)
        assert np.array_equal(decode(out["mask_png_base64"]) > 0, expected > 0.49)
    assert boxes[0] is None and boxes[1] is not None and boxes[2] == boxes[1]  # the 3rd click fell inside
    y0, x0, y1, x1 = boxes[1]
    assert (y1 - y0, x1 - x0) != (384, 448) and min(y1 - y0, x1 - x0) >= 200
    outside = np.ones((384, 448), bool)
    outside[y0:y1, x0:x1] = False
    assert outside.any() and np.all(decode(out["probs_png_base64"])[outside] == 0)  # as RITM: nothing there

    plain = client.post("/v1/interactive", data={**data, "prev_id": first["probs_id"], "zoom_in": "false"}).json()
    prev = decode(first["probs_png_base64"]).astype(np.float32) / 255
    assert plain["box"] is None
    assert np.array_equal(decode(plain["mask_png_base64"]) > 0, predictor.probs(image, clicks, prev) > 0.49)
    off = open_client(create_app(seg, clicks=ClickOptions(zoom_in=False)))
    first = off.post("/v1/interactive", files={"image": ("x.png", big.read_bytes())}).json()
    two = {"image_id": first["image_id"], "clicks": json.dumps([c.to_dict() for c in clicks[:2]])}
    assert off.post("/v1/interactive", data={**two, "prev_id": first["probs_id"]}).json()["box"] is None


def test_bad_interactive_requests_get_4xx(client, learn_dir):
    path = sorted((learn_dir / "test" / "images").iterdir())[0]
    image_id = client.post("/v1/interactive", files={"image": ("x.png", path.read_bytes())}).json()["image_id"]
    cases = {
        "stale id": ({"image_id": "0" * 32}, {}, 404),
        "not json": ({"image_id": image_id, "clicks": "[{x: 1"}, {}, 422),
        "no fields": ({"image_id": image_id, "clicks": '[{"x": 1}]'}, {}, 422),
        "outside": ({"image_id": image_id, "clicks": '[{"x": 64, "y": 0, "positive": true}]'}, {}, 422),
        "prev size": ({"image_id": image_id}, {"prev": ("p.png", png(np.zeros((5, 5), np.uint8)))}, 422),
        "prev rgb": ({"image_id": image_id}, {"prev": ("p.png", png(np.zeros((64, 64, 3), np.uint8)))}, 422),
    }
    for name, (data, files, status) in cases.items():
        r = client.post("/v1/interactive", data=data, files=files or None)
        assert r.status_code == status and "error" in r.json(), (name, r.status_code, r.text)
    assert "send the image again" in client.post("/v1/interactive", data={"image_id": "x"}).json()["error"]


def test_plain_models_have_no_interactive_route(open_client, trained_run):
    seg = Segmenter.load(trained_run.best_checkpoint, "cpu", "fp32")
    client = open_client(create_app(seg))
    assert client.get("/v1/model").json()["interactive"] is False
    assert client.post("/v1/interactive", data={"image_id": "x"}).status_code == 404
    with pytest.raises(Exception, match="not a click model"):
        ClickPredictor(seg)


def test_image_cache_is_bounded_and_least_recently_used_goes_first():
    cache = ImageCache(max_images=3, max_bytes=10**9)
    ids = [cache.put(bytes([i]), np.zeros((2, 2, 3), np.float32)) for i in range(3)]
    assert cache.get(ids[0]) is not None  # touch the oldest
    cache.put(b"new", np.zeros((2, 2, 3), np.float32))
    assert cache.get(ids[1]) is None and cache.get(ids[0]) is not None and len(cache.items) == 3
    small = ImageCache(max_images=10, max_bytes=100)
    for i in range(5):
        small.put(bytes([i]), np.zeros((1, 10, 1), np.float32))  # 40 bytes each: two fit
    assert len(small.items) == 2


def test_cached_maps_are_bounded_per_image_and_go_with_their_image():
    cache = ImageCache(max_images=2, max_bytes=10**9, maps_per_image=3)
    key = cache.put(b"a", np.zeros((2, 2, 3), np.float32))
    ids = [cache.keep_map(key, np.full((2, 2), i, np.uint8)) for i in range(4)]
    assert cache.get_map(key, ids[0]) is None and [cache.get_map(key, i)[0][0, 0] for i in ids[1:]] == [1, 2, 3]
    cache.put(b"b", np.zeros((2, 2, 3), np.float32))
    cache.put(b"c", np.zeros((2, 2, 3), np.float32))  # drops "a" and its maps
    assert cache.get(key) is None and cache.get_map(key, ids[3]) is None and key not in cache.maps


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
