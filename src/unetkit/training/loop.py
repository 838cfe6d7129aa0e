"""The one training loop: fit reads top to bottom and calls train_one_epoch, validate and the run
folder; every command (train, resume, torchrun, benchmarks) goes through it.

What differs between kinds of training is a seam (`tasks.Task`: batch preparation, network inputs and
outputs, validation, checkpoint metadata): click-guided training plugs in there, not as branches here."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from unetkit import distributed
from unetkit.config import TrainConfig
from unetkit.config.io import build, merge, to_dict
from unetkit.data.datasets import RandomCropDataset
from unetkit.errors import TrainingError
from unetkit.infer.predict import Segmenter
from unetkit.runtime import setup, step_seed
from unetkit.training.context import Context, build_context
from unetkit.training.finetune import lr_scale
from unetkit.training.plan import make_plan
from unetkit.training.resume import LoopState, ResumeRecord, read_last, write_last
from unetkit.training.run_folder import RunFolder, default_run_dir
from unetkit.training.schedule import Clock, FillPlanner, TimeBudget, batches_for_epoch
from unetkit.training.steps import train_step
from unetkit.training.tasks import NO_SCORES, Task, task_for


@dataclass
class FitResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_score: float
    epochs_done: int
    steps: int
    stopped: str  # completed | early_stopping | max_steps | time_limit | interrupted
    history: list[dict]
    model: torch.nn.Module | None = field(default=None, repr=False)  # the trained network (this rank's)


def fit(
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    overrides: dict | None = None,
    task: Task | None = None,
    clock: Clock = time.monotonic,
    time_budget: float = 0.0,
) -> FitResult:
    """Train a U-Net. `resume` continues a run folder from its last checkpoint (its saved config,
    with `overrides` on top, e.g. more epochs). `task` (default: from the config, plain segmentation or
    click-guided) says how batches are made and scored; `clock` drives time limits (tests replace it);
    `time_budget` (seconds, new runs) lets autoconfig choose network, size, batch and epochs to fit."""
    saved = read_last(resume) if resume is not None else None
    config = build(TrainConfig, merge(saved.config, overrides or {})) if saved else config or TrainConfig()
    run_dir = Path(resume) if resume is not None else Path(out) if out else default_run_dir()
    base = setup(config.device, config.precision, config.channels_last, config.deterministic)
    task = task or task_for(config)
    run = RunFolder(run_dir, base.is_main)
    budget = TimeBudget(0.0, clock)  # a time limit counts planning and data preparation too: the user's wall clock
    plan, data = make_plan(config, run.path, run.log, task, base, saved, time_budget)
    ctx = build_context(plan, data, base, run, task, budget)
    state = _restore(ctx, saved) if saved else LoopState()
    planner = FillPlanner(ctx.budget, ctx.config.val_every, ctx.config.fill_time_limit and saved is None)
    if ctx.config.epochs == 0 and saved is None:
        save_starting_point(ctx, state)
    with _sigint(ctx), ctx.run.tensorboard(ctx.config.tensorboard):
        while state.epoch < ctx.config.epochs and not state.stopped:
            _replan(ctx, planner, state.epoch)
            stats = train_one_epoch(ctx, state)
            if state.stopped == "interrupted" and stats["partial"]:
                save_last(ctx, state)
                break
            state.end_epoch()
            last = bool(state.stopped) or state.epoch >= ctx.config.epochs
            if last or state.epoch % ctx.config.val_every == 0:
                record_epoch(ctx, state, *validate(ctx, state, stats))
            if ctx.config.patience and state.bad_epochs >= ctx.config.patience and not state.stopped:
                state.stopped = "early_stopping"
                ctx.run.log(f"early stopping: no improvement for {ctx.config.patience} epochs")
    return _finish(ctx, state)


def _restore(ctx: Context, saved: ResumeRecord) -> LoopState:
    t = ctx.training
    t.model.load_state_dict(saved.state_dict)
    t.optimizer.load_state_dict(saved.optimizer)
    if saved.scaler:
        t.scaler.load_state_dict(saved.scaler)
    state = saved.state
    ctx.run.log(f"resuming {ctx.run.path} at epoch {state.epoch + 1}, batch {state.batch_in_epoch}, step {state.step}")
    return state


def _replan(ctx: Context, planner: FillPlanner, epoch: int) -> None:
    new = planner.at_epoch_start(epoch)
    if new is None:
        return
    epochs = distributed.min_over_ranks(ctx.rt, new[0])
    if epochs != ctx.config.epochs:
        ctx.run.log(
            f"time limit: epochs take {new[1]:.1f}s; {ctx.config.epochs} -> {epochs} epochs so the "
            f"schedule ends by the {ctx.budget.limit_s:.0f}s limit"
        )
        ctx.config = dataclasses.replace(ctx.config, epochs=epochs)
        ctx.meta = dataclasses.replace(ctx.meta, train_config=to_dict(ctx.config))
        ctx.run.write_config(ctx.config, ctx.rt)


@contextlib.contextmanager
def _sigint(ctx: Context):
    """First Ctrl-C: finish the step, save, stop. Second: abort."""

    def on_sigint(signum, frame):
        if ctx.interrupted[0]:
            raise KeyboardInterrupt
        ctx.interrupted[0] = True
        ctx.run.log("interrupt: finishing the current step, then saving (press Ctrl-C again to abort)")

    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, on_sigint) if main else None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def train_one_epoch(ctx: Context, state: LoopState) -> dict:
    """Steps from state.batch_in_epoch to the epoch's end, or until a stop condition; returns stats."""
    c, rt = ctx.config, ctx.rt
    if isinstance(ctx.data.train, RandomCropDataset):
        ctx.data.train.set_epoch(state.epoch)
    batches = batches_for_epoch(len(ctx.data.train), c.batch_size, c.seed, state.epoch, rt.rank, rt.world_size)
    stats = {"loss_sum": 0.0, "loss_n": 0, "images": 0, "data_time": 0.0, "lr": ctx.lr(state.step)}
    bar = tqdm(
        total=len(batches), initial=state.batch_in_epoch, desc=f"epoch {state.epoch + 1}/{c.epochs}", leave=False,
        disable=not rt.is_main or not sys.stdout.isatty(), dynamic_ncols=True,
    )  # fmt: skip
    ctx.train_model.train()
    t0 = time.perf_counter()
    source = ctx.loader.epoch(state.epoch, batches[state.batch_in_epoch :])
    for b in range(state.batch_in_epoch, len(batches)):
        t_data = time.perf_counter()
        images, masks = next(source)
        seed = step_seed(c.seed, state.epoch, b)
        x, target = ctx.batch_fn(images, masks, seed, ctx.train_model)
        stats["data_time"] += time.perf_counter() - t_data
        stats["lr"] = _set_lr(ctx, state.step, state.epoch)
        loss = train_step(ctx.train_model, x, target, c, rt, ctx.training, seed)
        if not math.isfinite(loss):
            raise TrainingError(
                f"loss became {loss} at epoch {state.epoch + 1}, step {state.step + 1}; training stopped so it does "
                "not go on with garbage. Lower --lr, set --grad-clip 1, or try --precision fp32"
            )
        state.step, state.batch_in_epoch = state.step + 1, b + 1
        stats["loss_sum"], stats["loss_n"] = stats["loss_sum"] + loss, stats["loss_n"] + 1
        stats["images"] += len(images) * rt.world_size
        _progress(ctx, bar, stats, t0, b, len(batches), state.epoch)
        if c.checkpoint_every and state.step % c.checkpoint_every == 0:
            save_last(ctx, state)
        if _should_stop(ctx, state):
            break
    bar.close()
    stats["train_time"] = time.perf_counter() - t0
    stats["partial"] = state.batch_in_epoch < len(batches)
    distributed.sync_buffers(ctx.training.model, rt)
    return stats


