"""One smart-click round trip through Label Studio and back (issue 46 item 5): Label Studio 1.23.2 (the
test's cached venv, offline, loopback) with `unetkit label-studio builtin:clicks` connected; a 480x360
photo (a GrabCut image when ../shared/data is there, else the demo's) uploaded as a task; then, in turns,
Label Studio's interactive-annotating API with two keypoints (what the labelling page sends), the same
request straight to the backend's /predict, and the two clicks in-process (ClickSession, the floor).
Median of --rounds each; the backend's threads are the machine's.

    python benchmarks/bench_label_studio.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from common import header, write_section  # noqa: E402
from label_studio_server import TOKEN, Api, label_studio  # noqa: E402
from serving import free_port, running_server  # noqa: E402

GRABCUT = HERE.parent.parent / "shared" / "data" / "grabcut" / "images"
CONFIG = """<View><Image name="image" value="$image"/>
<BrushLabels name="mask" toName="image"><Label value="Object"/></BrushLabels>
<KeyPointLabels name="click" toName="image" smart="true"><Label value="Object" smart="true"/></KeyPointLabels></View>"""


def photo() -> tuple[str, np.ndarray]:
    """A GrabCut photo at 480x360, or (without ../shared/data) a drawn one: a disc on a gradient."""
    if GRABCUT.is_dir():
        path = sorted(GRABCUT.iterdir())[0]
        return path.stem + ".png", np.asarray(Image.open(path).convert("RGB").resize((480, 360)))
    yy, xx = np.mgrid[:360, :480]
    img = np.stack([xx * 255 // 480, yy * 255 // 360, np.full_like(xx, 90)], -1).astype(np.uint8)
    img[(yy - 180) ** 2 + (xx - 240) ** 2 < 90**2] = (230, 200, 40)
    return "drawn.png", img


def context(h: int, w: int) -> dict:
    points = (((h * 0.5, w * 0.5), True), ((h * 0.1, w * 0.1), False))
    return {"result": [{"type": "keypointlabels", "from_name": "click", "to_name": "image", "original_width": w,
                        "original_height": h, "is_positive": pos,
                        "value": {"x": x * 100 / w, "y": y * 100 / h, "width": 1, "keypointlabels": ["Object"]}}
                       for (y, x), pos in points]}  # fmt: skip


def median_ms(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    from unetkit.api import ClickPredictor, load_segmenter

    name, array = photo()
    h, w = array.shape[:2]
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    seg = load_segmenter("builtin:clicks")
    predictor = ClickPredictor(seg)
    with tempfile.TemporaryDirectory() as tmp, label_studio(Path(tmp) / "ls", free_port()) as ls_url:
        api = Api(ls_url)
        flags = ["--label-studio-url", ls_url, "--api-key", TOKEN, "--state", str(Path(tmp) / "state"), "--no-learn"]
        with running_server("builtin:clicks", *flags, command="label-studio") as (backend, _):
            project = api.call("POST", "/api/projects", {"title": "bench", "label_config": CONFIG})
            ml = api.call("POST", "/api/ml", {"project": project["id"], "url": backend, "is_interactive": True})
            api.call("POST", f"/api/projects/{project['id']}/import", files={name: buf.getvalue()})
            task = api.call("GET", f"/api/tasks?project={project['id']}")["tasks"][0]
            ctx = context(h, w)
            through = {"task": task["id"], "context": ctx}
            direct = json.dumps({"tasks": [task], "params": {"context": ctx}}).encode()

            def via_ls():
                assert api.call("POST", f"/api/ml/{ml['id']}/interactive-annotating", through)["data"]["result"]

            def to_backend():
                req = urllib.request.Request(backend + "/predict", direct, {"Content-Type": "application/json"})
                assert json.loads(urllib.request.urlopen(req).read())["results"][0]["result"]

            def in_process():
                session = predictor.session(array, zoom_in=True)
                for r in ctx["result"]:
                    from unetkit.api import Click

                    v = r["value"]
                    session.add(Click(v["y"] * h / 100, v["x"] * w / 100, r["is_positive"]))

            for fn in (via_ls, to_backend, in_process):
                fn()  # warm
            rows = {"through Label Studio": median_ms(via_ls, args.rounds),
                    "straight to the backend's /predict": median_ms(to_backend, args.rounds),
                    "in process (ClickSession, two clicks)": median_ms(in_process, args.rounds)}  # fmt: skip
    lines = ["| path of one request with two smart keypoints | median ms |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in rows.items()]
    floor = rows["in process (ClickSession, two clicks)"]
    ratio = rows["through Label Studio"] / floor
    text = (f"{header('python benchmarks/bench_label_studio.py ' + ' '.join(sys.argv[1:]))}\n"
            f"A {w}x{h} photo ({name}), builtin:clicks, zoom-in on; {args.rounds} rounds each.\n\n"
            + "\n".join(lines) + f"\n\nThrough Label Studio: {ratio:.1f}x the model's own two clicks.\n")  # fmt: skip
    print(text)
    write_section("label-studio-roundtrip", text)


if __name__ == "__main__":
    main()
