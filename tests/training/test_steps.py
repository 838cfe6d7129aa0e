"""training.steps: `--optimizer auto` and an unset `--lr` become concrete for the network trained."""

import pytest

from unetkit.config import TrainConfig
from unetkit.config.io import build, merge
from unetkit.errors import ConfigError
from unetkit.training.steps import resolve_optimizer


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
