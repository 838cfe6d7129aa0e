import json
import time

from conftest import tiny_config
from unetkit.autoconfig import fingerprint, plan
from unetkit.cli import main


def test_fingerprint(demo_dir):
    fp = fingerprint(tiny_config(data={"root": str(demo_dir)}))
    assert fp["median_size_hw"] == [40, 48] and fp["num_classes"] == 2
    assert 0 < fp["foreground_fraction"] < 1 and sum(fp["pairs"].values()) == 24


def test_plan_fits_the_budget_and_writes_its_reasoning(demo_dir, tmp_path):
    cfg = tiny_config(data={"root": str(demo_dir)})
    planned = plan(cfg, budget_s=20, out=tmp_path)
    why = json.loads((tmp_path / "autoconfig.json").read_text())
    assert why["candidates_measured"] and why["chosen"]["epochs"] == planned.epochs >= 1
    assert planned.data.size == (128, 128)  # small images: the smallest candidate size
    assert planned.time_limit == "20s"
    est = why["chosen"]["estimated_epoch_seconds"] * planned.epochs + why["measurement_seconds"]
    assert planned.epochs == 1 or est <= 20  # at least one epoch even when measuring ate the budget


def test_cli_time_budget(demo_dir, tmp_path):
    t = time.monotonic()
    assert main(["train", "--data", str(demo_dir), "--out", str(tmp_path / "r"), "--time-budget", "12s"]) == 0
    assert time.monotonic() - t < 40
    assert (tmp_path / "r" / "autoconfig.json").is_file() and (tmp_path / "r" / "checkpoints" / "best.pt").is_file()


def test_plan_keeps_the_images_aspect_ratio(tmp_path):
    from unetkit.demo import write_demo

    wide = write_demo(tmp_path / "wide", num_images=12, size=(40, 72), seed=2)
    planned = plan(tiny_config(data={"root": str(wide)}), budget_s=20, out=tmp_path)
    assert planned.data.size == (128, 224)  # short side 128, long side 128 * 72/40 rounded to 32
