"""A run's training data: checked, split (or its recorded split on resume), decoded into cached
datasets, with the normalisation, class weights and norm layer the data calls for."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from unetkit.config import TrainConfig
from unetkit.data import Pair, SplitRecord, load_splits, record_splits
from unetkit.datacheck import check_dataset, class_names
from unetkit.datasets import (
    RandomCropDataset,
    SampleCache,
    SegmentationDataset,
    cache_budget,
    channel_stats,
    class_pixel_counts,
    worker_count,
)
from unetkit.demo import write_demo
from unetkit.errors import ConfigError, DataError
from unetkit.imageio import MaskSpec
from unetkit.losses import median_frequency_weights
from unetkit.steps import resolve_norm


@dataclass
class Prepared:
    config: TrainConfig  # with class weights and norm resolved from the data
    splits: dict[str, list[Pair]]
    record: SplitRecord
    spec: MaskSpec
    classes: tuple[str, ...]
    train: torch.utils.data.Dataset
    val: SegmentationDataset
    mean: list[float]
    std: list[float]
    workers: int


def demo_config(config: TrainConfig, run_dir: Path) -> TrainConfig:
    """No data given: generate the demo set inside the run folder (once) and point the config at it."""
    root = run_dir / "demo_data"
    if not (root / "train").is_dir():
        write_demo(root, seed=config.seed)
    return dataclasses.replace(config, data=dataclasses.replace(config.data, root=str(root)))


def prepare_data(config: TrainConfig, run_dir: Path, log, record: SplitRecord | None = None) -> Prepared:
    """Check every pair (refusing bad data unless skip_bad), fix the splits, build cached datasets."""
    dc = config.data
    report, splits, spec = check_dataset(dc)
    if report.problems:
        if not dc.skip_bad:
            raise DataError(
                "the data check found problems; fix them or pass --skip-bad to train without "
                "those pairs:\n" + "\n".join(f"  {p}" for p in report.problems)
            )
        log(
            f"skipping {len(report.bad_pairs)} bad pair(s): "
            + ", ".join(Path(s).stem for s in sorted(report.bad_pairs))
        )
    if record is not None:
        splits = load_splits(dc, record)  # a resumed run keeps its original split
    splits = {s: [p for p in ps if str(p.image) not in report.bad_pairs] for s, ps in splits.items()}
    classes = class_names(dc, spec)
    cache = SampleCache(dc.cache, run_dir / "cache" if dc.cache != "none" else None, cache_budget(dc), log)
    workers = worker_count(dc)
    if workers:
        cache.budget = cache.budget // (workers + 1)  # each worker process keeps its own share
    size = tuple(dc.size)
    fixed = size if dc.resize == "resize" else None
    train_base = SegmentationDataset(splits["train"], spec, dc.in_channels, fixed, cache)
    train = train_base if dc.resize == "resize" else RandomCropDataset(train_base, size, config.seed)
    val = SegmentationDataset(splits["val"], spec, dc.in_channels, None, cache, dtype=torch.float32)
    mean, std = channel_stats(train_base)
    config = with_class_weights(config, train_base, len(classes), log)
    config = resolve_norm(config, len(splits["train"]))
    return Prepared(config, splits, record or record_splits(dc, splits), spec, classes, train, val, mean, std, workers)


def with_class_weights(config: TrainConfig, train: SegmentationDataset, num_classes: int, log) -> TrainConfig:
    """Fill loss.class_weights from the training masks when class_balance asks for it; the weights
    then live in config.json and the checkpoint, so a resumed run uses the same ones."""
    lc = config.loss
    if lc.class_weights and len(lc.class_weights) != num_classes:
        raise ConfigError(
            f"class_weights: {len(lc.class_weights)} weights given but the data has {num_classes} classes; "
            "give one weight per class (binary: background,foreground)"
        )
    balance = lc.class_balance
    if balance == "auto":
        balance = "median_freq" if num_classes > 2 else "none"
    if lc.class_weights or balance == "none":
        return config
    weights = median_frequency_weights(*class_pixel_counts(train, num_classes))
    rounded = tuple(round(float(w), 4) for w in weights)
    log("class weights (median frequency): " + ", ".join(f"{w:.2f}" for w in rounded))
    return dataclasses.replace(config, loss=dataclasses.replace(lc, class_weights=rounded))
