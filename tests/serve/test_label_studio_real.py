"""Issue 46 item 3: unetkit's backend inside a real Label Studio 1.23 (its own cached venv, sqlite, offline,
loopback). Through Label Studio's API: a project with BrushLabels + smart KeyPointLabels, the backend
connected, three images uploaded; then (a) the pre-annotations Label Studio stores decode (with
label-studio-sdk's converter) to exactly unetkit's own masks, (b) an interactive request with two
keypoints comes back with the click model's mask, (c) two submitted annotations (K=2) make the backend
retrain and the model version Label Studio shows changes.

Run with `make test-label-studio` (`pytest -m labelstudio --label-studio`); CI runs it as its own step."""

import io
import json
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from label_studio_server import Api, label_studio
from serving import free_port, running_server

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="mask" toName="image"><Label value="Object" background="#ff0000"/></BrushLabels>
  <KeyPointLabels name="click" toName="image" smart="true">
    <Label value="Object" smart="true" background="#00ff00"/>
  </KeyPointLabels>
</View>"""


def png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def decode(region) -> np.ndarray:
    from label_studio_sdk.converter.brush import decode_rle

    h, w = region["original_height"], region["original_width"]
    return decode_rle(region["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 0


def brush_region(mask) -> dict:
    from unetkit.data.formats.labelstudio import mask_to_rle

    h, w = mask.shape
    value = {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": ["Object"]}
    return {"type": "brushlabels", "from_name": "mask", "to_name": "image", "original_width": w, "original_height": h,
            "image_rotation": 0, "value": value}  # fmt: skip


def wait(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(2)
    pytest.fail(f"{what} within {seconds:.0f} s")


def tiny_click_model(data, out) -> str:
    """A tiny click model two steps from random weights: any retrain on real masks beats it, so the model
    version Label Studio shows must change after one (a well-trained model may rightly keep its place)."""
    from conftest import LEARN_FLAGS
    from unetkit.cli import main

    assert main(["train", "--data", str(data), "--out", str(out), *LEARN_FLAGS, "--interactive", "--max-steps", "2",
                 "--sample-every", "0"]) == 0  # fmt: skip
    return str(out / "checkpoints" / "last.pt")


def test_unetkit_inside_a_real_label_studio(learn_dir, tmp_path):
    from unetkit.infer.inference import foreground
    from unetkit.infer.predict import Segmenter
    from unetkit.interactive.clicks import Click
    from unetkit.interactive.predictor import ClickPredictor

    folder = learn_dir / "test"  # pictures the click model never trained on
    # three pictures, the first two with 5 objects of >= 50 px between them (a retrain needs 5 masks)
    names = sorted(p.name for p in (folder / "images").iterdir())[1:4]
    pictures = {n: np.asarray(Image.open(folder / "images" / n).convert("RGB")) for n in names}
    truths = {n: np.asarray(Image.open(folder / "masks" / (n.rsplit(".", 1)[0] + ".png"))) > 0 for n in names}
    model = tiny_click_model(learn_dir, tmp_path / "tiny")
    seg = Segmenter.load(model)
    predictor = ClickPredictor(seg)
    t0 = time.monotonic()
    port = free_port()
    with label_studio(tmp_path / "ls", port) as ls_url:
        api = Api(ls_url)
        flags = ["--label-studio-url", ls_url, "--api-key", "unetkit-test-token-0123456789", "--state",
                 str(tmp_path / "state"), "--retrain-every", "2", "--retrain-minutes", "1"]  # fmt: skip
        with running_server(model, *flags, command="label-studio") as (backend_url, _):
            project = api.call("POST", "/api/projects", {"title": "unetkit", "label_config": CONFIG})
            ml = api.call("POST", "/api/ml", {"project": project["id"], "url": backend_url, "title": "unetkit",
                                              "is_interactive": True, "auto_update": True})  # fmt: skip
            assert ml["state"] == "CO", ml  # connected: /health and /setup answered
            version0 = ml["model_version"]
            api.call("POST", "/api/webhooks", {"project": project["id"], "url": backend_url + "/webhook",
                                                "send_payload": True, "send_for_all_actions": False,
                                                "actions": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED",
                                                            "ANNOTATIONS_DELETED"]})  # fmt: skip
            for n in names:
                api.call("POST", f"/api/projects/{project['id']}/import", files={n: png(pictures[n])})
            tasks = api.call("GET", f"/api/tasks?project={project['id']}")["tasks"]
            tasks = {n: next(t for t in tasks if t["data"]["image"].endswith(n)) for n in names}

            # (a) pre-annotations: the click model's automatic mask, stored by Label Studio
            api.call("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project['id']}",
                     {"selectedItems": {"all": True, "excluded": []}})  # fmt: skip
            for n, task in tasks.items():
                stored = api.call("GET", f"/api/predictions?task={task['id']}")
                own = foreground(predictor.probs(seg.to_tensor(pictures[n]), []), predictor.threshold)
                assert stored and np.array_equal(decode(stored[0]["result"][0]), own), n

            # (b) two smart keypoints through Label Studio's interactive-annotating API
            n = names[0]
            h, w = truths[n].shape
            ys, xs = np.nonzero(truths[n])
            inside, outside = (int(ys.mean()), int(xs.mean())), (1, 1)
            context = {"result": [
                {"type": "keypointlabels", "from_name": "click", "to_name": "image", "original_width": w,
                 "original_height": h, "is_positive": positive, "value": {"x": (x + 0.5) * 100 / w,
                 "y": (y + 0.5) * 100 / h, "width": 1, "keypointlabels": ["Object"]}}
                for (y, x), positive in ((inside, True), (outside, False))]}  # fmt: skip
            t = time.perf_counter()
            answer = api.call("POST", f"/api/ml/{ml['id']}/interactive-annotating",
                              {"task": tasks[n]["id"], "context": context})  # fmt: skip
            round_trip = time.perf_counter() - t
            session = predictor.session(pictures[n], zoom_in=True)
            for (y, x), positive in ((inside, True), (outside, False)):
                session.add(Click(y + 0.5, x + 0.5, positive))
            assert np.array_equal(decode(answer["data"]["result"][0]), session.mask.astype(bool))

            # (c) two submitted annotations (each object of the picture a region) make the backend retrain
            for n in names[:2]:
                labels, count = ndimage.label(truths[n])
                result = [brush_region(labels == k) for k in range(1, count + 1) if (labels == k).sum() >= 50]
                api.call("POST", f"/api/tasks/{tasks[n]['id']}/annotations", {"result": result})
            state = tmp_path / "state" / ".unetkit" / "state.json"
            history = wait(lambda: state.is_file() and json.loads(state.read_text())["history"], 240,
                           "a retrain finished")  # fmt: skip
            assert history[-1]["outcome"] == "accepted", history
            shown = api.call("GET", f"/api/ml/{ml['id']}")["model_version"]
            assert shown != version0 and shown == "unetkit-v2"
            health = json.loads(urllib.request.urlopen(backend_url + "/health").read())
            assert health["model_version"] == "unetkit-v2"
    print(f"label studio end-to-end: {time.monotonic() - t0:.0f} s; interactive round trip {round_trip * 1000:.0f} ms")
