"""unetkit as a Label Studio ML backend (issue 46), driven through its HTTP protocol in-process, with
task images on a loopback server that asks for the API key as Label Studio's does: a config is read at
/setup (one without a brush tag is an error Label Studio shows), smart keypoints give exactly the click
model's mask in Label Studio's RLE, a segmentation model pre-labels by class name, and submitted,
updated and deleted annotations keep the accepted masks on disk current."""

import contextlib
import http.server
import threading

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from unetkit.data.formats.labelstudio import result_masks, rle_decode  # noqa: E402
from unetkit.errors import ConfigError  # noqa: E402
from unetkit.infer.predict import Segmenter  # noqa: E402
from unetkit.interactive.clicks import Click  # noqa: E402
from unetkit.interactive.predictor import ClickPredictor  # noqa: E402
from unetkit.serve.http import Limits, Served  # noqa: E402
from unetkit.serve.ls_backend import Backend, create_backend  # noqa: E402
from unetkit.serve.ls_config import EXAMPLE, parse_config  # noqa: E402
from unetkit.serve.ls_store import AnnotationStore  # noqa: E402
from unetkit.serve.ls_tasks import Source, context_clicks  # noqa: E402
from unetkit.serve.routing import Row, signature  # noqa: E402

TOKEN = "secret-token"
SEG_CONFIG = EXAMPLE.replace('value="Object"', 'value="foreground"')


