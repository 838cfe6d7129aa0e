"""Scoring: `evaluate` (one confusion matrix over a whole set, used by training's validation too)
and `evaluate_checkpoint`, the `unetkit evaluate` command's data choice and reports."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from unetkit import distributed, plots
from unetkit.config import DataConfig, EvaluateConfig
from unetkit.config.io import build
from unetkit.data.check import check_pairs
from unetkit.data.datasets import SegmentationDataset
from unetkit.data.formats.source import label_source
from unetkit.data.imageio import IGNORE, DataError
from unetkit.data.splits import SplitChoice, SplitRecord, load_split, run_split
from unetkit.infer import builtin
from unetkit.infer.predict import Segmenter
from unetkit.metrics import confusion_matrix, scores


@dataclass
class EvalResult:
    cm: torch.Tensor
    loss: float
    per_image: list[dict]
    scores: dict


def _size_groups(dataset: SegmentationDataset, indices: list[int], batch_size: int) -> list[list[int]]:
    by_size: dict[tuple, list[int]] = {}
    for i in indices:
        by_size.setdefault(tuple(dataset[i][1].shape), []).append(i)
    return [ids[j : j + batch_size] for ids in by_size.values() for j in range(0, len(ids), batch_size)]


def _row(index: int, image: Path, s: dict) -> dict:
    return {
        "index": index,
        "image": str(image),
        "mean_iou": s["mean_iou"],
        "mean_dice": s["mean_dice"],
        "fg_dice": s["mean_dice_fg"],
        "pixel_accuracy": s["pixel_accuracy"],
    }


def evaluate(
    seg: Segmenter,
    dataset: SegmentationDataset,
    loss_fn: Callable | None = None,
    batch_size: int = 4,
    tta: bool = False,
    per_image: bool = False,
    on_batch: Callable[[int], object] | None = None,
    largest_component: bool = False,
    fill_holes: bool = False,
) -> EvalResult:
    """Metrics at each mask's original resolution, from one confusion matrix over the whole set, of
    the masks `predict` would write (same input, same post-processing). Under torchrun each rank
    evaluates its share and the counts are summed, so the result equals a single process."""
    classes = tuple(seg.classes)
    k = len(classes)
    cm = torch.zeros(k, k, dtype=torch.int64)
    loss_sum, loss_n = 0.0, 0
    rows = []
    indices = list(range(seg.rt.rank, len(dataset), seg.rt.world_size))
    for group in _size_groups(dataset, indices, batch_size):
        items = [dataset[i] for i in group]
        images = torch.stack([im for im, _ in items]).float()  # (N, C, H, W)
        target = torch.stack([m for _, m in items]).long()  # (N, H, W)
        out = seg.predict_batch(images, tta, largest_component, fill_holes)
        if loss_fn is not None:
            loss_sum += float(loss_fn(out.logits, target)) * len(group)
            loss_n += len(group)
        for j, i in enumerate(group):
            one = confusion_matrix(out.pred[j], target[j], k)
            cm += one
            if per_image:
                rows.append(_row(i, dataset.pairs[i].image, scores(one, classes)))
        if on_batch:
            on_batch(len(group))
    cm, totals = distributed.sum_over_ranks(seg.rt, cm, torch.tensor([loss_sum, float(loss_n)], dtype=torch.float64))
    return EvalResult(cm, float(totals[0]) / max(1.0, float(totals[1])), rows, scores(cm, classes))


# ----------------------------------------------------------------------------------------------
# The evaluate command


def _data_config(seg: Segmenter, config: EvaluateConfig) -> DataConfig:
    """The run's own reading options (mask suffix, split fractions...) pointed at `config.data`."""
    saved = seg.meta.train_config.get("data", {})
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    values = {k: v for k, v in saved.items() if k in fields}
    is_csv = str(config.data).lower().endswith(".csv")
    values.update(root=None if is_csv else str(config.data), csv=str(config.data) if is_csv else None)
    if values.get("labels", "auto") == "auto":  # a label file scored as the model sees it
        values["labels"] = "instances" if seg.meta.clicks else "binary" if seg.meta.binary else "semantic"
    return build(DataConfig, values)


