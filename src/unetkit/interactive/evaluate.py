"""`unetkit evaluate CKPT --clicks 20`: the field's clicks-to-IoU protocol (RITM) on every pair.

Per image: the evaluation clicker (clicks.next_click) places up to N clicks, the model redraws the mask
after each (probability above the model's click threshold, RITM's 0.49), and IoU (ignore pixels left
out) is recorded. NoC@85/90: the first click reaching that IoU, or N; NoF@90: images that never reach
0.90. Reports: per_image.csv, iou_vs_clicks.png, worst.png (with the clicks drawn) and summary.json."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from unetkit import plots
from unetkit.config import EvaluateConfig
from unetkit.data.imageio import IGNORE
from unetkit.infer.evaluation import default_out, eval_dataset
from unetkit.infer.inference import foreground
from unetkit.infer.predict import Segmenter
from unetkit.interactive.clicks import clicks_to_reach, iou, next_click
from unetkit.interactive.predictor import ClickPredictor


def simulate(predictor, image: torch.Tensor, gt: np.ndarray, ignore: np.ndarray, clicks: int, zoom_in=False):
    """IoU after each of `clicks` clicks on one image, and the session (its clicks and final mask)."""
    session = predictor.session(image, zoom_in=zoom_in)
    pred = np.zeros_like(gt)
    clicked = np.zeros_like(gt)
    ious = []
    for _ in range(clicks):
        click = next_click(pred, gt, ignore, clicked)
        if click is not None:
            clicked[click.y, click.x] = True
            session.add(click)
        pred = foreground(session.probs, predictor.threshold)
        ious.append(iou(pred, gt, ignore))
    return np.array(ious), session


def object_and_ignore(mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Encoded mask -> (object: every labelled non-background pixel, ignore)."""
    m = mask.numpy()
    return (m > 0) & (m != IGNORE), m == IGNORE


def summarize(all_ious: np.ndarray, clicks: int) -> dict:
    """(images, clicks) IoUs -> the protocol's numbers."""
    noc85 = [clicks_to_reach(r, 0.85, clicks) for r in all_ious]
    noc90 = [clicks_to_reach(r, 0.90, clicks) for r in all_ious]
    return {
        "num_images": len(all_ious),
        "max_clicks": clicks,
        "noc85": float(np.mean(noc85)),
        "noc90": float(np.mean(noc90)),
        "nof85": int(sum(not (r >= 0.85).any() for r in all_ious)),
        "nof90": int(sum(not (r >= 0.90).any() for r in all_ious)),
        "iou_at_clicks": [float(v) for v in all_ious.mean(0)],
    }


def evaluate_clicks(config: EvaluateConfig, progress: bool = True, seg: Segmenter | None = None) -> dict:
    """The protocol over the chosen pairs, with its reports. `seg`: the click model as the caller loaded
    it (deploy.engines.load for other engines); None loads it in PyTorch."""
    path = Path(config.checkpoint)
    seg = seg or Segmenter.load(path, config.device, config.precision, config.engine)
    predictor = ClickPredictor(seg, config.view_size, config.first_zoom)
    dataset, choice = eval_dataset(seg, config, path)
    rows, t0 = [], time.perf_counter()
    for i in tqdm(range(len(dataset)), desc=f"clicks {choice.split}", disable=not progress, unit="img"):
        image, mask = dataset[i]
        gt, ignore = object_and_ignore(mask)
        ious, session = simulate(predictor, image, gt, ignore, config.clicks, config.zoom_in)
        rows.append({"index": i, "image": str(dataset.pairs[i].image), "ious": ious, "clicks": session.clicks,
                     "mask": session.mask})  # fmt: skip
    seconds = time.perf_counter() - t0
    summary = {
        "checkpoint": str(path),
        "data": str(config.data),
        "split": choice.split,
        "notes": choice.notes,
        "zoom_in": config.zoom_in,
        "view_size": predictor.view_size,
        "first_zoom": predictor.first_zoom,
        "engine": seg.engine,
        **summarize(np.stack([r["ious"] for r in rows]), config.clicks),
        "seconds_per_click": seconds / max(1, len(rows) * config.clicks),
    }
    write_click_reports(dataset, rows, summary, config, default_out(config, choice.split + "-clicks"))
    return summary


def write_click_reports(dataset, rows: list[dict], summary: dict, config: EvaluateConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    n = config.clicks
    with (out / "per_image.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "noc85", "noc90", *[f"iou_{k}" for k in range(1, n + 1)]])
        for r in rows:
            noc = [clicks_to_reach(r["ious"], t, n) for t in (0.85, 0.90)]
            w.writerow([r["image"], *noc, *[f"{v:.4f}" for v in r["ious"]]])
    iou_curve(summary["iou_at_clicks"], out / "iou_vs_clicks.png")
    worst = sorted(rows, key=lambda r: (clicks_to_reach(r["ious"], 0.90, n), -r["ious"].mean()), reverse=True)
    samples, titles = [], []
    for r in worst[: config.worst]:
        image, mask = dataset[r["index"]]
        samples.append((draw_clicks(plots.to_rgb_uint8(image), r["clicks"]), mask.numpy(), r["mask"]))
        titles.append(f"{Path(r['image']).name}  NoC@90 {clicks_to_reach(r['ious'], 0.90, n)}  "
                      f"IoU@{n} {r['ious'][-1]:.3f}")  # fmt: skip
    plots.grid(samples, 2, out / "worst.png", titles)


def iou_curve(means: list[float], path: Path) -> None:
    plt = plots._plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(range(1, len(means) + 1), means, marker="o")
    ax.axhline(0.85, ls=":", c="gray")
    ax.axhline(0.90, ls="--", c="gray")
    ax.set(xlabel="clicks", ylabel="mean IoU", ylim=(0, 1), xticks=range(1, len(means) + 1, 2))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def draw_clicks(rgb: np.ndarray, clicks) -> np.ndarray:
    """Green dots for positive clicks, red for negative, each with a white ring."""
    out = rgb.copy()
    h, w = out.shape[:2]
    r = max(3, round(max(h, w) / 100))
    yy, xx = np.mgrid[:h, :w]
    for c in clicks:
        d2 = (yy - c.y) ** 2 + (xx - c.x) ** 2
        out[d2 <= (r + 1) ** 2] = 255
        out[d2 <= r**2] = (40, 200, 40) if c.positive else (220, 40, 40)
    return out
