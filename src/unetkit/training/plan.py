"""Training is planned once: `make_plan` resolves the config (demo data, the starting model and the
network it implies, norm, class weights, and under a time budget autoconfig's choices), checks the
data, fixes the split (a resumed run keeps its recorded one) and the input normalisation, and builds
the cached datasets. The loop gets the frozen `Plan` and never decides any of these again."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from unetkit import distributed
from unetkit.config import TrainConfig
from unetkit.data.check import Report, check_dataset, class_names
from unetkit.data.datasets import (
    RandomCropDataset,
    SampleCache,
    SegmentationDataset,
    cache_budget,
    channel_stats,
    class_pixel_counts,
    worker_count,
)
from unetkit.data.demo import write_demo
from unetkit.data.imageio import MaskSpec
from unetkit.data.splits import Pair, SplitRecord, load_splits, record_splits, run_split
from unetkit.errors import ConfigError, DataError
from unetkit.model import ENCODERS
from unetkit.runtime import Runtime, setup
from unetkit.training import autoconfig
from unetkit.training.finetune import Source, start_from
from unetkit.training.losses import median_frequency_weights
from unetkit.training.resume import ResumeRecord
from unetkit.training.steps import resolve_norm, resolve_optimizer
from unetkit.training.tasks import Task, task_for


@dataclass(frozen=True)
class Plan:
    """Everything decided before the first step, each thing decided once."""

    config: TrainConfig  # resolved: the data, init and network, norm, class weights, autoconfig's choices
    report: Report  # the data check of every pair
    splits: dict[str, list[Pair]]  # the pairs of each split, bad ones left out
    record: SplitRecord  # the split as recorded in config.json's run and every checkpoint
    spec: MaskSpec
    data_classes: tuple[str, ...]  # the masks' classes (the network's may differ: Task.classes)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: Source | None  # the starting model (--init); None from scratch or on resume
    autoconfig: dict | None  # --time-budget's reasoning (also RUN/autoconfig.json)


@dataclass
class TrainData:
    """The plan's datasets: decoded once into a shared cache, fetched by `workers` processes."""

    train: torch.utils.data.Dataset
    val: SegmentationDataset
    workers: int


def demo_config(config: TrainConfig, run_dir: Path, rt: Runtime) -> TrainConfig:
    """No data given: generate the demo set inside the run folder (once, on rank 0) and point the
    config at it."""
    root = run_dir / "demo_data"
    distributed.main_first(rt, lambda: (root / "train").is_dir() or write_demo(root, seed=config.seed))
    return dataclasses.replace(config, data=dataclasses.replace(config.data, root=str(root)))


def make_plan(
    config: TrainConfig,
    run_dir: Path,
    log,
    task: Task,
    rt: Runtime,
    saved: ResumeRecord | None = None,
    budget_s: float = 0.0,
) -> tuple[Plan, TrainData]:
    """The plan of a new run (or of a resumed one: `saved`, its last.pt) and its datasets."""
    d = decide(config, run_dir, log, task, rt, saved, budget_s)
    if d.reasoning is not None and rt.is_main:
        (run_dir / "autoconfig.json").write_text(json.dumps(d.reasoning, indent=2))
    report, _, spec = d.checked
    data, train_base = _datasets(d.config, d.splits, spec, run_dir, log)
    config = with_class_weights(d.config, train_base, len(d.data_classes), log)
    mean, std = _normalization(saved, d.source, config, train_base)
    record = d.recorded or record_splits(config.data, d.splits)
    plan = Plan(config, report, d.splits, record, spec, d.data_classes, mean, std, d.source, d.reasoning)
    return plan, data


@dataclass(frozen=True)
class Decisions:
    """What `decide` settles before any pixel is decoded."""

    config: TrainConfig
    checked: tuple  # data.check.check_dataset's (report, splits, spec)
    splits: dict[str, list[Pair]]
    data_classes: tuple[str, ...]
    recorded: SplitRecord | None  # a resumed run's split
    source: Source | None
    reasoning: dict | None


