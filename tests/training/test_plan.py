"""Training is planned once: under --time-budget with an --init, each decision runs exactly once (the
CLI used to plan and then fit planned again), and the plan the loop gets is frozen."""

import dataclasses
from pathlib import Path

import pytest

import unetkit.training.autoconfig
import unetkit.training.finetune
import unetkit.training.plan
from unetkit.cli import main
from unetkit.training.plan import Plan

PREMOVE = Path(__file__).resolve().parents[1] / "fixtures" / "premove"
COUNTED = {
    unetkit.training.plan: ("check_dataset", "start_from", "resolve_norm", "demo_config", "with_class_weights"),
    unetkit.training.finetune: ("load_source",),
    unetkit.training.autoconfig: ("zero_shot",),
}


def count_calls(monkeypatch) -> dict[str, int]:
    calls = {}
    for module, names in COUNTED.items():
        for name in names:
            real = getattr(module, name)
            calls[name] = 0

            def counted(*args, _real=real, _name=name, **kwargs):
                calls[_name] += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(module, name, counted)
    return calls


def test_a_time_budget_run_with_an_init_decides_each_thing_once(tmp_path, monkeypatch, capsys):
    """On the demo data (no --data), so writing it is counted too."""
    calls = count_calls(monkeypatch)
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--time-budget", "4s", "--init", str(PREMOVE / "seg_best.pt")]
    assert main([*args, "--precision", "fp32", "--sample-every", "0"]) == 0
    assert calls == {
        "check_dataset": 1, "start_from": 1, "resolve_norm": 1, "demo_config": 1, "with_class_weights": 1,
        "load_source": 1, "zero_shot": 1,
    }  # fmt: skip
    log = (run / "train.log").read_text()
    assert log.count("init: starting from") == 1 and log.count("init: loaded") == 1
    assert (run / "autoconfig.json").is_file() and "autoconfig: chose" in capsys.readouterr().out
    assert (run / "demo_data" / "train").is_dir()


def test_the_plan_is_frozen():
    assert dataclasses.is_dataclass(Plan) and Plan.__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        Plan.__new__(Plan).config = None


@pytest.mark.parametrize("interactive, share", [(True, 0.9), (False, 0.0)])
def test_crop_mode_click_training_places_its_crops_on_objects(demo_dir, tmp_path, interactive, share):
    """A click sample is one object: crop-mode click runs place clicks.object_crops of their crops on a
    labelled pixel; plain segmentation keeps uniform crops."""
    from unetkit.config.io import merge, resolve
    from unetkit.data.check import check_dataset
    from unetkit.data.datasets import RandomCropDataset

    config = resolve(None, None, merge({"data": {"root": str(demo_dir), "resize": "crop", "size": (16, 16)}},
                                       {"clicks": {"interactive": interactive}}))  # fmt: skip
    _, splits, spec = check_dataset(config.data)
    data, _ = unetkit.training.plan._datasets(config, splits, spec, tmp_path, print)
    assert isinstance(data.train, RandomCropDataset) and data.train.foreground == share
