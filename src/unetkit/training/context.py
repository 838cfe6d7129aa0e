"""A run's fixed parts, built once from its plan: the files that describe it, the model, optimiser,
loss and the DDP wrapper, the checkpoint metadata, the batch preparation and loader, the step count.
The loop (loop.py) reads them; only re-planning the epochs under a time limit changes the config."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unetkit import distributed
from unetkit.config import TrainConfig, parse_duration
from unetkit.config.io import to_dict
from unetkit.data.datasets import BatchLoader
from unetkit.errors import DataError
from unetkit.infer.checkpoint import ModelMeta
from unetkit.infer.inference import tta_flips_for
from unetkit.model import load_imagenet
from unetkit.runtime import Runtime
from unetkit.training import memory_format
from unetkit.training.finetune import transfer
from unetkit.training.plan import Plan, TrainData
from unetkit.training.run_folder import RunFolder
from unetkit.training.schedule import TimeBudget, batches_for_epoch, lr_at, schedule_steps
from unetkit.training.steps import BatchFn, Training, build_training
from unetkit.training.tasks import Task


@dataclass
class Context:
    """The parts of a run that stay fixed while it trains (config changes once, by re-planning)."""

    config: TrainConfig
    rt: Runtime
    run: RunFolder
    plan: Plan
    data: TrainData
    training: Training
    train_model: torch.nn.Module
    meta: ModelMeta
    task: Task
    batch_fn: BatchFn
    loader: BatchLoader
    budget: TimeBudget
    steps_per_epoch: int
    interrupted: list[bool] = field(default_factory=lambda: [False])

    @property
    def total_steps(self) -> int:
        return schedule_steps(self.config.epochs, self.config.max_steps, self.steps_per_epoch)

    def lr(self, step: int) -> float:
        o = self.config.optim
        return lr_at(step, self.total_steps, int(o.warmup_epochs * self.steps_per_epoch), o.lr, o.schedule)


def build_context(plan: Plan, data: TrainData, rt: Runtime, run: RunFolder, task: Task, budget: TimeBudget) -> Context:
    """The fixed parts of a run, built from its plan: files written, model and optimiser, the batches."""
    config = plan.config
    classes = task.classes or plan.data_classes
    n_train = len(data.train)
    steps_per_epoch = len(batches_for_epoch(n_train, config.batch_size, config.seed, 0, rt.rank, rt.world_size))
    if steps_per_epoch == 0:
        raise DataError(f"{n_train} training pairs are fewer than one batch of {config.batch_size}; lower --batch-size")
    planned = 0 if task.extra_channels else schedule_steps(config.epochs, config.max_steps, steps_per_epoch)
    rt = memory_format.choose(config, rt, len(classes), planned, run.log)
    run.write_splits(plan.record)
    run.write_config(config, rt)
    torch.manual_seed(config.seed)
    training = build_training(config, rt, len(classes), config.data.in_channels + task.extra_channels)
    if plan.source is not None:
        run.log(transfer(training.model, plan.source, config.data.in_channels, task.extra_channels).summary())
    elif config.model.imagenet:
        run.log(load_imagenet(training.model, config.data.in_channels))
    model, train_model = distributed.wrap_for_training(training.model, rt, config.sync_bn, config.compile)
    training.model = model
    budget.limit_s = parse_duration(config.time_limit)
    ctx = Context(
        config, rt, run, plan, data, training, train_model, task.adapt_meta(make_meta(plan, model), config), task,
        task.batch_fn(config, rt, plan.mean, plan.std), BatchLoader(data.train, data.workers), budget, steps_per_epoch,
    )  # fmt: skip
    describe(ctx)
    return ctx


def make_meta(plan: Plan, model) -> ModelMeta:
    config, a = plan.config, plan.config.augment
    return ModelMeta(
        model=distributed.unwrap(model).config,
        classes=plan.data_classes,
        mask_spec=plan.spec,
        mean=plan.mean,
        std=plan.std,
        resize=config.data.resize,
        size=tuple(config.data.size),
        in_channels=config.data.in_channels,
        threshold=config.threshold,
        tta_flips=tta_flips_for(a.hflip, a.vflip, a.rot90),
        train_config=to_dict(config),
        split=plan.record.to_dict(),
    )


def describe(ctx: Context) -> None:
    c, p, log = ctx.config, ctx.plan, ctx.run.log
    log(f"run folder: {ctx.run.path}")
    counts = ", ".join(f"{s} {len(p.splits[s])}" for s in ("train", "val", "test"))
    log(f"data: {c.data.root or c.data.csv}: {counts} pairs; classes: {', '.join(p.data_classes)}")
    params = sum(t.numel() for t in ctx.training.model.parameters())
    workers = f", {ctx.data.workers} data workers" if ctx.data.workers else ""
    encoder = f"{c.model.encoder} encoder, decoder " if c.model.encoder != "unet" else ""
    log(
        f"model: {encoder}widths {list(c.model.widths)}, {params:,} parameters; {ctx.rt.describe()}{workers}; "
        f"{ctx.steps_per_epoch} steps/epoch, {ctx.total_steps} steps; {c.optim.optimizer} lr {c.optim.lr:g}"
    )