def _set_lr(ctx: Context, step: int, epoch: int) -> float:
    lr = ctx.lr(step)
    for group in ctx.training.optimizer.param_groups:
        group["lr"] = lr * lr_scale(group.get("encoder", False), ctx.config.finetune, epoch)
    return lr


def _progress(ctx: Context, bar, stats: dict, t0: float, b: int, n: int, epoch: int) -> None:
    elapsed = max(time.perf_counter() - t0, 1e-9)
    loss, rate = stats["loss_sum"] / stats["loss_n"], stats["images"] / elapsed
    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.1f}")
    bar.update(1)
    if bar.disable and (b + 1) % max(1, n // 4) == 0 and b + 1 < n:
        ctx.run.log(f"  epoch {epoch + 1} step {b + 1}/{n} loss {loss:.4f} {rate:.1f} img/s")


def _should_stop(ctx: Context, state: LoopState) -> bool:
    """Set state.stopped when a limit is reached; all ranks stop at the same step."""
    if ctx.interrupted[0]:
        state.stopped = "interrupted"
    elif ctx.config.max_steps and state.step >= ctx.config.max_steps:
        state.stopped = "max_steps"
    elif ctx.budget.expired():
        state.stopped = "time_limit"
    if distributed.any_rank(ctx.rt, bool(state.stopped)):
        state.stopped = state.stopped or "peer"
        return True
    return False


def validate(ctx: Context, state: LoopState, stats: dict) -> tuple[dict, float]:
    """The metrics row of the epoch just ended and the score that picks the best checkpoint."""
    train_time = stats["train_time"]
    row = {
        "epoch": state.epoch,
        "step": state.step,
        "train_loss": stats["loss_sum"] / max(1, stats["loss_n"]),
        "lr": stats["lr"],
        "seconds": round(train_time, 2),
        "images_per_s": round(stats["images"] / max(train_time, 1e-9), 2),
        "data_fraction": round(stats["data_time"] / max(train_time, 1e-9), 4),
    }
    t_val = time.perf_counter()
    if len(ctx.data.val):
        fields, score = ctx.task.validate(_segmenter(ctx), ctx.data.val, ctx.training.loss_fn, ctx.config)
        row.update({**NO_SCORES, **fields})
    else:
        row.update(NO_SCORES)
        score = -row["train_loss"]
    row["val_seconds"] = round(time.perf_counter() - t_val, 2)
    return row, score


def _segmenter(ctx: Context) -> Segmenter:
    return Segmenter(ctx.training.model, ctx.meta, ctx.rt)


def record_epoch(ctx: Context, state: LoopState, row: dict, score: float) -> None:
    """Log the row, save last.pt first (a kill in what follows loses nothing), then files and best.pt."""
    state.history.append(row)
    improved = score > state.best
    state.best, state.bad_epochs = (score, 0) if improved else (state.best, state.bad_epochs + 1)
    ctx.run.log(
        f"epoch {row['epoch']}/{ctx.config.epochs}  train_loss {row['train_loss']:.4f}  "
        f"val_loss {row['val_loss']:.4f}  dice {row['val_dice']:.4f}  iou {row['val_iou']:.4f}  "
        f"lr {row['lr']:.2e}  {row['seconds']:.1f}s  {row['images_per_s']:.1f} img/s  "
        f"data {row['data_fraction']:.0%}" + ("  *" if improved else "")
    )
    save_last(ctx, state)
    ctx.run.record(state.history)
    every = ctx.config.sample_every
    if every and (state.epoch % every == 0 or state.epoch == 1):
        ctx.run.samples(_segmenter(ctx), ctx.data.val, state.epoch)
    if improved:
        train_state = {"epoch": state.epoch, "step": state.step, "best_score": state.best}
        ctx.run.save(_payload(ctx, train_state), ctx.run.best)


def _payload(ctx: Context, train_state: dict) -> dict:
    return {**ctx.meta.to_payload(), "state_dict": ctx.training.model.state_dict(), "train_state": train_state}


def save_starting_point(ctx: Context, state: LoopState) -> None:
    """epochs 0: no training; the starting model (e.g. an --init one on this data) is validated and saved
    as best.pt and last.pt, so it can be evaluated, exported or served like any trained one."""
    stats = {"train_time": 0.0, "loss_sum": 0.0, "loss_n": 0, "images": 0, "data_time": 0.0, "lr": 0.0}
    row, score = validate(ctx, state, stats)
    state.history.append({**row, "epoch": 0, "train_loss": math.nan})
    state.best = score
    ctx.run.log(f"epochs 0: the starting point, not trained: val dice {row['val_dice']:.4f} iou {row['val_iou']:.4f}")
    save_last(ctx, state)
    ctx.run.save(_payload(ctx, {"epoch": 0, "step": 0, "best_score": score}), ctx.run.best)


def save_last(ctx: Context, state: LoopState) -> None:
    """RUN/checkpoints/last.pt: weights, optimiser, scaler and loop state, enough to resume exactly."""
    if not ctx.rt.is_main:
        return
    t = ctx.training
    scaler = t.scaler.state_dict() if t.scaler.is_enabled() else None
    write_last(ctx.run.last, ctx.meta, t.model.state_dict(), t.optimizer.state_dict(), scaler, state)


def _finish(ctx: Context, state: LoopState) -> FitResult:
    stopped = state.stopped or "completed"
    run = ctx.run
    result = FitResult(run.path, run.best, run.last, state.best, state.epoch, state.step, stopped, state.history)
    result.model = distributed.unwrap(ctx.training.model)
    run.record(state.history, final=True)
    ctx.loader.close()
    ctx.train_model = None  # free the DDP wrapper before the final barrier (see distributed.finish)
    distributed.finish(ctx.rt)
    if stopped == "interrupted":
        run.log(f"interrupted; saved {run.last}. Resume with:\n  unetkit train --resume {run.path}")
    else:
        run.log(f"done ({stopped}) in {ctx.budget.elapsed():.0f}s; best val score {state.best:.4f}")
        run.log(f"best checkpoint: {run.best}\nplots: {run.path / 'curves.png'}, {run.path / 'samples'}")
    return result