def eval_dataset(seg: Segmenter, config: EvaluateConfig, checkpoint_path: Path):
    """(dataset, split choice): the pairs to score, checked, read as float32 like predict reads them."""
    cfg = _data_config(seg, config)
    trained = seg.meta.train_config.get("data", {})
    run_dir = checkpoint_path.resolve().parent.parent
    record, notes = run_split(seg.meta.split, run_dir, cfg, trained.get("root") or trained.get("csv"))
    if not config.recorded_split:
        record, notes = None, []
    choice: SplitChoice = load_split(cfg, config.split, record)
    choice.notes = notes + choice.notes
    if not choice.pairs:
        raise DataError(f"{config.data}: the {choice.split} split is empty; choose another --split")
    spec = seg.meta.mask_spec
    if label_source(cfg) is not None:  # what LabelMask renders: class indices or 0/1, 255 ignored
        spec = dataclasses.replace(spec, ignore_value=IGNORE, threshold=0)
    if config.mask_threshold:
        spec = dataclasses.replace(spec, threshold=config.mask_threshold)
    if config.ignore_value is not None:
        spec = dataclasses.replace(spec, ignore_value=config.ignore_value)
    report = check_pairs(choice.pairs, cfg, spec)
    pairs = choice.pairs
    if report.problems:
        if not config.skip_bad:
            raise DataError(
                "the data check found problems; fix them or pass --skip-bad to score without those pairs:\n"
                + "\n".join(f"  {p}" for p in report.problems)
            )
        pairs = [p for p in pairs if str(p.image) not in report.bad_pairs]
    return SegmentationDataset(pairs, spec, seg.in_channels, None, dtype=torch.float32), choice


def default_out(config: EvaluateConfig, split: str) -> Path:
    """--out, else RUN/eval-SPLIT beside the checkpoint's run (a shipped model: runs/eval-NAME-SPLIT)."""
    if config.out:
        return Path(config.out)
    if builtin.is_ref(config.checkpoint):
        return Path("runs") / f"eval-{builtin.get(config.checkpoint).name}-{split}"
    return Path(config.checkpoint).resolve().parent.parent / f"eval-{split}"


def evaluate_checkpoint(config: EvaluateConfig, progress: bool = True, seg: Segmenter | None = None) -> dict:
    """Metrics over the chosen pairs, plus per_image.csv, summary.json, confusion.png, worst.png.
    `seg`: the checkpoint's model as loaded by the caller (deploy.engines.load runs it in the engine
    config.engine names); None loads it in PyTorch."""
    checkpoint_path = Path(config.checkpoint)
    seg = seg or Segmenter.load(checkpoint_path, config.device, config.precision, config.engine)
    dataset, choice = eval_dataset(seg, config, checkpoint_path)
    bar = tqdm(total=len(dataset), desc=f"evaluate {choice.split}", disable=not progress, unit="img")
    post = {"largest_component": config.largest_component, "fill_holes": config.fill_holes}
    result = evaluate(
        seg, dataset, batch_size=config.batch_size, tta=config.tta, per_image=True, on_batch=bar.update, **post
    )
    bar.close()
    s = result.scores
    summary = {
        "checkpoint": str(checkpoint_path),
        "data": str(config.data),
        "split": choice.split,
        "own_data": choice.own_data,
        "split_hash": SplitRecord.from_dict(seg.meta.split).hash if seg.meta.split and choice.own_data else None,
        "notes": choice.notes,
        "num_images": len(dataset),
        "tta": config.tta,
        **post,
        "precision": getattr(seg.model, "precision", seg.rt.precision),
        "engine": seg.engine,
        **{k: _clean(v) for k, v in s.items() if k != "classes"},
        "classes": [{k: _clean(v) for k, v in c.items()} for c in s["classes"]],
        "confusion_matrix": result.cm.tolist(),
    }
    write_reports(seg, dataset, result, summary, config, default_out(config, choice.split))
    return summary


def write_reports(seg, dataset, result: EvalResult, summary: dict, config: EvaluateConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    rows = sorted(result.per_image, key=lambda r: r["index"])
    with (out / "per_image.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "mean_iou", "mean_dice", "fg_dice", "pixel_accuracy"])
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in w.fieldnames})
    plots.confusion(result.cm, list(seg.classes), out / "confusion.png")
    worst_grid(seg, dataset, rows, config, out / "worst.png")


def worst_grid(seg: Segmenter, dataset, rows: list[dict], config: EvaluateConfig, path: Path) -> None:
    """The lowest-scoring images. An image with nothing to find and nothing predicted has no score
    (NaN): it is right, not worst, and is left out."""
    key = "fg_dice" if seg.binary else "mean_iou"
    samples, titles = [], []
    for r in rank_worst(rows, key, config.worst):
        image, mask = dataset[r["index"]]
        pred = seg.predict_batch(image[None], config.tta, config.largest_component, config.fill_holes).pred[0]
        samples.append((plots.to_rgb_uint8(image), mask.numpy(), pred.numpy()))
        titles.append(f"{Path(r['image']).name}  {key} {r[key]:.3f}")
    if samples:
        plots.grid(samples, len(seg.classes), path, titles)
    else:
        path.unlink(missing_ok=True)


def rank_worst(rows: list[dict], key: str, n: int) -> list[dict]:
    """The n lowest-scoring rows; rows without a score (NaN: nothing to find, nothing found) left out."""
    return sorted((r for r in rows if not math.isnan(r[key])), key=lambda r: r[key])[:n]


def _clean(v):
    return None if isinstance(v, float) and math.isnan(v) else v
