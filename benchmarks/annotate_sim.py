"""A simulated annotator on `unetkit annotate` (issue 22, item 4): the benchmark starts the labelling
server as a user does and drives its HTTP API as a person would. For each image in the order the page
gives (after each accept: the next unlabelled image of the current order; while a retrain runs it goes on
labelling, but at most --every images past the retrain's start before waiting for it, as a person clicking
every 1-2 s would), RITM's clicker clicks on the
current errors (POST /v1/interactive, image and previous map by id, as the page) until IoU >= 0.90 or 20 clicks,
then accepts the mask those clicks produced (the ground truth stands only for the person's eye).
Learning on (`--learn`, retrains every --every masks, --minutes each) against off, same order, same
starting model, on domains the shipped click model never saw:

    camvid-cars   the largest car of each CamVid test image (>= 1,500 px), one image per car
    isbi-cells    4 cells (connected components of the cell class, 500-20,000 px) of each ISBI slice,
                  the slice copied once per cell

    python benchmarks/annotate_sim.py --domain camvid-cars --images 100 [--every 10] [--minutes 3]
                                      [--think 1] [--retrain-threads 2]   # a person's pace; idle cores
                                      [--no-zoom-in]   # annotate without RITM's zoom-in
    python benchmarks/annotate_sim.py --table        # rewrite the RESULTS.md section and the plot

Rows (one per image) go to benchmarks/annotate_sim.jsonl.gz (gzip: the per-click times made it over
1 MiB); the summary compares clicks per image over the
second half of the images (and with learning off's clicks on those same images: re-ranking by a retrained
model changes which images come late), with the retrains' minutes and the time per click while a retrain ran."""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import itertools
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from common import header, machine, write_section  # noqa: E402

HERE = Path(__file__).parent
SHARED = HERE.parent.parent / "shared" / "data"
ROWS = HERE / "annotate_sim.jsonl.gz"  # each run appends a gzip member; reading joins them
FIRST = HERE / "annotate_sim_first_recipe.jsonl"  # learning on with the first recipe (lr 1e-3, IoU@1..5 gate)
PLOT = HERE / "annotate_sim.png"
CAR = 8  # CamVid's class index of car (SOURCE.md)
RUN_COMMAND = "python benchmarks/annotate_sim.py --domain D --images 100 --every 10 --minutes 3 --modes off,on"


def camvid_car_masks():
    """(image path, car mask): the largest car (>= 1,500 px) of each CamVid test image that has one."""
    for mask_path in sorted((SHARED / "camvid" / "test" / "masks").glob("*.png")):
        labels, k = ndimage.label(np.asarray(Image.open(mask_path)) == CAR)
        sizes = np.bincount(labels.ravel())[1:]
        if k and sizes.max() >= 1500:
            image = next((SHARED / "camvid" / "test" / "images").glob(mask_path.stem + ".*"))
            yield image, labels == 1 + int(np.argmax(sizes))


def camvid_cars(out: Path, gt: Path, n: int) -> None:
    for image, mask in itertools.islice(camvid_car_masks(), n):
        (out / image.name).symlink_to(image.resolve())
        Image.fromarray(mask.astype(np.uint8) * 255).save(gt / f"{image.stem}.png")


def isbi_cell_masks(per_slice: int = 4):
    """(name, slice image path, cell mask) for `per_slice` seeded cells (500-20,000 px) of each ISBI train
    slice, in slice order: the isbi-cells domain (click_table.py scores the same objects)."""
    rng = np.random.default_rng(0)
    for mask_path in sorted((SHARED / "isbi2012_em" / "train" / "masks").glob("*.png"), key=lambda p: int(p.stem)):
        labels, k = ndimage.label(np.asarray(Image.open(mask_path)) > 127)
        sizes = np.bincount(labels.ravel())
        cells = [c for c in range(1, k + 1) if 500 <= sizes[c] <= 20_000]
        image = SHARED / "isbi2012_em" / "train" / "images" / mask_path.name
        for j, c in enumerate(rng.choice(cells, min(per_slice, len(cells)), replace=False)):
            yield f"slice{int(mask_path.stem):02d}_cell{j}", image, labels == c


