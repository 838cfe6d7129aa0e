"""What differs between kinds of training, behind one small seam: how a batch becomes (x, target),
what the network takes and gives, how validation scores it, and what the checkpoint records. The loop
in loop.py calls these and never asks which task it runs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from unetkit.config import TrainConfig
from unetkit.infer.checkpoint import CLICK_THRESHOLD, ModelMeta
from unetkit.infer.evaluation import evaluate
from unetkit.interactive.training import click_batch_fn, click_validate
from unetkit.metrics import headline
from unetkit.training.steps import standard_batch_fn


@dataclass(frozen=True)
class Task:
    name: str
    batch_fn: Callable  # (config, rt, mean, std) -> prepare(images, masks, seed, model) -> (x, target)
    validate: Callable  # (segmenter, val dataset, loss_fn, config) -> (row fields, score: higher is better)
    adapt_meta: Callable[[ModelMeta, TrainConfig], ModelMeta]  # what inference must know beyond the default
    extra_channels: int = 0  # input channels after the image's
    classes: tuple[str, ...] | None = None  # the network's output classes, if not the data's
    adapt_config: Callable[[TrainConfig], TrainConfig] = lambda config: config  # before the data is prepared


def segmentation_validate(seg, val, loss_fn, config: TrainConfig) -> tuple[dict, float]:
    ev = evaluate(seg, val, loss_fn, batch_size=config.batch_size)
    s, binary = ev.scores, seg.meta.binary
    fields = {
        "val_loss": ev.loss,
        "val_dice": s["mean_dice_fg"] if binary else s["mean_dice"],
        "val_iou": s["mean_iou_fg"] if binary else s["mean_iou"],
        "val_accuracy": s["pixel_accuracy"],
    }
    return fields, headline(s, binary)


SEGMENTATION = Task("segmentation", standard_batch_fn, segmentation_validate, lambda meta, config: meta)


def click_task() -> Task:
    def adapt(meta: ModelMeta, config: TrainConfig) -> ModelMeta:
        clicks = {"radius": config.clicks.click_radius, "threshold": CLICK_THRESHOLD}
        if config.clicks.view_size:
            clicks["view_size"] = config.clicks.view_size
        if config.clicks.first_zoom:
            clicks["first_zoom"] = config.clicks.first_zoom
        return dataclasses.replace(meta, classes=("background", "object"), clicks=clicks)

    def binary_loss(config: TrainConfig) -> TrainConfig:
        """One object against the rest: class balancing of the data's classes does not apply, and a label
        file's objects are the samples (labels auto -> instances)."""
        if config.data.labels == "auto":
            config = dataclasses.replace(config, data=dataclasses.replace(config.data, labels="instances"))
        if config.loss.class_balance != "auto":
            return config
        return dataclasses.replace(config, loss=dataclasses.replace(config.loss, class_balance="none"))

    return Task("interactive", click_batch_fn, click_validate, adapt, 3, ("background", "object"), binary_loss)


def task_for(config: TrainConfig) -> Task:
    return click_task() if config.clicks.interactive else SEGMENTATION


NO_SCORES = {"val_loss": math.nan, "val_dice": math.nan, "val_iou": math.nan, "val_accuracy": math.nan}
