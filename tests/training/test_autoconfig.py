import json

import pytest

from conftest import tiny_config
from unetkit.cli import main
from unetkit.training import autoconfig, network_cost
from unetkit.training.autoconfig import epochs_for_budget, fingerprint
from unetkit.training.plan import plan_for_budget as plan


@pytest.fixture
def fast_steps(monkeypatch):
    """Step times from convolution cost instead of real timing: the rule is tested, not the machine."""
    seconds_per_gmac = 0.01

    def fake_time_step(config, num_classes, steps=2):
        return seconds_per_gmac * network_cost.unet_macs(config) * config.batch_size / 1e9

    monkeypatch.setattr(autoconfig, "time_step", fake_time_step)


def test_fingerprint(demo_dir):
    fp = fingerprint(tiny_config(data={"root": str(demo_dir)}))
    assert fp["median_size_hw"] == [40, 48] and fp["num_classes"] == 2
    assert 0 < fp["foreground_fraction"] < 1 and sum(fp["pairs"].values()) == 24


def test_epochs_for_budget_hand_values():
    # 10 steps of 0.5 s + 30 val images * 0.5 s / 8 / 3 = 5.625 s per epoch; 0.85 * 100 / 5.625 = 15.1
    assert epochs_for_budget(100, 10, 0.5, 30, 8) == (15, 5.625)
    assert epochs_for_budget(1, 10, 0.5, 30, 8)[0] == 1  # never zero


def test_plan_fits_the_budget_and_writes_its_reasoning(demo_dir, tmp_path, fast_steps):
    cfg = tiny_config(data={"root": str(demo_dir)})
    planned = plan(cfg, budget_s=20, out=tmp_path)
    why = json.loads((tmp_path / "autoconfig.json").read_text())
    assert why["candidates_measured"] and why["chosen"]["epochs"] == planned.epochs >= 1
    assert planned.data.size == (128, 128)  # small images: the smallest candidate size
    # The time limit is the whole budget (its clock runs from before the data check); the planner's own
    # measuring comes out of what training gets.
    assert planned.time_limit == "20.0s" and why["time_limit_seconds"] == 20 and planned.fill_time_limit
    spent = why["seconds_before_planning"] + why["measurement_seconds"]
    est = why["chosen"]["estimated_epoch_seconds"] * planned.epochs
    assert est <= 0.85 * 20 - spent + 1e-6
    # Nothing reaches the wanted steps in 20 s: the cheapest candidate at half its batch (more updates).
    # With 200 s, the first in the preference order (largest size, then widest) whose affordable steps
    # reach the needed ones.
    rows = [r for r in why["candidates_measured"] if not r["measured"]]
    assert all(r["steps_affordable"] < r["steps_needed"] for r in rows) and planned.model.widths == (16, 32, 64, 128)
    assert planned.batch_size == 4 and all(r["batch"] == 8 for r in rows)
    roomy = plan(cfg, budget_s=200, out=tmp_path)
    rows = json.loads((tmp_path / "autoconfig.json").read_text())["candidates_measured"]
    first = next(r for r in rows if not r["measured"] and r["steps_affordable"] >= r["steps_needed"])
    assert list(roomy.model.widths) == first["widths"] != [16, 32, 64, 128]


def test_plan_keeps_the_images_aspect_ratio(tmp_path, fast_steps):
    from unetkit.data.demo import write_demo

    wide = write_demo(tmp_path / "wide", num_images=12, size=(40, 72), seed=2)
    planned = plan(tiny_config(data={"root": str(wide)}), budget_s=20, out=tmp_path)
    assert planned.data.size == (128, 224)  # short side 128, long side 128 * 72/40 rounded to 32


def test_plan_measures_for_real(demo_dir, tmp_path):
    """One real calibration on this machine: a positive step time, and the chosen net confirmed."""
    planned = plan(tiny_config(data={"root": str(demo_dir)}), budget_s=5, out=tmp_path)
    why = json.loads((tmp_path / "autoconfig.json").read_text())
    measured = [r for r in why["candidates_measured"] if r["measured"]]
    assert measured and all(r["seconds_per_step"] > 0 for r in measured) and planned.epochs >= 1


def test_cli_time_budget(demo_dir, tmp_path, fast_steps):
    assert main(["train", "--data", str(demo_dir), "--out", str(tmp_path / "r"), "--time-budget", "2s"]) == 0
    assert (tmp_path / "r" / "autoconfig.json").is_file() and (tmp_path / "r" / "checkpoints" / "best.pt").is_file()
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    why = json.loads((tmp_path / "r" / "autoconfig.json").read_text())
    assert saved["time_limit"] == "2.0s" and why["time_limit_seconds"] == 2 and saved["fill_time_limit"] is True


def test_network_cost_counts_the_seed_by_hand_and_an_encoder_as_built():
    seed = tiny_config(model={"widths": (32, 64, 128, 256)}, data={"size": (256, 256)})
    assert network_cost.network_macs(seed) == network_cost.unet_macs(seed)
    lite = tiny_config(model={"widths": (32, 64, 128, 256), "encoder": "efficientnet-lite0"}, data={"size": (256, 256)})
    small = tiny_config(
        model={"widths": (32, 64, 128, 256), "encoder": "efficientnet-lite0"}, data={"size": (128, 128)}
    )
    macs = network_cost.network_macs(lite)
    assert 2e9 < macs < 5e9  # counted as built (FLOP counter on the meta device)
    assert abs(network_cost.network_macs(small) * 4 / macs - 1) < 0.01  # fully convolutional: cost ~ pixels


def test_a_short_budget_measures_only_the_cheapest_network(demo_dir, tmp_path, monkeypatch):
    """Measuring costs three steps of a network: a short budget measures the cheapest candidate alone
    (a mid-sized reference took 30 s of a 39 s budget on a 2-core CPU); a roomy one measures a mid-sized
    one too, and predicts the costlier candidates from it."""
    measured = []

    def fake_time_step(config, num_classes, steps=2):
        measured.append((config.data.size, config.model.widths, config.batch_size))
        return 0.01 * network_cost.unet_macs(config) * config.batch_size / 1e9

    monkeypatch.setattr(autoconfig, "time_step", fake_time_step)
    cfg = tiny_config(data={"root": str(demo_dir)})
    plan(cfg, budget_s=5, out=tmp_path)
    assert {m[:2] for m in measured} == {((128, 128), (16, 32, 64, 128))}  # the cheapest (and at half its batch)
    measured.clear()
    plan(cfg, budget_s=3000, out=tmp_path)
    assert measured[:2] == [((128, 128), (16, 32, 64, 128), 8), ((128, 128), (32, 64, 128, 256), 8)]


def test_val_every_keeps_validations_apart():
    assert autoconfig.val_every(24, 5) == 2  # 20 images at batch 4: every 10 steps, not every 5
    assert autoconfig.val_every(400, 100) == 10  # at most ~40 validations
    assert autoconfig.val_every(3, 50) == 1


def test_process_age_counts_this_process_start():
    import time

    from unetkit.runtime import process_age

    age = process_age()
    time.sleep(0.05)
    assert 0 < age < process_age()
