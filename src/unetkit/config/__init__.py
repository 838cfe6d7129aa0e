"""Typed, frozen, validated configuration: the schemas (schema), reading them from files and flags
(io), and named recipes (presets). `from unetkit.config import TrainConfig` names the schemas."""

from unetkit.config.inference import EvaluateConfig, InferenceOptions, PredictConfig
from unetkit.config.schema import (
    AugmentConfig,
    ClickConfig,
    DataConfig,
    FinetuneConfig,
    LossConfig,
    NetConfig,
    OptimConfig,
    TrainConfig,
    check_net,
    check_runtime,
    parse_bytes,
    parse_duration,
)

__all__ = [
    "EvaluateConfig",
    "InferenceOptions",
    "PredictConfig",
    "AugmentConfig",
    "ClickConfig",
    "DataConfig",
    "EvaluateConfig",
    "FinetuneConfig",
    "InferenceOptions",
    "LossConfig",
    "NetConfig",
    "OptimConfig",
    "PredictConfig",
    "TrainConfig",
    "check_net",
    "check_runtime",
    "parse_bytes",
    "parse_duration",
]