def decide(config: TrainConfig, run_dir: Path, log, task: Task, rt: Runtime, saved, budget_s: float) -> Decisions:
    """The decisions that need no decoded pixels, in order, each once: demo data, the data check, the
    usable splits, the starting model and its network, the norm, autoconfig's choices, the optimizer.
    A budget pays for all of it: autoconfig plans training with what is left."""
    started = time.perf_counter()
    config = task.adapt_config(config)
    if config.data.root is None and config.data.csv is None:
        config = demo_config(config, run_dir, rt)
    checked = check_dataset(config.data, objects_ok=config.clicks.interactive)
    recorded = run_split(saved.split, run_dir)[0] if saved is not None else None
    splits = _usable_splits(config, checked, recorded, log)
    data_classes = class_names(config.data, checked[2])
    source = None
    user_encoder_lr = config.finetune.encoder_lr_scale
    if saved is None:
        config, source = start_from(config, len(task.classes or data_classes), log, checked[0].modes)
    config = resolve_norm(config, len(splits["train"]))
    reasoning = None
    if budget_s and saved is None:
        before = time.perf_counter() - started  # the budget's clock (fit's) is already running
        config, reasoning = autoconfig.plan(config, checked, source, budget_s, user_encoder_lr is None, log, before)
    config = resolve_optimizer(config)  # the network is settled now
    return Decisions(config, checked, splits, data_classes, recorded, source, reasoning)


def _usable_splits(config: TrainConfig, checked, recorded: SplitRecord | None, log) -> dict[str, list[Pair]]:
    """The split's pairs without those that failed the check; a check with problems stops training
    unless skip_bad. A resumed run keeps its recorded split."""
    report, splits, _ = checked
    dc = config.data
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
    if recorded is not None:
        splits = load_splits(dc, recorded)  # a resumed run keeps its original split
    return {s: [p for p in ps if str(p.image) not in report.bad_pairs] for s, ps in splits.items()}


def _datasets(config: TrainConfig, splits, spec: MaskSpec, run_dir: Path, log) -> tuple[TrainData, SegmentationDataset]:
    """(the training and validation datasets, the training pairs at the input size before cropping)."""
    dc = config.data
    cache = SampleCache(dc.cache, run_dir / "cache" if dc.cache != "none" else None, cache_budget(dc), log)
    workers = worker_count(dc)
    if workers:
        cache.budget = cache.budget // (workers + 1)  # each worker process keeps its own share
    size = tuple(dc.size)
    fixed = size if dc.resize == "resize" else None
    train_base = SegmentationDataset(splits["train"], spec, dc.in_channels, fixed, cache)
    objects = config.clicks.object_crops if config.clicks.interactive else 0.0  # a click sample is one object
    train = train_base if dc.resize == "resize" else RandomCropDataset(train_base, size, config.seed, objects)
    val = SegmentationDataset(splits["val"], spec, dc.in_channels, None, cache, dtype=torch.float32)
    return TrainData(train, val, workers), train_base


def _normalization(saved, source, config: TrainConfig, train_base) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A resumed run keeps the normalisation it trained with; a model started from another keeps the
    source's when the image channels agree (its features were learnt on it); an encoder starting from
    its ImageNet weights gets the normalisation they were trained with; else the data's own."""
    if saved is not None and saved.mean is not None:
        return tuple(saved.mean), tuple(saved.std)
    if source is not None and source.image_channels == config.data.in_channels:
        return tuple(source.meta.mean), tuple(source.meta.std)
    mean, std = channel_stats(train_base)
    if source is None and config.model.imagenet:  # the encoder's pretrained weights expect their own
        spec = ENCODERS[config.model.encoder]
        n = min(3, len(mean))
        mean, std = [*spec.mean[:n], *mean[n:]], [*spec.std[:n], *std[n:]]
    return tuple(mean), tuple(std)


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


def plan_for_budget(config: TrainConfig, budget_s: float, out: Path | None = None, log=print) -> TrainConfig:
    """The config a `--time-budget` run trains with, without training (for benchmarks and tools that
    only want the choice): the decisions `fit(config, time_budget=...)` makes, reasoning in OUT."""
    rt = setup(config.device, config.precision, config.channels_last)  # decide needs only the rank
    d = decide(config, Path(out or "."), log, task_for(config), rt, None, budget_s)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "autoconfig.json").write_text(json.dumps(d.reasoning, indent=2))
    return d.config
