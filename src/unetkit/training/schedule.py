"""When things happen in training: the learning rate per step, how many steps the schedule spans,
which batches each epoch holds, and a time budget whose clock can be replaced in tests."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Clock = Callable[[], float]


def lr_at(step: int, total: int, warmup: int, base: float, schedule: str) -> float:
    """Learning rate for a global step: linear warmup, then cosine / poly(0.9) decay or constant."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return base
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * t))
    return base * (1 - t) ** 0.9


def schedule_steps(epochs: int, max_steps: int, steps_per_epoch: int) -> int:
    """Steps the LR schedule spans: all epochs, or max_steps when that comes first."""
    total = steps_per_epoch * epochs
    return min(total, max_steps) if max_steps else total


def batches_for_epoch(
    n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1, drop_last: bool = True
) -> list[list[int]]:
    """The epoch's shuffled batches for this rank; the order depends only on (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 7919 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    per_rank = n // world if drop_last else math.ceil(n / world)
    mine = order[rank::world][:per_rank]
    if drop_last and len(mine) >= batch_size:
        mine = mine[: len(mine) - len(mine) % batch_size]
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]


def epochs_to_fill(limit_s: float, elapsed_s: float, epochs_done: int, epoch_s: float, share: float = 0.97) -> int:
    """Total epochs that end by `share` of the time limit, given the seconds one epoch takes
    (the rest of the limit is slack for the last save). At least one more epoch."""
    left = share * limit_s - elapsed_s
    return epochs_done + max(1, int(left // max(epoch_s, 1e-9)))


@dataclass
class TimeBudget:
    """Seconds since the run started, against an optional limit (0 = none)."""

    limit_s: float = 0.0
    clock: Clock = time.monotonic
    start: float = field(default=-1.0)

    def __post_init__(self) -> None:
        if self.start < 0:
            self.start = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def expired(self) -> bool:
        return bool(self.limit_s) and self.elapsed() >= self.limit_s


@dataclass
class FillPlanner:
    """fill_time_limit: the end of epoch 1 (which also fills caches) starts a stopwatch; after the next
    `val_every` epochs (one validation among them) the measured epoch time re-sets the epoch count
    so the LR schedule ends at the limit instead of being cut off or ending early. Once each later share
    of the limit in `looks_at` has gone, the epochs since the last look re-set it again: the first window
    holds the first validation and best checkpoint, often slower than the rest (new shapes, first
    writes), and alone it left runs ending a sixth early; with a look at a third only, runs on a VM whose
    speed drifts still ended 8-19% early (ISBI, --time-budget 68s / 113s / 108s: 60 / 103 / 88 s)."""

    budget: TimeBudget
    val_every: int
    enabled: bool
    looks_at: tuple[float, ...] = (0.0, 1 / 3, 2 / 3)  # shares of the limit before each look may happen
    mark_s: float = 0.0  # elapsed seconds at the start of the current measuring window
    mark_epoch: int = 0
    looks: int = 0

    def at_epoch_start(self, epoch: int) -> tuple[int, float] | None:
        """(new total epochs, seconds per epoch) once per `looks_at`, at validation boundaries; else None."""
        if not self.enabled:
            return None
        if epoch == 1:
            self.mark_s, self.mark_epoch = self.budget.elapsed(), 1
            return None
        window = epoch - self.mark_epoch
        if window < self.val_every or window % self.val_every:
            return None
        now = self.budget.elapsed()
        if now < self.looks_at[self.looks] * self.budget.limit_s:
            return None
        self.looks += 1
        self.enabled = self.looks < len(self.looks_at)
        per_epoch = (now - self.mark_s) / window
        self.mark_s, self.mark_epoch = now, epoch
        return epochs_to_fill(self.budget.limit_s, now, epoch, per_epoch), per_epoch
