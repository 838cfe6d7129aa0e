"""The memory format a training run's steps use on a CPU in fp32: a long run times both and keeps the faster.

Which format trains a plain BatchNorm U-Net faster in fp32 on a CPU moves with the network, its input
size and the CPU (AVX2 EPYC, benchmarks/bench_train.py --nchw: the seed network at 256 px, batch 8,
0.89x fp32 eager channels_last against 1.07x NCHW; widths 16-128 at 128 px, batch 4, 1.19x against
1.01x), so no fixed rule holds. A run of at least MIN_STEPS steps times a few steps in each (channels_last
before and after NCHW, as the first timing also pays the process's warm-up) and keeps the faster;
a shorter run keeps channels_last, where timing would cost more than it could save.
GroupNorm networks need no timing: they train NCHW (steps.training_runtime)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from unetkit.config import TrainConfig
from unetkit.runtime import Runtime
from unetkit.training.autoconfig import time_step
from unetkit.training.steps import fp32_cpu_unet, training_runtime

MIN_STEPS = 200  # the 9 steps timed stay within ~5% of the run
MARGIN = 0.05  # NCHW must be this much faster to be kept: a few steps on a shared CPU are noisy

Timer = Callable[[TrainConfig, int], float]  # (config, num_classes) -> seconds per step


def choose(config: TrainConfig, rt: Runtime, num_classes: int, planned_steps: int, log, timer: Timer = time_step):
    """The Runtime whose `channels_last` the run trains with; what was decided, and why, goes to `log`.
    `planned_steps` 0 (e.g. click-guided training, whose batches time_step does not make) never times."""
    layout = training_runtime(rt, config)
    if layout.channels_last != rt.channels_last:
        log("layout: NCHW, not channels_last: GroupNorm is several times slower channels_last in fp32 on a CPU")
    if not _worth_timing(config, layout, planned_steps):
        return layout
    first = timer(dataclasses.replace(config, channels_last=True), num_classes)
    nchw = timer(dataclasses.replace(config, channels_last=False), num_classes)
    # channels_last again, after: what is timed first also pays the process's own warm-up
    cl = min(first, timer(dataclasses.replace(config, channels_last=True), num_classes))
    keep_nchw = nchw < (1 - MARGIN) * cl
    log(
        f"layout: timed {cl:.3f} s/step channels_last, {nchw:.3f} s/step NCHW: "
        + ("NCHW" if keep_nchw else "channels_last")
    )
    return dataclasses.replace(layout, channels_last=not keep_nchw)


def _worth_timing(config: TrainConfig, rt: Runtime, planned_steps: int) -> bool:
    """A plain U-Net in fp32 on one CPU process, channels_last allowed, and a run long enough."""
    return fp32_cpu_unet(rt, config) and not rt.distributed and rt.channels_last and planned_steps >= MIN_STEPS
