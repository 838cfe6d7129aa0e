"""Self-configuration for a time budget: fingerprint the data, time candidate networks on this
machine, and pick width, input size, batch size and epochs so that training fits the budget.

The rule, in order: prefer the largest input size (up to the data's own scale), then the widest
network, that still gets enough optimiser steps in the budget (at least 30 epochs' worth of steps,
clamped to 300..2000); if none does, the cheapest at half its batch (starved of steps, more
updates win). Step times come from measured networks scaled by convolution cost
(network_cost.py: a U-Net on a pretrained encoder is counted as built): the cheapest candidate always,
a mid-sized one too, and the chosen network if it is another, where each costs at most 5% of the
budget.
A run that starts from a trained model (--init) keeps its network.
If the model already does this task (it scores >= 0.5 IoU on the validation split as it is, or it
is a click model trained further as one), the input scale it was trained at is kept too: finer
scales shrink what it learnt to recognise; and its encoder learns at 0.1 x lr unless
--encoder-lr-scale is given. Otherwise the task is new: the scale is planned as from
scratch, but a fine-tune needs half the steps, so it can afford a finer one.
The reasoning is written to RUN/autoconfig.json.

The epoch count planned here is a first estimate: training measures its real epoch time after the
first epochs (data loading, validation and checkpoints included) and re-sets the epochs so the
schedule ends at the budget (`fill_time_limit`), then again a third and two thirds of the way in.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from unetkit.config import TrainConfig
from unetkit.data.check import check_dataset, class_names
from unetkit.runtime import setup
from unetkit.training.finetune import zero_shot
from unetkit.training.network_cost import cost
from unetkit.training.steps import build_training, load_batch, train_step, training_runtime

WIDTHS = ((16, 32, 64, 128), (32, 64, 128, 256), (64, 128, 256, 512))
SIZES = (512, 384, 256, 192, 128)
BUDGET_SHARE = 0.85  # of the budget planned for training; the rest covers validation and slack
FINETUNE_STEPS = 0.5  # share of the from-scratch step need a fine-tune needs (benchmarks/finetune.py)
SAME_TASK_IOU = 0.5  # a source this good on the val split as it is already does the task
SAME_TASK_ENCODER_LR = 0.1  # its encoder's lr then (unless --encoder-lr-scale is given): finetune.py benchmark
MIN_STEPS_BETWEEN_VALIDATIONS = 10
CALIBRATION_SHARE = 0.05  # of the budget that measuring one more network (mid-sized, or the chosen one) may take


def fingerprint(config: TrainConfig, checked=None) -> dict:
    """Image sizes, class count and frequencies, foreground fraction, dataset size. `checked`: the data
    check's result (data.check.check_dataset) when the caller has it, as training's plan does."""
    report, splits, spec = checked or check_dataset(config.data)
    sizes = sorted(report.sizes.elements())
    widths = sorted(w for w, _ in sizes)
    heights = sorted(h for _, h in sizes)
    total = sum(n for c, n in report.class_pixels.items() if c != 255) or 1
    freqs = {int(c): n / total for c, n in sorted(report.class_pixels.items()) if c != 255}
    return {
        "pairs": {s: len(p) for s, p in splits.items()},
        "median_size_hw": [heights[len(heights) // 2], widths[len(widths) // 2]] if sizes else [0, 0],
        "min_size_hw": [heights[0], widths[0]] if sizes else [0, 0],
        "num_classes": spec.num_classes,
        "classes": list(class_names(config.data, spec)),
        "class_frequencies": freqs,
        "foreground_fraction": 1 - freqs.get(0, 0.0),
        "problems": len(report.problems),
    }


def time_step(config: TrainConfig, num_classes: int, steps: int = 2) -> float:
    """Seconds per training step of `config`'s network, size and batch on this machine."""
    rt = training_runtime(setup(config.device, config.precision, config.channels_last), config)
    torch.manual_seed(0)
    training = build_training(config, rt, num_classes)
    h, w = config.data.size
    n = config.batch_size
    g = torch.Generator().manual_seed(0)
    dataset = [
        (
            torch.rand(config.data.in_channels, h, w, generator=g).half(),
            torch.randint(0, num_classes, (h, w), generator=g).to(torch.uint8),
        )
        for _ in range(n)
    ]
    mean, std = [0.5] * config.data.in_channels, [0.25] * config.data.in_channels
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        x, target = load_batch(dataset, list(range(n)), config, rt, mean, std, i)
        train_step(training.model, x, target, config, rt, training, i)
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]))


