"""The training loop's contracts: limits, early stopping, NaN guard, bad-data policy, learning."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ticks, tiny_config
from unetkit.cli import main
from unetkit.data.check import check_dataset
from unetkit.data.datasets import SegmentationDataset
from unetkit.errors import ConfigError
from unetkit.infer.inference import InferenceSpec, gaussian_weights, predict_logits, sliding_window, tta_flips_for
from unetkit.metrics import confusion_matrix, scores
from unetkit.model import UNet
from unetkit.runtime import setup
from unetkit.training.loop import fit
from unetkit.training.schedule import FillPlanner, TimeBudget, batches_for_epoch, epochs_to_fill, lr_at
from unetkit.training.steps import build_training, load_batch, resolve_norm, train_step


def test_max_steps_stops_and_still_evaluates_and_saves(demo_dir, tmp_path):
    r = fit(tiny_config(data={"root": str(demo_dir)}, epochs=50, max_steps=3), out=tmp_path / "r")
    assert r.stopped == "max_steps" and r.steps == 3
    assert len(r.history) == 1 and not math.isnan(r.history[0]["val_dice"])
    assert r.best_checkpoint.is_file() and r.last_checkpoint.is_file()


def test_time_limit_stops_at_the_step_the_clock_says(demo_dir, tmp_path):
    # The clock advances 0.5 s per reading: read at the start, then after every step, so a 2 s
    # limit is reached after exactly 4 steps. Nothing sleeps.
    cfg = tiny_config(data={"root": str(demo_dir)}, epochs=500, time_limit="2s")
    r = fit(cfg, out=tmp_path / "r", clock=ticks(0.5))
    assert r.stopped == "time_limit" and r.steps == 4 and r.best_checkpoint.is_file()


def test_time_budget_counts_from_the_start():
    budget = TimeBudget(10.0, ticks(3.0))
    assert [budget.expired() for _ in range(4)] == [False, False, False, True]  # read at 3, 6, 9, 12 s
    assert not TimeBudget(0.0, ticks(100.0)).expired()  # no limit


def test_epochs_to_fill_hand_values():
    # 100 s limit, 20 s gone, 5 s per epoch: 0.97 * 100 - 20 = 77 s left -> 15 more epochs.
    assert epochs_to_fill(100, 20, 3, 5.0) == 18
    # Already past the limit: still one more epoch, never zero.
    assert epochs_to_fill(100, 120, 3, 5.0) == 4


def test_fill_planner_looks_again_when_the_first_window_was_slow():
    # Epoch 1 ends at 5 s; epoch 2 (first validation and save) takes 10 s, later ones 5 s. The first look
    # plans for 10 s epochs: 2 + (97 - 15) // 10 = 10 epochs, which would end at 55 s of the 100 s limit.
    # The second look, at the first epoch start past a third of the limit (35 s, epoch 6), measures
    # 5 s over epochs 2-5 and plans 6 + (97 - 35) // 5 = 18 epochs, ending at 95 s. Then the VM speeds
    # up: epochs take 2.5 s, so epoch e starts at 35 + 2.5 (e - 6) s and the run would end at ~65 s. The
    # third look, at the first epoch start past two thirds (67.5 s, epoch 19), measures 2.5 s over
    # epochs 6-18 and plans 19 + (97 - 67.5) // 2.5 = 30 epochs. Then it stops reading the clock (a
    # further read would exhaust `times`).
    times = iter([5.0, 15.0, 20.0, 25.0, 30.0, 35.0, *[35.0 + 2.5 * k for k in range(1, 14)]])
    planner = FillPlanner(TimeBudget(100.0, clock=lambda: next(times), start=0.0), val_every=1, enabled=True)
    looks = [planner.at_epoch_start(epoch) for epoch in range(1, 40)]
    assert looks[1] == (10, 10.0) and looks[5] == (18, 5.0) and looks[18] == (30, 2.5)
    assert [i for i, x in enumerate(looks) if x] == [1, 5, 18]
    # With validation every 2 epochs it looks only where a window holds whole validation periods.
    times = iter([2.0, 12.0, 50.0])
    planner = FillPlanner(TimeBudget(100.0, clock=lambda: next(times), start=0.0), val_every=2, enabled=True)
    assert [planner.at_epoch_start(e) for e in range(1, 6)] == [
        None,
        None,
        (3 + 85 // 5, 5.0),
        None,
        (5 + 47 // 19, 19.0),
    ]


def test_fill_time_limit_resets_epochs_so_the_schedule_ends_in_time(demo_dir, tmp_path):
    # One clock second per reading: each step reads it once, so an epoch of S steps "takes" S s, and
    # the planner reads it at the starts of epochs 2 and 3. It measures S + 1 s per epoch and re-plans
    # 500 epochs down to what ends by 97% of the 40 s limit; the LR then decays to ~0 by the end.
    cfg = tiny_config(data={"root": str(demo_dir)}, epochs=500, time_limit="40s", fill_time_limit=True, sample_every=0)
    r = fit(cfg, out=tmp_path / "r", clock=ticks(1.0))
    s = r.history[0]["step"]  # steps per epoch
    expected = epochs_to_fill(40, 2 * s + 2, 2, s + 1)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["epochs"] == expected < 500
    last = torch.load(r.last_checkpoint, weights_only=True)
    assert last["train_config"]["epochs"] == expected
    assert f"500 -> {expected} epochs" in (tmp_path / "r" / "train.log").read_text()
    assert r.stopped == "completed" and r.epochs_done == expected
    assert r.history[-1]["lr"] < 0.2 * saved["optim"]["lr"]  # the resolved lr (--lr unset: the optimizer's)


def test_fill_time_limit_needs_a_time_limit():
    with pytest.raises(ConfigError, match="fill_time_limit"):
        tiny_config(fill_time_limit=True)


def test_early_stopping(demo_dir, tmp_path):
    # lr tiny: nothing improves after the first epoch, so patience 2 stops at epoch 3.
    r = fit(
        tiny_config(data={"root": str(demo_dir)}, epochs=30, patience=2, optim={"lr": 1e-12, "warmup_epochs": 0}),
        out=tmp_path / "r",
    )
    assert r.stopped == "early_stopping" and r.epochs_done < 30


def _dataset_with_a_bad_pair(root, demo_dir):
    import shutil

    shutil.copytree(demo_dir, root)
    bad = sorted((root / "train" / "masks").iterdir())[0]
    Image.fromarray(np.full((40, 48), 77, np.uint8)).save(bad)
    return bad


def test_training_refuses_bad_data_or_skips_with_skip_bad(demo_dir, tmp_path, capsys):
    root = tmp_path / "data"
    bad = _dataset_with_a_bad_pair(root, demo_dir)
    args = ["train", "--data", str(root), "--widths", "4,8", "--size", "32,32", "--epochs", "1", "--precision", "fp32"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: 1 distinct value (77), expected {{0, 255}}" in err and "--skip-bad" in err
    assert main([*args, "--out", str(tmp_path / "b"), "--skip-bad"]) == 0
    assert f"skipping 1 bad pair(s): {bad.stem}" in capsys.readouterr().out


def test_overfits_one_multiclass_batch(multiclass_dir):
    """The step learns: 150 steps on one batch of 4 multi-class images fit them (mean IoU > 0.9)."""
    cfg = tiny_config(
        model={"widths": (8, 16, 32), "norm": "group"},
        augment={"hflip": 0.0, "affine": 0.0, "brightness": 0.0, "contrast": 0.0, "noise": 0.0},
        optim={"optimizer": "adamw", "lr": 0.01, "warmup_epochs": 0},
    )
    report, splits, spec = check_dataset(cfg.data.__class__(root=str(multiclass_dir)))
    dataset = SegmentationDataset(splits["train"][:4], spec, size=(48, 48))
    rt = setup("cpu", "fp32", channels_last=False)
    torch.manual_seed(0)
    training = build_training(cfg, rt, num_classes=4)
    x, target = load_batch(dataset, [0, 1, 2, 3], cfg, rt, [0.5] * 3, [0.25] * 3, seed=0)
    losses = [train_step(training.model, x, target, cfg, rt, training, seed=i) for i in range(150)]
    with torch.no_grad():
        pred = training.model.eval()(x).argmax(1)
    assert scores(confusion_matrix(pred, target, 4))["mean_iou"] > 0.9
    assert losses[-1] < 0.2 * losses[0]


def test_crop_mode_multiclass_weights_and_norm_from_the_data(multiclass_dir, tmp_path):
    cfg = tiny_config(data={"root": str(multiclass_dir), "resize": "crop", "size": (32, 32)}, epochs=1)
    fit(cfg, out=tmp_path / "r")
    # class_balance auto: median-frequency weights for 3+ classes, saved so a resume reuses them
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    weights = saved["loss"]["class_weights"]
    assert len(weights) == 4 and min(weights) > 0 and max(weights) > 1 > min(weights)
    assert saved["model"]["norm"] == "group"  # norm auto: a 34-image training set gets GroupNorm
    # ... which trains NCHW in fp32 on a CPU (training_runtime), said in the log and recorded
    fp32 = saved["runtime"]["precision"] == "fp32"
    assert saved["runtime"]["channels_last"] is not fp32
    assert ("layout: NCHW" in (tmp_path / "r" / "train.log").read_text()) is fp32


def test_norm_auto_follows_the_training_set_size():
    cfg = tiny_config()
    assert cfg.model.norm == "auto"
    assert resolve_norm(cfg, 99).model.norm == "group"
    assert resolve_norm(cfg, 100).model.norm == "batch"
    fixed = tiny_config(model={"norm": "instance"})
    assert resolve_norm(fixed, 10).model.norm == "instance"


def test_tta_uses_only_the_flips_seen_in_training():
    assert tta_flips_for(hflip=0.5, vflip=0.0, rot90=0.0) == (-1,)  # street scenes: never upside down
    assert tta_flips_for(hflip=0.5, vflip=0.5, rot90=0.0) == (-1, -2)
    assert tta_flips_for(hflip=0.0, vflip=0.0, rot90=0.0) == ()
    assert tta_flips_for(hflip=0.5, vflip=0.0, rot90=0.5) == (-1, -2)
    model = UNet(widths=(4, 8), norm="none").eval()
    rt = setup("cpu", "fp32", False)
    x = torch.rand(1, 3, 32, 32)
    spec = InferenceSpec(mean=(0.5,) * 3, std=(0.25,) * 3, resize="crop", size=(32, 32), binary=True)
    plain = predict_logits(model, x, spec, rt)
    xn = (x - 0.5) / 0.25
    with torch.no_grad():
        expected = (model(xn) + model(xn.flip(-1)).flip(-1)) / 2
    assert torch.allclose(predict_logits(model, x, spec, rt, tta=True), expected, atol=1e-5)
    assert not torch.allclose(plain, expected, atol=1e-5)


def test_batches_partition_across_ranks_and_depend_on_seed_and_epoch():
    a = batches_for_epoch(20, 4, seed=0, epoch=0)
    assert sorted(i for b in a for i in b) == list(range(20))
    assert batches_for_epoch(20, 4, 0, 0) == a and batches_for_epoch(20, 4, 0, 1) != a
    r0, r1 = batches_for_epoch(20, 4, 0, 0, rank=0, world=2), batches_for_epoch(20, 4, 0, 0, rank=1, world=2)
    assert len(r0) == len(r1) and not ({i for b in r0 for i in b} & {i for b in r1 for i in b})


def test_lr_schedule_shapes():
    assert lr_at(0, 100, 10, 1.0, "cosine") == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0, "cosine") == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0, "cosine") == pytest.approx(0.5)
    assert lr_at(100, 100, 10, 1.0, "poly") == pytest.approx(0.0)
    assert lr_at(50, 100, 0, 1.0, "constant") == 1.0


def test_sliding_window_matches_whole_image():
    torch.manual_seed(0)
    model = UNet(widths=(4, 8), norm="none").eval()
    rt = setup("cpu", "fp32", channels_last=False)
    x = torch.rand(1, 3, 70, 90)
    whole = model(x)
    tiled = sliding_window(model, x, rt, tile=48, overlap=0.5)
    assert tiled.shape == whole.shape
    # Away from tile borders the receptive field is covered; everywhere the blend is a weighted average.
    torch.testing.assert_close(tiled[..., 16:-16, 16:-16], whole[..., 16:-16, 16:-16], atol=0.05, rtol=0)
    w = gaussian_weights(48, 48, "cpu")
    assert w.argmax() in (23 * 48 + 23, 23 * 48 + 24, 24 * 48 + 23, 24 * 48 + 24) and w.min() > 0
    spec = InferenceSpec((0.5,) * 3, (0.25,) * 3, "crop", (32, 32), True, tile=48)
    assert predict_logits(model, x, spec, rt).shape == (1, 1, 70, 90)


def test_tensorboard_logging(demo_dir, tmp_path):
    pytest.importorskip("tensorboard")
    fit(tiny_config(data={"root": str(demo_dir)}, epochs=1, tensorboard=True), out=tmp_path / "r")
    assert list((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))


def test_val_every_validates_every_nth_epoch_and_the_last(demo_dir, tmp_path):
    r = fit(tiny_config(data={"root": str(demo_dir)}, epochs=5, val_every=2), out=tmp_path / "r")
    assert [row["epoch"] for row in r.history] == [2, 4, 5] and r.epochs_done == 5


def test_training_with_a_worker_process_equals_training_here(demo_dir, tmp_path):
    cfg = tiny_config(data={"root": str(demo_dir), "resize": "crop", "size": (24, 24)}, precision="fp32")
    runs = [
        fit(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, workers=w)), out=tmp_path / w) for w in "01"
    ]
    a, b = (torch.load(r.last_checkpoint, weights_only=True)["state_dict"] for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "1 data workers" in (tmp_path / "1" / "train.log").read_text()


def test_a_run_from_an_encoder_model_trains_channels_last_in_fp32(tmp_path, demo_dir):
    """The layout follows the network --init brings, not the config's default encoder."""
    lite = {"widths": (4, 8, 8, 8), "encoder": "efficientnet-lite0", "encoder_weights": "none"}
    source = fit(tiny_config(data={"root": str(demo_dir)}, model=lite, epochs=1, precision="fp32"), out=tmp_path / "a")
    assert json.loads((tmp_path / "a" / "config.json").read_text())["runtime"]["channels_last"] is True
    fit(tiny_config(data={"root": str(demo_dir)}, finetune={"init": str(source.best_checkpoint)}, epochs=1,
        precision="fp32"), out=tmp_path / "b")  # fmt: skip
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["model"]["encoder"] == "efficientnet-lite0" and saved["runtime"]["channels_last"] is True
