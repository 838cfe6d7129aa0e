"""training.memory_format: a long fp32 CPU run times both memory formats and keeps the faster; others don't time."""

import dataclasses

import torch

from unetkit.config import TrainConfig
from unetkit.config.io import build
from unetkit.runtime import setup
from unetkit.training.memory_format import MIN_STEPS, choose


def timer(cl: float, nchw: float, calls: list):
    """A stand-in for autoconfig.time_step: seconds per step by the config's channels_last."""

    def time_step(config: TrainConfig, num_classes: int) -> float:
        calls.append((config.channels_last, num_classes))
        return cl if config.channels_last else nchw

    return time_step


def decide(cl: float, nchw: float, steps: int = MIN_STEPS, precision: str = "fp32", **model):
    calls, lines = [], []
    config = build(TrainConfig, {"model": model})
    rt = choose(config, setup("cpu", precision, channels_last=True), 2, steps, lines.append, timer(cl, nchw, calls))
    return rt.channels_last, calls, lines


def test_a_long_run_keeps_the_faster_format_and_says_what_it_timed():
    channels_last, calls, lines = decide(cl=1.0, nchw=0.8)
    assert channels_last is False and calls == [(True, 2), (False, 2), (True, 2)]
    assert lines == ["layout: timed 1.000 s/step channels_last, 0.800 s/step NCHW: NCHW"]
    channels_last, _, lines = decide(cl=0.5, nchw=0.8)
    assert channels_last is True and lines[0].endswith("channels_last")


def test_nchw_must_win_by_the_margin_as_a_few_steps_are_noisy():
    assert decide(cl=1.0, nchw=0.97)[0] is True
    assert decide(cl=1.0, nchw=0.94)[0] is False


def test_short_runs_bf16_and_encoders_are_not_timed():
    for kwargs in ({"steps": MIN_STEPS - 1}, {"steps": 0}, {"precision": "bf16"}, {"encoder": "efficientnet-lite0"}):
        channels_last, calls, lines = decide(cl=1.0, nchw=0.1, **kwargs)
        assert channels_last is True and calls == [] and lines == []


def test_groupnorm_trains_nchw_without_timing_and_a_user_choice_of_nchw_stands():
    channels_last, calls, lines = decide(cl=0.1, nchw=1.0, norm="group")
    assert channels_last is False and calls == [] and lines[0].startswith("layout: NCHW")
    config = build(TrainConfig, {})
    rt = setup("cpu", "fp32", channels_last=False)
    calls = []
    assert choose(config, rt, 2, 10 * MIN_STEPS, print, timer(0.1, 1.0, calls)).channels_last is False and not calls


def test_distributed_and_cuda_runs_are_not_timed():
    config, calls = build(TrainConfig, {}), []
    cpu = setup("cpu", "fp32", channels_last=True)
    for rt in (dataclasses.replace(cpu, world_size=2), dataclasses.replace(cpu, device=torch.device("cuda"))):
        assert choose(config, rt, 2, 10 * MIN_STEPS, print, timer(1.0, 0.1, calls)).channels_last is True
    assert calls == []


def test_the_real_timer_runs_on_a_tiny_network():
    """With autoconfig.time_step itself: both formats are timed and one is kept (which one is the CPU's call)."""
    config = build(TrainConfig, {"model": {"widths": [4, 8]}, "data": {"size": [16, 16]}, "batch_size": 2})
    lines = []
    rt = choose(config, setup("cpu", "fp32", channels_last=True), 2, MIN_STEPS, lines.append)
    assert len(lines) == 1 and lines[0].startswith("layout: timed")
    assert lines[0].endswith("NCHW") is (rt.channels_last is False)


def test_channels_last_is_timed_again_after_nchw_and_its_better_time_counts():
    """The first timing of a process also pays its warm-up: channels_last gets a second try after NCHW."""
    times = iter([1.0, 0.9, 0.88])  # channels_last (cold), NCHW, channels_last again

    def time_step(config: TrainConfig, num_classes: int) -> float:
        return next(times)

    rt = choose(build(TrainConfig, {}), setup("cpu", "fp32", channels_last=True), 2, MIN_STEPS, print, time_step)
    assert rt.channels_last is True