def epochs_for_budget(
    budget_s: float, steps_per_epoch: int, step_s: float, num_val: int, batch_size: int
) -> tuple[int, float]:
    """(epochs, estimated seconds per epoch) that fit BUDGET_SHARE of a budget. Validation costs about
    one forward per val image per epoch (a third of a training step per image)."""
    epoch_s = steps_per_epoch * step_s + num_val * step_s / batch_size / 3
    return max(1, math.floor(BUDGET_SHARE * budget_s / epoch_s)), epoch_s


def val_every(epochs: int, steps_per_epoch: int) -> int:
    """Epochs between validations (each also checkpoints): at most ~40 in a run, and at least
    MIN_STEPS_BETWEEN_VALIDATIONS steps apart, as a 20-image set has 5-step epochs, where a validation and
    its checkpoint took ~0.25 s against ~1 s of training (ISBI at 128 px on 2 AVX2 cores)."""
    return max(1, math.ceil(epochs / 40), math.ceil(MIN_STEPS_BETWEEN_VALIDATIONS / steps_per_epoch))


def _hw(config: TrainConfig) -> str:
    return "x".join(str(v) for v in config.data.size)


def _round32(x: float) -> int:
    return max(64, int(x) // 32 * 32)


def _row(trial: TrainConfig, step: float, measured: bool, **extra) -> dict:
    return {
        "size": list(trial.data.size),
        "widths": list(trial.model.widths),
        "batch": trial.batch_size,
        "seconds_per_step": round(step, 4),
        "measured": measured,
        **extra,
    }


def _trial_maker(config: TrainConfig, fp: dict):
    """(candidate sizes, trial_for(size, widths)): `size` is the short side; in resize mode the long
    side keeps the images' median aspect ratio, so 480x360 street scenes are not squashed into squares."""
    mh, mw = fp["median_size_hw"]
    sizes = [s for s in SIZES if s <= max(128, _round32(min(mh, mw)))]
    aspect = min(2.0, max(0.5, mw / mh)) if mh and mw and config.data.resize != "crop" else 1.0

    def trial_for(size: int, widths: tuple[int, ...]) -> TrainConfig:
        hw = (size, _round32(size * aspect)) if aspect >= 1 else (_round32(size / aspect), size)
        return dataclasses.replace(
            config,
            model=dataclasses.replace(config.model, widths=widths),
            data=dataclasses.replace(config.data, size=hw),
            batch_size=8 if size <= 256 else 4,
        )

    return sizes, trial_for


def _choose(
    config: TrainConfig,
    fp: dict,
    budget_s: float,
    log,
    widths_options=WIDTHS,
    size: int | None = None,
    steps_share: float = 1.0,
) -> tuple[TrainConfig, float, float, list[dict]]:
    """(chosen config, its measured seconds per step, seconds spent measuring, every candidate's row).

    Predict every candidate's step time from its convolution cost and measured references (measuring
    each would eat a short budget), then confirm the chosen one. `size` fixes the short side;
    `steps_share` scales the steps a candidate needs."""
    k, n_train = fp["num_classes"], fp["pairs"]["train"]
    sizes, trial_for = _trial_maker(config, fp)
    sizes = [size] if size else sizes
    predict, spent, rows = _calibrate(sizes, widths_options, trial_for, k, budget_s)
    chosen = None
    for size in sizes:  # prefer resolution, then width
        for widths in reversed(widths_options):
            trial = trial_for(size, widths)
            step = predict(trial)
            needed = int(steps_share * min(2000, max(300, 30 * max(1, n_train // trial.batch_size))))
            affordable = int((BUDGET_SHARE * budget_s - spent) / step)
            rows.append(_row(trial, step, False, steps_needed=needed, steps_affordable=affordable))
            if affordable >= needed and chosen is None:
                chosen = trial
    chosen = chosen or _starved(trial_for(sizes[-1], widths_options[0]))
    step = next((r["seconds_per_step"] for r in rows if r["measured"] and _same(r, chosen)), None)
    other_network = not any(r["measured"] and _same(r, chosen, batch=False) for r in rows)
    if step is None and other_network and 3 * predict(chosen) <= CALIBRATION_SHARE * budget_s:  # confirm it
        t0 = time.perf_counter()
        step = time_step(chosen, k)
        spent += time.perf_counter() - t0
        rows.append(_row(chosen, step, True))
    step = step or predict(chosen)  # else training's first epochs measure it (fill_time_limit)
    refs = ", ".join(f"{r['seconds_per_step']:.3f} s/step at {_hw_of(r)}" for r in rows if r["measured"])
    log(f"autoconfig: measured {refs}; chose {_hw(chosen)} widths {list(chosen.model.widths)} ({step:.3f} s/step)")
    return chosen, step, spent, rows


def _starved(cheapest: TrainConfig) -> TrainConfig:
    """Nothing reaches the wanted steps: the cheapest candidate at half its batch. Starved of steps,
    more updates beat bigger ones. Widths 16-128 at 128 px in a 35-38 s limit on 2 AVX2 cores (one seed
    each): ISBI (20 training images, benchmarks/time_to_quality.py's split) test fg IoU 0.865 at batch 4
    against 0.848 at batch 8; DRIVE (16 training images) 0.476 against 0.420."""
    return dataclasses.replace(cheapest, batch_size=max(2, cheapest.batch_size // 2))


def _calibrate(sizes, widths_options, trial_for, num_classes: int, budget_s: float):
    """(predict(trial) -> seconds per step, seconds spent measuring, the measured rows).

    The cheapest candidate is measured first: measuring costs three of its steps, so a short budget
    is not spent on planning (a mid-sized reference took 30 of a 39 s budget on a 2-core AVX2 CPU).
    Where the budget affords it (CALIBRATION_SHARE), a mid-sized candidate is measured too, and
    candidates at least as costly are predicted from it: small convolutions run less efficiently, so
    the cheapest one alone would overrate a large network's step time."""
    cheap = trial_for(sizes[-1], widths_options[0])
    t0 = time.perf_counter()
    refs = [(cost(cheap), time_step(cheap, num_classes))]
    spent = time.perf_counter() - t0
    rows = [_row(cheap, refs[0][1], True)]
    mid = trial_for(min(256, sizes[0]), widths_options[len(widths_options) // 2])
    mid_cost = cost(mid)
    if mid_cost > refs[0][0] and 3 * refs[0][1] * mid_cost / refs[0][0] <= CALIBRATION_SHARE * budget_s:
        t0 = time.perf_counter()
        refs.append((mid_cost, time_step(mid, num_classes)))
        spent += time.perf_counter() - t0
        rows.append(_row(mid, refs[1][1], True))

    def predict(trial: TrainConfig) -> float:
        c = cost(trial)
        ref_cost, ref_step = refs[-1] if c >= refs[-1][0] else refs[0]
        return ref_step * c / ref_cost

    return predict, spent, rows


def _same(row: dict, trial: TrainConfig, batch: bool = True) -> bool:
    """Whether a candidate's row is of this network and size (and batch)."""
    same = (row["size"], row["widths"]) == (list(trial.data.size), list(trial.model.widths))
    return same and (not batch or row["batch"] == trial.batch_size)


def _hw_of(row: dict) -> str:
    return "x".join(map(str, row["size"])) + f" widths {row['widths']}"


def _same_task(source, config: TrainConfig, checked) -> tuple[float | None, bool]:
    """(zero-shot val score or None, whether the source already does this task). A click model trained
    further as a click model is its own task (clicks are not simulated here to score it)."""
    if source.meta.interactive and config.clicks.interactive:
        return None, source.image_channels == config.data.in_channels
    score = zero_shot(source, config, checked)
    return score, score is not None and score >= SAME_TASK_IOU


def _transfer_line(source, score: float | None, same: bool) -> str:
    scale = "x".join(map(str, source.meta.size))
    if score is None and same:
        return f"autoconfig: {source.ref} is a click model trained further as one: its task; its {scale} scale is kept"
    if score is None:
        return f"autoconfig: {source.ref} predicts other classes or inputs: a new task; the scale is planned"
    if same:
        return f"autoconfig: {source.ref} scores {score:.3f} on val as it is: its task; its {scale} scale is kept"
    return f"autoconfig: {source.ref} scores {score:.3f} on val as it is: a new task; the scale is planned"


def _gentle_encoder(config: TrainConfig, log) -> TrainConfig:
    """A source that already does the task keeps more of it with a slower encoder: on GrabCut from
    `objects` 0.1 x lr gave 0.568 fg IoU at 5 min against 0.503 at full lr; CamVid from `general` 0.447
    against 0.446. On a new task (DRIVE) it cost 0.01, so it is only for the source's own task."""
    log(f"autoconfig: its task, so the encoder learns at {SAME_TASK_ENCODER_LR:g} x lr (--encoder-lr-scale sets it)")
    ft = dataclasses.replace(config.finetune, encoder_lr_scale=SAME_TASK_ENCODER_LR)
    return dataclasses.replace(config, finetune=ft)


def _choose_from_source(config: TrainConfig, fp: dict, checked, source, budget_s: float, auto_encoder_lr: bool, log):
    """A starting model fixes the network: only size, batch and epochs are chosen. Returns _choose's
    tuple and the "init" block of the reasoning."""
    t0 = time.perf_counter()
    widths, (score, same) = (config.model.widths,), _same_task(source, config, checked)
    scored_s = time.perf_counter() - t0
    transfer = {"source": source.ref, "zero_shot_val_score": score, "same_task": same}
    log(_transfer_line(source, score, same))
    if same and auto_encoder_lr:
        config = _gentle_encoder(config, log)
    transfer["encoder_lr_scale"] = config.finetune.encoder_lr_scale
    keep = min(source.meta.size) if same else None
    trial, step, spent, rows = _choose(config, fp, budget_s - scored_s, log, widths, keep, FINETUNE_STEPS)
    return (trial, step, spent + scored_s, rows), transfer


def plan(
    config: TrainConfig, checked, source, budget_s: float, auto_encoder_lr: bool, log=print, spent_s: float = 0.0
) -> tuple[TrainConfig, dict]:
    """(`config` with model widths, size, batch size, epochs and time limit set for the budget, the
    reasoning written to RUN/autoconfig.json). `config` is already resolved by train.plan (data, the
    starting model `source` and its network, norm); `checked` is its data check; `auto_encoder_lr`:
    the user left --encoder-lr-scale unset. The budget's clock started `spent_s` seconds ago, before
    the data check: the time limit is the whole budget, and what planning spends comes out of training."""
    fp = fingerprint(config, checked)
    left = budget_s - spent_s
    transfer = {}
    if source:
        (trial, step, spent, rows), transfer = _choose_from_source(
            config, fp, checked, source, left, auto_encoder_lr, log
        )
    else:
        trial, step, spent, rows = _choose(config, fp, left, log)
    steps_per_epoch = max(1, fp["pairs"]["train"] // trial.batch_size)
    epochs, epoch_s = epochs_for_budget(
        left - spent / BUDGET_SHARE, steps_per_epoch, step, fp["pairs"]["val"], trial.batch_size
    )
    final = dataclasses.replace(
        trial,
        epochs=epochs,
        time_limit=f"{budget_s:.1f}s",
        fill_time_limit=True,
        val_every=val_every(epochs, steps_per_epoch),
    )
    reasoning = {
        "budget_seconds": budget_s,
        "fingerprint": fp,
        "candidates_measured": rows,
        "seconds_before_planning": round(spent_s, 1),
        "measurement_seconds": round(spent, 1),
        "time_limit_seconds": round(budget_s, 1),
        **({"init": transfer} if transfer else {}),
        "chosen": {
            **{k: v for k, v in _row(final, step, True).items() if k not in ("batch", "measured")},
            "batch_size": final.batch_size,
            "epochs": epochs,
            "estimated_epoch_seconds": round(epoch_s, 2),
            "resize": final.data.resize,
        },
        "rule": __doc__.strip().split("\n\n")[1].replace("\n", " "),
    }
    log(
        f"autoconfig: chose {_hw(final)}, widths {list(final.model.widths)}, batch {final.batch_size}, "
        f"{epochs} epochs (~{epoch_s:.1f}s each) for a {budget_s:.0f}s budget"
    )
    return final, reasoning