def isbi_cells(out: Path, gt: Path, n: int, per_slice: int = 4) -> None:
    for count, (name, image, mask) in enumerate(isbi_cell_masks(per_slice), 1):
        Image.open(image).convert("RGB").save(out / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(gt / f"{name}.png")
        if count >= n:
            return


def mixed(out: Path, gt: Path, n: int) -> None:
    """A folder that is not one domain: coco320's held-out objects (pictures no model trained on),
    GrabCut photos, CamVid cars and ISBI cells, interleaved one of each in turn (issue 45, item 6)."""
    from click_mix import coco_objects, grabcut_objects

    coco = ((p, m) for p, m, _, _ in coco_objects(every=1))
    grabcut = ((p, m) for p, m, _, _ in grabcut_objects())  # its 128 band counted as background
    cells = ((image, mask) for _, image, mask in isbi_cell_masks())
    sources = {"coco": coco, "grabcut": grabcut, "car": camvid_car_masks(), "cell": cells}
    for k in range(n):
        kind = list(sources)[k % len(sources)]
        image, mask = next(sources[kind])
        name = f"{k:03d}_{kind}"
        Image.open(image).convert("RGB").save(out / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(gt / f"{name}.png")


DOMAINS = {"camvid-cars": camvid_cars, "isbi-cells": isbi_cells, "mixed": mixed}


def model_id(model: str) -> str:
    """The model a run started from, told apart when a shipped name gets new weights: builtin:NAME@sha."""
    card = Path(__file__).resolve().parents[1] / "src" / "unetkit" / "weights" / f"{model.split(':')[-1]}.json"
    if model.startswith("builtin:") and card.is_file():
        return f"{model}@{json.loads(card.read_text())['sha256'][:8]}"
    return model


class Client:
    """The few HTTP calls the page makes, with multipart bodies built by hand (no extra dependency)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=600) as r:
            body = r.read()
            return json.loads(body) if r.headers.get_content_type() == "application/json" else body

    def post(self, path: str, fields: dict, files: dict) -> dict:
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields.items()]  # fmt: skip
        for k, data in files.items():
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{k}.png"\r\n'
            parts.append(head.encode() + b"Content-Type: image/png\r\n\r\n" + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        req = urllib.request.Request(
            self.url + path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read())


def png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def label_one(client: Client, index: int, gt_dir: Path, think: float = 0.0, max_clicks: int = 20) -> dict:
    """One image as the person would label it: clicks until IoU >= 0.90 (or 20), then accept; `think`
    seconds pass before each click (the person looking), 0: back to back."""
    from unetkit.api import click_iou, next_click

    item = client.get(f"/v1/annotate/items/{index}")
    if item["has_mask"] and item["next_unlabelled"] is not None:  # a retrain re-ranked the list meanwhile
        index = item["next_unlabelled"]
        item = client.get(f"/v1/annotate/items/{index}")
    gt = np.asarray(Image.open(gt_dir / (Path(item["name"]).stem + ".png"))) > 0
    learning = client.get("/v1/annotate/learning")
    t0 = time.perf_counter()
    out = client.post("/v1/interactive", {"clicks": "[]"}, {"image": client.get(f"/v1/annotate/items/{index}/image")})
    times, clicks = [time.perf_counter() - t0], []
    mask = decode(out["mask_png_base64"])
    clicked = np.zeros_like(gt)
    while click_iou(mask, gt) < 0.9 and len(clicks) < max_clicks:
        c = next_click(mask, gt, clicked=clicked)
        if c is None:
            break
        clicked[int(c.y), int(c.x)] = True
        clicks.append(c.to_dict())
        time.sleep(think)
        t0 = time.perf_counter()
        fields = {"image_id": out["image_id"], "clicks": json.dumps(clicks), "prev_id": out["probs_id"]}
        out = client.post("/v1/interactive", {**fields, "return_probs": "false"}, {})  # as the page sends it
        times.append(time.perf_counter() - t0)
        mask = decode(out["mask_png_base64"])
    done = client.post(f"/v1/annotate/items/{index}/mask", {"name": item["name"]}, {"mask": png(mask)})
    return {"name": item["name"], "clicks": len(clicks), "iou": round(click_iou(mask, gt), 4),
            "ms_per_click": [round(t * 1000, 1) for t in times[1:]], "ms_first": round(times[0] * 1000, 1),
            "model_version": learning["version"], "model": out.get("model"),
            "retrain_running": learning.get("running", False),
            "next": done.get("next_unlabelled"), "retrain_started": done.get("retrain_started", False)}  # fmt: skip


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64)))) > 0


@dataclass(frozen=True)
class Protocol:
    every: int = 10  # --retrain-every
    minutes: float = 3.0  # --retrain-minutes
    model: str = "builtin:clicks"
    think: float = 0.0  # seconds before each click; 0: back to back (the retrains get the least CPU)
    threads: int = 0  # --retrain-threads; 0: annotate's default
    zoom_in: bool = True  # annotate's --zoom-in (its default); runs before 2026-12-06 15:00 had none
    keep_base: float = 0.5  # annotate's --retrain-keep-base; runs before 2026-12-07 16:00 had none (0)
    heldout: str = "latest+earlier"  # annotate's --retrain-heldout; runs before 2026-12-07 19:00: "latest"
    route: bool = True  # annotate's --retrain-route; runs before 2026-12-07 22:00 had none (their rows: no "route")


def simulate(domain: str, n: int, learn: bool, proto: Protocol, work: Path) -> list[dict]:
    folder, gt = work / domain / "folder", work / domain / "gt"
    if not gt.is_dir():
        for d in (folder / "images", gt):
            d.mkdir(parents=True)
        DOMAINS[domain](folder / "images", gt, n)
    shutil.rmtree(folder / "masks", ignore_errors=True)
    shutil.rmtree(folder / ".unetkit", ignore_errors=True)
    port = free_port()
    flags = ["--learn" if learn else "--no-learn", "--retrain-every", str(proto.every)]
    flags += ["--retrain-minutes", str(proto.minutes), "--model", proto.model, "--port", str(port)]
    flags += ["--retrain-threads", str(proto.threads)] if proto.threads else []
    flags += ["--zoom-in" if proto.zoom_in else "--no-zoom-in", "--retrain-keep-base", str(proto.keep_base)]
    flags += ["--retrain-heldout", proto.heldout, "--retrain-route" if proto.route else "--no-retrain-route"]
    cmd = [sys.executable, "-m", "unetkit", "annotate", str(folder), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=(work / f"{domain}-{learn}.log").open("w"))
    client, rows = Client(f"http://127.0.0.1:{port}"), []
    try:
        wait_for(client, proc)
        index, ahead = 0, 0
        for k in range(len(list(gt.iterdir()))):
            ahead = pace(client, ahead, proto.every) if learn else 0
            row = label_one(client, index, gt, proto.think)
            rows.append({"domain": domain, "learn": learn, "k": k, **row})
            print(json.dumps(rows[-1]), flush=True)
            if row["next"] is None:
                break
            index = row["next"]
        while learn and client.get("/v1/annotate/learning")["running"]:
            time.sleep(2)
        history = json.loads((folder / ".unetkit" / "state.json").read_text())["history"] if learn else []
    finally:
        proc.terminate()
        proc.wait(30)
    return [*rows, {"domain": domain, "learn": learn, "retrains": history, **asdict(proto),
                    "machine": machine()["cpu"], "date": time.strftime("%Y-%m-%d %H:%M"),
                    "model_id": model_id(proto.model)}]  # fmt: skip


def pace(client: Client, ahead: int, every: int) -> int:
    """A person labels slower than this loop: it keeps clicking while a retrain runs (so the time per
    click during retrains is measured) but goes at most `every` images past a retrain's start before
    waiting for it, as a person at ~1-2 s per click would; returns the images labelled since then."""
    running = client.get("/v1/annotate/learning")["running"]
    if not running:
        return 0
    while ahead >= every and client.get("/v1/annotate/learning")["running"]:
        time.sleep(1)
    return ahead + 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(client: Client, proc, timeout: float = 600) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"unetkit annotate exited with {proc.returncode}")
        try:
            client.get("/health")
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("unetkit annotate did not start")


HEAD = (
    "| domain | learning | images | clicks/image, all | clicks/image, 2nd half | the same images, learning off | "
    "retrains (accepted) | retrain minutes, sum (max) | ms/click, no retrain | ms/click, during a retrain | run on |"
)


def median(values: list[float]) -> str:
    return f"{np.median(values):.0f}" if values else "-"


def runs(rows: list[dict]) -> list[tuple[list[dict], dict]]:
    """(image rows, run info) per simulated run: a run's image rows are followed by its info row."""
    out, imgs = [], []
    for r in rows:
        if "retrains" in r:
            out.append((imgs, r))
            imgs = []
        elif "clicks" in r:
            imgs.append(r)
    return out


def modes(rows: list[dict], first: list[dict]) -> list[tuple[str, str, list[dict], dict]]:
    """(domain, label, image rows, run info) per run, by domain: off, on, and on with the first recipe;
    runs on other machines are rows of their own (the table names the machine)."""
    out = []
    for domain in DOMAINS:
        for label, source, learn in (("off", rows, False), ("on", rows, True), ("on, first recipe", first, True)):
            for imgs, info in runs(source):
                if info["domain"] == domain and info["learn"] == learn and imgs:
                    out.append((domain, label + protocol_words(info), imgs, info))
    return out


def protocol_words(info: dict) -> str:
    """What a run did unlike the default protocol (back-to-back clicks, annotate's retrain threads)."""
    words = [f"{info['threads']} retrain threads"] if info.get("threads") else []
    words += [f"{info['think']:g} s before each click"] if info.get("think") else []
    words += ["zoom-in"] if info.get("zoom_in") else []
    words += [f"keep base {info['keep_base']:g}"] if info.get("learn") and "keep_base" in info else []
    words += [f"held out: {info['heldout']}"] if info.get("learn") and "heldout" in info else []
    rule = f" ({info['route_rule']})" if info.get("route_rule") else ""  # none: all 3 nearest, cosine >= 0.97
    words += [f"routed{rule}"] if info.get("learn") and info.get("route") else []
    words += [f"{info['model_id']}, {info['every']}/{info['minutes']:g} min"] if info.get("model_id") else []
    return "".join(f", {w}" for w in words)


def same_images_off(rows: list[dict], imgs: list[dict], info: dict) -> str:
    """Learning off's clicks per image on the images a learning-on run labelled in its second half,
    from the off run of the same domain on the same machine: the fair comparison, as re-ranking by
    the retrained model changes which images come late."""
    alike = ("domain", "machine", "zoom_in", "model_id")  # zoom-in and the model change the clicks too
    offs = [i for i, o in runs(rows) if not o["learn"] and all(o.get(k) == info.get(k) for k in alike)]
    if not offs:
        return "-"
    off = {r["name"]: r["clicks"] for r in offs[-1]}
    late = [off.get(r["name"]) for r in imgs[len(imgs) // 2 :]]
    return f"{np.mean(late):.2f}" if late and None not in late else "-"


def summary(rows: list[dict], first: list[dict]) -> list[str]:
    lines = [HEAD, "|---" * 11 + "|"]
    for domain, label, imgs, info in modes(rows, first):
        clicks = [r["clicks"] for r in imgs]
        same = same_images_off(rows, imgs, info) if info["learn"] else "-"
        quiet = [t for r in imgs if not r["retrain_running"] for t in r["ms_per_click"]]
        busy = [t for r in imgs if r["retrain_running"] for t in r["ms_per_click"]]
        retrains = info["retrains"]
        minutes = [h["seconds"] / 60 for h in retrains]
        accepted = sum(h["outcome"] == "accepted" for h in retrains)
        late = f"{np.mean(clicks[len(clicks) // 2 :]):.2f}"
        cells = [domain, label, str(len(imgs)), f"{np.mean(clicks):.2f}", late, same,
                 f"{len(retrains)} ({accepted})", f"{sum(minutes):.1f} ({max(minutes, default=0):.1f})",
                 median(quiet), median(busy), f"{info.get('machine', '-')}, {info.get('date', '-')[:10]}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot(rows: list[dict], first: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DOMAINS), figsize=(13, 4.2))
    for domain, label, imgs, info in modes(rows, first):
        ax = axes[list(DOMAINS).index(domain)]
        clicks = [r["clicks"] for r in imgs]
        smooth = np.convolve(clicks, np.ones(10) / 10, mode="valid") if len(clicks) >= 10 else clicks
        cpu = info.get("machine", "").split(" (")[-1].rstrip(")")  # e.g. "AVX2, no bf16"
        x = np.arange(len(smooth)) + (10 if len(clicks) >= 10 else 1)
        ax.plot(x, smooth, label=f"learning {label} ({cpu})", lw=2.2 if info.get("zoom_in") else 1.0)
    for ax, domain in zip(axes, DOMAINS, strict=True):
        ax.set(title=domain, xlabel="images labelled", ylabel="clicks per image (mean of 10)")
        if ax.get_lines():  # below the plot: inside, eight runs hide the lines
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    fig.savefig(PLOT, dpi=90, bbox_inches="tight")


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with gzip.open(path, "rt") if path.suffix == ".gz" else path.open() as f:
        return [json.loads(line) for line in f]


def table(command: str) -> None:
    rows, first = (read_rows(f) for f in (ROWS, FIRST))
    plot(rows, first)
    about = __doc__.split("\n\n")[0].replace("\n", " ")
    title = "## Labelling with learning on and off (cpu, simulated annotator)"
    text = [title, "", header(command), about, "", *summary(rows, first), "", f"![clicks per image]({PLOT.name})"]
    write_section("annotate-sim", "\n".join(text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", choices=list(DOMAINS), action="append")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--model", default="builtin:clicks")
    ap.add_argument("--modes", default="off,on", help="learning off, on, or both (in this order)")
    ap.add_argument("--think", type=float, default=0.0, help="seconds before each click (0: back to back)")
    ap.add_argument("--retrain-threads", type=int, default=0, help="annotate's --retrain-threads (0: its default)")
    ap.add_argument("--zoom-in", action=argparse.BooleanOptionalAction, default=True, help="annotate's --zoom-in")
    ap.add_argument(
        "--keep-base",
        type=float,
        default=None,
        help="annotate's --retrain-keep-base (default: its own, 0 with routing, 0.5 without)",
    )
    ap.add_argument("--route", action=argparse.BooleanOptionalAction, default=True, help="annotate's --retrain-route")
    ap.add_argument("--heldout", default="latest+earlier", help="annotate's --retrain-heldout")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    keep = args.keep_base if args.keep_base is not None else (0.0 if args.route else 0.5)  # annotate's default
    proto = Protocol(args.every, args.minutes, args.model, args.think, args.retrain_threads, args.zoom_in,
                     keep, args.heldout, args.route)  # fmt: skip
    if not args.table:
        with tempfile.TemporaryDirectory(prefix="annotate-sim-") as tmp:
            for domain in args.domain or list(DOMAINS):
                for mode in args.modes.split(","):
                    rows = simulate(domain, args.images, mode == "on", proto, Path(tmp))
                    with gzip.open(ROWS, "at") as f:
                        f.writelines(json.dumps(r) + "\n" for r in rows)
    # the header names what made the rows (each domain, learning off then on), not a --table rewrite
    table(RUN_COMMAND if args.table else "python benchmarks/annotate_sim.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
