"""`unetkit evaluate`: a checkpoint on a dataset split, at original resolution, with reports."""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from unetkit import plots
from unetkit.config import DataConfig, build
from unetkit.data import SegmentationDataset, check_pairs, find_pairs, read_splits, split_pairs
from unetkit.engine import evaluate
from unetkit.imageio import DataError, MaskSpec
from unetkit.inference import logits_to_pred, predict_logits
from unetkit.predict import Segmenter, postprocess


def dataset_for(
    seg: Segmenter, data: str | Path, split: str, checkpoint_path: Path, skip_bad: bool = False
) -> SegmentationDataset:
    """The split's pairs: the run's splits.json when it covers this data folder, else the same
    seeded split the run made, read with the checkpoint's mask encoding."""
    saved = seg.meta.get("train_config", {}).get("data", {})
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    values = {k: v for k, v in saved.items() if k in fields}
    values.update(root=str(data), csv=None)
    if str(data).endswith(".csv"):
        values.update(root=None, csv=str(data))
    cfg = build(DataConfig, values)
    ms = seg.meta["mask_spec"]
    spec = MaskSpec(ms["mode"], ms["num_classes"], ms["ignore_value"], tuple(tuple(c) for c in ms["colors"]))
    splits_file = checkpoint_path.resolve().parent.parent / "splits.json"
    pairs = None
    if splits_file.is_file():
        saved_splits = read_splits(splits_file)
        root = Path(data).resolve()
        if all(root in p.image.resolve().parents for ps in saved_splits.values() for p in ps):
            pairs = saved_splits[split]
    if pairs is None:
        found, problems = find_pairs(cfg)
        pairs = split_pairs(found, cfg.split, cfg.split_seed)[split]
    if not pairs:
        raise DataError(f"{data}: the {split} split is empty; choose another --split")
    report = check_pairs(pairs, cfg, spec)
    if report.problems:
        if not skip_bad:
            raise DataError(
                "the data check found problems; fix them or pass --skip-bad:\n"
                + "\n".join(f"  {p}" for p in report.problems)
            )
        pairs = [p for p in pairs if str(p.image) not in report.bad_pairs]
    return SegmentationDataset(pairs, spec, seg.in_channels, None)


def evaluate_checkpoint(
    checkpoint_path: str | Path,
    data: str | Path,
    split: str = "test",
    out: str | Path | None = None,
    tta: bool = False,
    batch_size: int = 4,
    device: str = "auto",
    precision: str = "auto",
    skip_bad: bool = False,
    worst: int = 6,
    progress: bool = True,
    largest_component: bool = False,
    fill_holes: bool = False,
) -> dict:
    """Metrics over the split, plus per_image.csv, summary.json, confusion.png, worst.png in `out`."""
    checkpoint_path = Path(checkpoint_path)
    seg = Segmenter.load(checkpoint_path, device, precision)
    dataset = dataset_for(seg, data, split, checkpoint_path, skip_bad)
    classes = tuple(seg.classes)
    post = None
    if largest_component or fill_holes:
        post = functools.partial(postprocess, largest_component=largest_component, fill_holes=fill_holes)
    bar = tqdm(total=len(dataset), desc=f"evaluate {split}", disable=not progress, unit="img")
    result = evaluate(
        seg.model,
        dataset,
        seg.spec,
        seg.rt,
        classes,
        batch_size=batch_size,
        tta=tta,
        per_image=True,
        on_batch=bar.update,
        postprocess=post,
    )
    bar.close()
    s = result.scores
    summary = {
        "checkpoint": str(checkpoint_path),
        "data": str(data),
        "split": split,
        "num_images": len(dataset),
        "tta": tta,
        "largest_component": largest_component,
        "fill_holes": fill_holes,
        "precision": seg.rt.precision,
        **{k: _clean(v) for k, v in s.items() if k != "classes"},
        "classes": [{k: _clean(v) for k, v in c.items()} for c in s["classes"]],
        "confusion_matrix": result.cm.tolist(),
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        rows = sorted(result.per_image, key=lambda r: r["index"])
        with (out / "per_image.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["image", "mean_iou", "mean_dice", "fg_dice", "pixel_accuracy"])
            w.writeheader()
            for r in rows:
                w.writerow({k: r[k] for k in w.fieldnames})
        plots.confusion(result.cm, list(classes), out / "confusion.png")
        key = "fg_dice" if seg.binary else "mean_iou"
        ranked = sorted(rows, key=lambda r: -1 if math.isnan(r[key]) else r[key])[:worst]
        samples, titles = [], []
        for r in ranked:
            image, mask = dataset[r["index"]]
            logits = predict_logits(seg.model, image[None].float(), seg.spec, seg.rt, tta)
            pred = logits_to_pred(logits, seg.binary, seg.spec.threshold)[0].cpu().numpy()
            if post is not None:
                pred = post(pred)
            samples.append((plots.to_rgb_uint8(image), mask.numpy(), pred.astype(np.uint8)))
            titles.append(f"{Path(r['image']).name}  {key} {r[key]:.3f}")
        plots.grid(samples, len(classes), out / "worst.png", titles)
    return summary


def _clean(v):
    return None if isinstance(v, float) and math.isnan(v) else v
