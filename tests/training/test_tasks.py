"""The task seam, the run folder and the checkpoint metadata a run's context builds."""

import csv

from conftest import tiny_config
from unetkit.infer.checkpoint import CLICK_THRESHOLD
from unetkit.model import UNet
from unetkit.runtime import setup
from unetkit.training.context import make_meta
from unetkit.training.plan import make_plan
from unetkit.training.run_folder import METRIC_FIELDS, RunFolder
from unetkit.training.tasks import SEGMENTATION, task_for


def test_task_for_picks_the_click_task_for_interactive_configs():
    assert task_for(tiny_config()) is SEGMENTATION and SEGMENTATION.extra_channels == 0
    click = task_for(tiny_config(clicks={"interactive": True}))
    assert click.name == "interactive" and click.extra_channels == 3 and click.classes == ("background", "object")
    assert click.adapt_config(tiny_config()).loss.class_balance == "none"


def test_the_click_task_records_its_radius_and_threshold(demo_dir, tmp_path):
    config = tiny_config(data={"root": str(demo_dir)}, clicks={"interactive": True, "click_radius": 7})
    task = task_for(config)
    plan, _ = make_plan(config, tmp_path, lambda *_: None, task, setup("cpu", "fp32"))
    meta = task.adapt_meta(make_meta(plan, UNet(6, 1, (4, 8))), plan.config)
    assert meta.clicks == {"radius": 7, "threshold": CLICK_THRESHOLD} and meta.kind == "interactive"
    assert meta.mean == plan.mean and meta.split == plan.record.to_dict() and meta.model.in_channels == 6


def test_the_run_folder_writes_metrics_and_other_ranks_write_nothing(tmp_path):
    rows = [{**dict.fromkeys(METRIC_FIELDS, 0.1), "epoch": e, "train_loss": loss} for e, loss in ((1, 0.5), (2, 0.25))]
    RunFolder(tmp_path / "main").record(rows, final=True)
    with (tmp_path / "main" / "metrics.csv").open() as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == METRIC_FIELDS and [r["train_loss"] for r in read] == ["0.5", "0.25"]
    assert (tmp_path / "main" / "curves.png").is_file()
    other = RunFolder(tmp_path / "rank1", is_main=False)
    other.log("hello")
    other.record(rows, final=True)
    assert not (tmp_path / "rank1").exists()
