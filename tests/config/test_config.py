import pytest

import unetkit.config
from unetkit.config import TrainConfig, parse_duration, schema
from unetkit.config import inference as inference_schema
from unetkit.config.io import resolve
from unetkit.config.presets import PRESETS
from unetkit.errors import ConfigError


def test_precedence_defaults_preset_file_flags(tmp_path):
    assert resolve().optim.lr == TrainConfig().optim.lr
    seed = resolve("seed")
    assert seed.optim.lr == 1e-4 and seed.model.widths == (64, 128, 256, 512) and seed.data.size == (240, 240)
    assert seed.epochs == 60 and seed.batch_size == 8 and seed.loss.loss == "ce" and seed.optim.optimizer == "adam"
    assert seed.model.norm == "batch" and seed.loss.class_balance == "none"
    f = tmp_path / "c.toml"
    f.write_text("epochs = 7\n[optim]\nlr = 0.5\n[model]\nwidths = [8, 16]\n")
    cfg = resolve("seed", f, {"optim": {"lr": 0.25}})
    assert cfg.epochs == 7 and cfg.model.widths == (8, 16) and cfg.optim.lr == 0.25
    j = tmp_path / "c.json"
    j.write_text('{"batch_size": 3}')
    assert resolve(None, j).batch_size == 3


def test_unknown_keys_and_bad_values_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="optim.lrr: unknown key"):
        resolve(overrides={"optim": {"lrr": 1}})
    with pytest.raises(ConfigError, match="epochs: must be >= 0"):
        resolve(overrides={"epochs": -1})
    with pytest.raises(ConfigError, match="encoder_lr_scale: must be in"):
        resolve(overrides={"finetune": {"encoder_lr_scale": -0.1}})
    with pytest.raises(ConfigError, match="batch_size: expected int"):
        resolve(overrides={"batch_size": "many"})
    with pytest.raises(ConfigError, match="data.mask_mode"):
        resolve(overrides={"data": {"mask_mode": "weird"}})
    with pytest.raises(ConfigError, match="preset"):
        resolve("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [")
    with pytest.raises(ConfigError, match="cannot parse"):
        resolve(None, bad)


def test_strings_from_flags_are_coerced():
    cfg = resolve(
        overrides={"model": {"widths": "8,16,32"}, "compile": "true", "data": {"size": "64,96"}, "time_limit": "1h30m"}
    )
    assert cfg.model.widths == (8, 16, 32) and cfg.compile is True and cfg.data.size == (64, 96)
    assert parse_duration(cfg.time_limit) == 5400
    assert parse_duration("90s") == 90 and parse_duration("10m") == 600
    with pytest.raises(ConfigError, match="time_limit"):
        parse_duration("soon")


def test_every_preset_resolves_to_a_valid_config():
    for name, values in PRESETS.items():
        config = resolve(name)
        assert config.model.widths == tuple(values["model"]["widths"]) and config.epochs == values["epochs"], name
    assert resolve("seed").model.widths == (64, 128, 256, 512) and resolve("seed").optim.optimizer == "adam"


def test_the_config_package_names_each_schema_once():
    for name in unetkit.config.__all__:
        obj = getattr(unetkit.config, name)
        assert obj is getattr(schema, name, None) or obj is getattr(inference_schema, name, None), name
    assert {"TrainConfig", "EvaluateConfig", "PredictConfig", "parse_duration"} <= set(unetkit.config.__all__)
