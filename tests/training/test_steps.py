"""training.steps: `--optimizer auto` and an unset `--lr` become concrete for the network trained; the layout
a training step runs in."""

import dataclasses

import pytest
import torch

from unetkit.config import TrainConfig
from unetkit.config.io import build, merge
from unetkit.errors import ConfigError
from unetkit.runtime import setup
from unetkit.training.steps import build_training, resolve_optimizer, standard_batch_fn, train_step, training_runtime


def config(**optim) -> TrainConfig:
    return build(TrainConfig, merge({}, {"optim": optim}))


def test_the_seed_network_gets_sgd_and_a_pretrained_encoder_adamw():
    seed = resolve_optimizer(config()).optim
    assert (seed.optimizer, seed.lr) == ("sgd", 0.05)
    lite = resolve_optimizer(build(TrainConfig, {"model": {"encoder": "efficientnet-lite0"}})).optim
    assert (lite.optimizer, lite.lr) == ("adamw", 1e-3)


def test_what_the_user_sets_is_kept():
    o = resolve_optimizer(config(optimizer="adam")).optim
    assert (o.optimizer, o.lr) == ("adam", 1e-3)  # unset lr: the optimizer's own default
    o = resolve_optimizer(config(optimizer="sgd", lr=0.2)).optim
    assert (o.optimizer, o.lr) == ("sgd", 0.2)
    assert resolve_optimizer(resolve_optimizer(config())) == resolve_optimizer(config())  # idempotent
    with pytest.raises(ConfigError, match="optimizer"):
        config(optimizer="lion")


def test_a_groupnorm_unet_trains_nchw_in_fp32_on_a_cpu_and_everything_else_keeps_channels_last():
    """GroupNorm is several times slower channels_last on a CPU in fp32; bf16 and encoders keep channels_last."""
    cpu32, cpu16 = setup("cpu", "fp32", channels_last=True), setup("cpu", "bf16", channels_last=True)
    gn = build(TrainConfig, {"model": {"norm": "group"}})
    assert training_runtime(cpu32, gn).channels_last is False
    assert training_runtime(cpu16, gn).channels_last is True
    assert training_runtime(cpu32, build(TrainConfig, {"model": {"norm": "batch"}})).channels_last is True
    lite_gn = build(TrainConfig, {"model": {"norm": "group", "encoder": "efficientnet-lite0"}})
    assert training_runtime(cpu32, lite_gn).channels_last is True
    cuda = dataclasses.replace(cpu32, device=torch.device("cuda"))
    assert training_runtime(cuda, gn).channels_last is True


def test_the_step_runs_in_the_layout_the_rule_picks():
    """The model and its batches follow the layout: a GroupNorm network's weights and input are NCHW."""
    gn = build(TrainConfig, {"model": {"norm": "group", "widths": [4, 8]}, "data": {"size": [16, 16]}, "batch_size": 2})
    rt = training_runtime(setup("cpu", "fp32", channels_last=True), gn)
    training = build_training(gn, rt, num_classes=2)
    conv = next(m for m in training.model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1)
    assert conv.weight.is_contiguous() and not conv.weight.is_contiguous(memory_format=torch.channels_last)
    images, masks = torch.rand(2, 3, 16, 16), torch.zeros(2, 16, 16, dtype=torch.uint8)
    x, target = standard_batch_fn(gn, rt, [0.5] * 3, [0.25] * 3)(images, masks, 0)
    assert x.is_contiguous()
    assert train_step(training.model, x, target, gn, rt, training, 0) > 0