@contextlib.contextmanager
def image_server(folder):
    """Label Studio's /data/upload/ on loopback: files of `folder`, only with the API key."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(folder), **k)

        def do_GET(self):
            if self.headers.get("Authorization") != f"Token {TOKEN}":
                self.send_error(401)
                return
            self.path = self.path.removeprefix("/data/upload")
            super().do_GET()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def picture(path, size=(64, 64)):
    img = np.full((*size, 3), 30, np.uint8)
    img[16:44, 20:48] = (220, 200, 60)  # a bright object, as the demo data's
    Image.fromarray(img).save(path)
    return img


def client_for(open_client, checkpoint, state, url, limits=None):
    seg = Segmenter.load(checkpoint)
    backend = Backend(Served(seg), Source(url, TOKEN), limits or Limits(), AnnotationStore(state))
    return open_client(create_backend(backend)), backend, seg


def keypoint(x, y, positive=True):
    return {"type": "keypointlabels", "from_name": "click", "to_name": "image", "is_positive": positive,
            "original_width": 64, "original_height": 64,
            "value": {"x": x, "y": y, "width": 1, "keypointlabels": ["Object"]}}  # fmt: skip


def test_the_config_is_read_for_its_image_brush_and_keypoints():
    c = parse_config(EXAMPLE)
    assert (c.image, c.value, c.kind, c.output.name, c.output.labels) == ("image", "image", "brushlabels", "mask",
                                                                           ("Object",))  # fmt: skip
    assert c.clicks.name == "click" and c.label_for("object") == "Object" and c.label_for("other") == "Object"
    poly = parse_config('<View><Image name="im" value="$url"/><PolygonLabels name="p" toName="im">'
                        '<Label value="cell"/></PolygonLabels></View>')  # fmt: skip
    assert (poly.kind, poly.value, poly.clicks) == ("polygonlabels", "url", None)
    for bad, says in [
        ("<View><Image name='i' value='$i'/><Choices name='c' toName='i'/></View>", "BrushLabels"),
        ("<View>", "not valid XML"),
        ("<View><Text name='t' value='$t'/></View>", "no <Image>"),
    ]:
        with pytest.raises(ConfigError, match=says):
            parse_config(bad)


def test_keypoints_give_the_click_models_mask_in_label_studios_rle(open_client, click_run, tmp_path):
    picture(tmp_path / "a.png")
    with image_server(tmp_path) as url:
        client, backend, seg = client_for(open_client, click_run.best_checkpoint, tmp_path / "state", url)
        assert client.get("/health").json()["status"] == "UP"
        assert client.post("/setup", json={"project": "1", "schema": EXAMPLE}).json()["model_version"]
        task = {"id": 7, "data": {"image": "/data/upload/a.png"}}
        auto = client.post("/predict", json={"tasks": [task]}).json()["results"][0]["result"]  # no clicks yet
        p = ClickPredictor(seg)
        expect_auto = p.probs(seg.to_tensor(np.asarray(Image.open(tmp_path / "a.png"))), []) > p.threshold
        assert np.array_equal(result_masks({"result": auto})[0][1], expect_auto)  # the automatic mask
        backend.auto = False
        assert client.post("/predict", json={"tasks": [task]}).json()["results"][0]["result"] == []
        context = {"result": [keypoint(50.0, 45.0), keypoint(5.0, 5.0, positive=False)]}
        body = client.post("/predict", json={"tasks": [task], "params": {"context": context}}).json()
    region = body["results"][0]["result"][0]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Object"]
    assert (region["original_width"], region["original_height"], region["from_name"]) == (64, 64, "mask")
    session = ClickPredictor(seg).session(np.asarray(Image.open(tmp_path / "a.png")), zoom_in=True)
    for c in (Click(28.8, 32.0, True), Click(3.2, 3.2, False)):  # 45% / 50% / 5% of 64 px
        session.add(c)
    expect = session.mask.astype(bool)
    got = rle_decode(region["value"]["rle"], 64 * 64 * 4).reshape(64, 64, 4)[:, :, 3] > 0
    assert expect.any() and np.array_equal(got, expect)
    brush = pytest.importorskip("label_studio_sdk.converter.brush")  # Label Studio's own decoder agrees
    assert np.array_equal(brush.decode_rle(region["value"]["rle"]).reshape(64, 64, 4)[:, :, 3] > 0, expect)


def test_a_segmentation_model_pre_labels_every_class_the_config_names(open_client, trained_run, tmp_path):
    picture(tmp_path / "a.png")
    with image_server(tmp_path) as url:
        client, _, seg = client_for(open_client, trained_run.best_checkpoint, tmp_path / "state", url)
        assert client.post("/setup", json={"schema": SEG_CONFIG}).status_code == 200
        body = client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": "/data/upload/a.png"}}]}).json()
    [region] = body["results"][0]["result"]
    assert region["value"]["brushlabels"] == ["foreground"]
    expect = seg.predict(np.asarray(Image.open(tmp_path / "a.png"))) == 1
    assert np.array_equal(result_masks({"result": [region]})[0][1], expect)


def test_bad_configs_missing_keys_and_huge_images_are_errors_label_studio_shows(open_client, click_run, tmp_path):
    picture(tmp_path / "big.png", (300, 300))
    with image_server(tmp_path) as url:
        limits = Limits(max_pixels=10_000)
        client, backend, _ = client_for(open_client, click_run.best_checkpoint, tmp_path / "state", url, limits)
        r = client.post("/setup", json={"schema": "<View><Image name='i' value='$i'/></View>"})
        assert r.status_code == 400 and "BrushLabels" in r.json()["error"]
        client.post("/setup", json={"schema": EXAMPLE})
        context = {"result": [keypoint(50, 50)]}
        r = client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": "/data/upload/big.png"}}],
                                          "params": {"context": context}})  # fmt: skip
        assert r.status_code == 413 and "pixel limit" in r.json()["error"]
        backend.source.api_key = "wrong"
        r = client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": "/data/upload/big.png"}}],
                                          "params": {"context": context}})  # fmt: skip
        assert r.status_code == 502 and "401" in r.json()["error"] and "--api-key" in r.json()["error"]
    with pytest.raises(Exception, match="no Label Studio URL"):
        Source().resolve("/data/upload/1/a.png")
    with pytest.raises(Exception, match="only http"):
        Source("http://x").resolve("file:///etc/passwd")
    assert context_clicks({"result": [keypoint(150, -10)]}, 64, 64)[0] == [Click(0.0, 63.0, True)]  # kept inside
    neg = keypoint(50, 50)
    neg["value"]["keypointlabels"] = ["Negative"]  # a config whose labels say which points are negative
    clicks, label = context_clicks({"result": [neg, keypoint(25, 25)]}, 64, 64)
    assert [c.positive for c in clicks] == [False, True] and label == "Object"


def test_submitted_updated_and_deleted_annotations_keep_the_masks_current(open_client, click_run, tmp_path):
    picture(tmp_path / "a.png")
    square = np.zeros((64, 64), bool)
    square[16:44, 20:48] = True
    from unetkit.data.formats.labelstudio import mask_to_rle

    def region(mask):
        return {
            "type": "brushlabels",
            "from_name": "mask",
            "to_name": "image",
            "original_width": 64,
            "original_height": 64,
            "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": ["Object"]},
        }

    task = {"id": 3, "data": {"image": "/data/upload/a.png"}}
    with image_server(tmp_path) as url:
        client, backend, _ = client_for(open_client, click_run.best_checkpoint, tmp_path / "state", url)
        client.post("/setup", json={"schema": EXAMPLE})
        top = square.copy()
        top[30:] = False
        ann = {"id": 11, "result": [region(square), region(top)]}
        r = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "task": task, "annotation": ann})
        assert r.status_code == 201 and r.json()["kept"] == 2
        pairs = backend.store.pairs()
        assert [p[1].name for p in pairs] == ["task3_ann11_0.png", "task3_ann11_1.png"]
        assert np.array_equal(np.asarray(Image.open(pairs[1][1])) > 0, top)
        ann["result"] = [region(top)]  # updated: one region left
        client.post("/webhook", json={"action": "ANNOTATION_UPDATED", "task": task, "annotation": ann})
        assert [p[1].name for p in AnnotationStore(tmp_path / "state").pairs()] == ["task3_ann11_0.png"]  # on disk
        r = client.post("/webhook", json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 11}]})
        assert r.json()["removed"] == 1 and backend.store.pairs() == []
        assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}).json() == {"ignored": "PROJECT_UPDATED"}
        # Label Studio's Start Training: every annotated task, each with its latest annotation kept
        old = {"id": 20, "updated_at": "2026-01-01", "result": [region(square), region(top)]}
        new = {"id": 21, "updated_at": "2026-02-01", "result": [region(top)]}
        r = client.post("/train", json={"annotations": [{**task, "annotations": [old, new]}], "label_config": EXAMPLE})
        assert r.status_code == 201 and r.json()["kept"] == 1 and r.json()["started"] is False  # no learner here
        assert [p[1].name for p in backend.store.pairs()] == ["task3_ann21_0.png"]


def test_the_command_prints_a_config_and_a_restart_serves_the_last_accepted_model(
    open_client, click_run, tmp_path, capsys
):
    """`unetkit label-studio --config` prints a config the backend reads; started again on its state
    folder, the backend serves the model its last accepted retrain left (and says so as model_version)."""
    import json

    from unetkit.cli import build_parser, main
    from unetkit.commands.label_studio import build
    from unetkit.deploy.export import export_safetensors
    from unetkit.infer.checkpoint import load_model

    assert main(["label-studio", "--config"]) == 0
    assert parse_config(capsys.readouterr().out).output.labels == ("Object",)
    state = tmp_path / "state"
    model, meta = load_model(click_run.best_checkpoint)
    export_safetensors(model, meta, state / ".unetkit" / "models" / "v2.safetensors")
    grey = np.repeat(np.random.default_rng(0).normal(128, 30, (64, 64, 1)).clip(0, 255).astype(np.uint8), 3, 2)
    table = [Row("grey.png", signature(grey), base=5.0, tuned=2.0).to_dict()]  # the retrain's routing table
    (state / ".unetkit" / "state.json").write_text(json.dumps(
        {"version": 2, "model": "models/v2.safetensors", "accepted_at_retrain": 5, "history": [],
         "route": table}))  # fmt: skip
    args = build_parser().parse_args(["label-studio", "builtin:clicks", "--state", str(state), "--no-learn"])
    app = build(args)
    assert open_client(app).get("/health").json()["model_version"] == "unetkit-v2"
    backend = app.state.backend
    assert backend.served.seg.meta.model == meta.model  # the accepted model, not builtin:clicks
    # learning off now, the learnt model still answers only the pictures its table routes to it
    colour = np.zeros((64, 64, 3), np.uint8)
    colour[..., 0] = 200
    assert backend.served.pick(grey) is backend.served.seg
    assert backend.served.pick(colour) is backend.served.route.base is not backend.served.seg
