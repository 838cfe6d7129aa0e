"""The training loop's contracts: limits, early stopping, NaN guard, bad-data policy, learning."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from unetkit.cli import main
from unetkit.config import ConfigError
from unetkit.engine import fit
from unetkit.inference import InferenceSpec, gaussian_weights, predict_logits, sliding_window, tta_flips_for
from unetkit.model import UNet
from unetkit.runtime import setup
from unetkit.schedule import batches_for_epoch, epochs_to_fill, lr_at
from unetkit.steps import resolve_norm


def test_max_steps_stops_and_still_evaluates_and_saves(demo_dir, tmp_path):
    r = fit(tiny_config(data={"root": str(demo_dir)}, epochs=50, max_steps=3), out=tmp_path / "r")
    assert r.stopped == "max_steps" and r.steps == 3
    assert len(r.history) == 1 and not math.isnan(r.history[0]["val_dice"])
    assert r.best_checkpoint.is_file() and r.last_checkpoint.is_file()


def test_time_limit_stops_cleanly(demo_dir, tmp_path):
    r = fit(tiny_config(data={"root": str(demo_dir)}, epochs=500, time_limit="2s"), out=tmp_path / "r")
    assert r.stopped == "time_limit" and r.epochs_done < 500 and r.best_checkpoint.is_file()


def test_epochs_to_fill_hand_values():
    # 100 s limit, 20 s gone, 5 s per epoch: 0.97 * 100 - 20 = 77 s left -> 15 more epochs.
    assert epochs_to_fill(100, 20, 3, 5.0) == 18
    # Already past the limit: still one more epoch, never zero.
    assert epochs_to_fill(100, 120, 3, 5.0) == 4


def test_fill_time_limit_resets_epochs_so_the_schedule_ends_in_time(demo_dir, tmp_path):
    # 500 planned epochs cannot fit in 8 s: after epoch 2 the run measures its epoch time and plans
    # fewer, so the LR decays to ~0 by the end instead of being cut off at its peak.
    cfg = tiny_config(data={"root": str(demo_dir)}, epochs=500, time_limit="8s", fill_time_limit=True)
    r = fit(cfg, out=tmp_path / "r")
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert 2 < saved["epochs"] < 500
    last = torch.load(r.last_checkpoint, weights_only=True)
    assert last["train_config"]["epochs"] == saved["epochs"]
    assert "500 -> " in (tmp_path / "r" / "train.log").read_text()
    if r.stopped == "completed":  # the usual case; a loaded machine may still reach the limit first
        assert r.epochs_done == saved["epochs"]
        assert r.history[-1]["lr"] < 0.2 * cfg.optim.lr


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


def test_nan_loss_stops_with_a_message_naming_the_step(demo_dir, tmp_path, capsys):
    code = main(
        [
            "train",
            "--data",
            str(demo_dir),
            "--out",
            str(tmp_path / "r"),
            "--widths",
            "4,8",
            "--size",
            "32,32",
            "--lr",
            "1e30",
            "--grad-clip",
            "0",
            "--warmup-epochs",
            "0",
            "--precision",
            "fp32",
            "--epochs",
            "3",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "loss became nan at epoch" in err.lower() or "loss became inf at epoch" in err.lower()
    assert "step" in err


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


def test_crop_mode_and_multiclass_learns(multiclass_dir, tmp_path):
    cfg = tiny_config(
        data={"root": str(multiclass_dir), "resize": "crop", "size": (32, 32)},
        epochs=12,
        model={"widths": (8, 16)},
        precision="fp32",
    )
    r = fit(cfg, out=tmp_path / "r")
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    # class_balance auto: median-frequency weights for 3+ classes, saved so a resume reuses them
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    weights = saved["loss"]["class_weights"]
    assert len(weights) == 4 and min(weights) > 0 and max(weights) > 1 > min(weights)
    assert saved["model"]["norm"] == "group"  # norm auto: a 16-image training set gets GroupNorm


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
