"""End-to-end through the CLI entry point: train -> evaluate -> predict, and bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit import checkpoint
from unetkit.cli import build_parser, main

TINY_FLAGS = ["--widths", "4,8", "--size", "32,32", "--epochs", "2", "--batch-size", "4", "--precision", "fp32"]


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "unetkit 0." in capsys.readouterr().out
    assert main([]) == 0
    assert "train" in capsys.readouterr().out
    expected = {
        "train": ["--lr", "--widths", "--time-budget", "--resume", "--ignore-value"],
        "evaluate": ["--split", "--json", "--tta"],
        "predict": ["--tta", "--probs", "--fill-holes"],
        "data": ["check", "demo"],
    }
    for cmd, flags in expected.items():
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        for flag in flags:
            assert flag in out, (cmd, flag)


def test_train_evaluate_predict(tmp_path, demo_dir, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(demo_dir), "--out", str(run), *TINY_FLAGS, "--sample-every", "1"]) == 0
    out = capsys.readouterr().out
    assert f"best checkpoint: {run}/checkpoints/best.pt" in out
    for name in (
        "config.json",
        "splits.json",
        "metrics.csv",
        "curves.png",
        "train.log",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "samples/epoch_001.png",
    ):
        assert (run / name).is_file(), name
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,step,train_loss,val_loss,val_dice") and len(rows) == 3
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["widths"] == [4, 8] and config["runtime"]["precision"] == "fp32"

    ckpt = run / "checkpoints" / "best.pt"
    assert main(["evaluate", str(ckpt), "--data", str(demo_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"mean_iou", "mean_dice", "pixel_accuracy", "num_images", "classes"} <= summary.keys()
    assert summary["num_images"] == len(json.loads((run / "splits.json").read_text())["test"])
    assert [c["name"] for c in summary["classes"]] == ["background", "foreground"]
    assert 0 <= summary["mean_iou"] <= 1
    for name in ("summary.json", "per_image.csv", "confusion.png", "worst.png"):
        assert (run / "eval-test" / name).is_file(), name

    image = demo_dir / "test" / "images"
    masks = tmp_path / "masks"
    assert main(["predict", str(ckpt), str(image), "--out", str(masks), "--tta", "--probs"]) == 0
    written = sorted(masks.glob("demo_*[0-9].png"))
    assert len(written) == len(list(image.iterdir()))
    m = np.asarray(Image.open(written[0]))
    assert m.shape == (40, 48) and set(np.unique(m).tolist()) <= {0, 255}
    assert (masks / f"{written[0].stem}_overlay.png").is_file() and (masks / f"{written[0].stem}_prob.png").is_file()


def test_multiclass_predict_writes_palette_png(tmp_path, multiclass_dir):
    run = tmp_path / "run"
    assert main(["train", "--data", str(multiclass_dir), "--out", str(run), *TINY_FLAGS, "--epochs", "1"]) == 0
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                str(run / "checkpoints" / "last.pt"),
                str(multiclass_dir / "test" / "images" / "*.png"),
                "--out",
                str(out),
                "--largest-component",
                "--fill-holes",
            ]
        )
        == 0
    )
    img = Image.open(sorted(out.glob("demo_*[0-9].png"))[0])
    assert img.mode == "P" and max(np.unique(np.asarray(img))) < 4


def test_api_mirrors_cli(trained_run, demo_dir):
    import unetkit

    model = unetkit.load(trained_run.best_checkpoint)
    image_path = sorted((demo_dir / "test" / "images").iterdir())[0]
    mask = model.predict(image_path)
    assert mask.shape == (40, 48) and mask.dtype == np.uint8
    probs = model.predict_proba(np.asarray(Image.open(image_path)))
    assert probs.shape == (40, 48) and probs.min() >= 0 and probs.max() <= 1
    assert ((probs > 0.5).astype(np.uint8) == mask).mean() > 0.99


def test_evaluate_scores_the_postprocessed_masks(trained_run, demo_dir, capsys):
    """--largest-component scores exactly the masks predict --largest-component writes."""
    from unetkit.config import EvaluateConfig
    from unetkit.evaluate import eval_dataset, evaluate
    from unetkit.metrics import confusion_matrix
    from unetkit.predict import load

    ckpt = trained_run.best_checkpoint
    assert main(["evaluate", str(ckpt), "--data", str(demo_dir), "--json", "--largest-component"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["largest_component"] is True and summary["fill_holes"] is False

    seg = load(ckpt, precision="fp32")
    dataset, _ = eval_dataset(seg, EvaluateConfig(checkpoint=str(ckpt), data=str(demo_dir)), ckpt)
    result = evaluate(seg, dataset, largest_component=True)
    expected = sum(
        confusion_matrix(torch.from_numpy(seg.predict(dataset.pairs[i].image, largest_component=True)), m, 2)
        for i, (_, m) in enumerate(dataset[i] for i in range(len(dataset)))
    )
    assert torch.equal(result.cm, expected)


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line]
    assert lines and lines[0].startswith("error: ")
    return err


def test_missing_data_folder(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "missing: data folder not found" in error_line(capsys)


def test_corrupt_checkpoint(tmp_path, demo_dir, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    assert main(["evaluate", str(bad), "--data", str(demo_dir)]) == 2
    assert "bad.pt: not a readable unetkit checkpoint" in error_line(capsys)
    assert main(["predict", str(tmp_path / "nope.pt"), str(demo_dir), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint not found" in error_line(capsys)


def test_checkpoint_from_another_model_size(tmp_path, trained_run, demo_dir, capsys):
    payload = checkpoint.load(trained_run.best_checkpoint)
    payload["model_config"] = {**payload["model_config"], "widths": [8, 16]}
    checkpoint.save(payload, tmp_path / "other.pt")
    assert main(["predict", str(tmp_path / "other.pt"), str(demo_dir / "test"), "--out", str(tmp_path / "o")]) == 2
    assert "weights do not fit the model" in error_line(capsys)


def test_image_with_wrong_channel_count(tmp_path, trained_run, capsys):
    from unetkit.model import UNet

    payload = checkpoint.load(trained_run.best_checkpoint)
    gray = UNet(in_channels=1, num_classes=1, widths=(4, 8))
    payload.update(model_config=gray.config.to_dict(), state_dict=gray.state_dict())
    payload["input"] = {**payload["input"], "in_channels": 1}
    payload["normalization"] = {"mean": [0.5], "std": [0.25]}
    checkpoint.save(payload, tmp_path / "gray.pt")
    rgb = np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    assert main(["predict", str(tmp_path / "gray.pt"), str(tmp_path / "colour.png"), "--out", str(tmp_path / "o")]) == 2
    assert "colour.png: image has 3 channel(s) but the model expects 1" in error_line(capsys)


def test_unwritable_output_folder(tmp_path, trained_run, demo_dir, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    args = ["predict", str(trained_run.best_checkpoint), str(demo_dir / "test" / "images"), "--out", str(blocker / "o")]
    assert main(args) == 2
    assert "cannot write" in error_line(capsys)


def test_bad_config_value_names_the_key(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--lr", "-1"]) == 2
    assert "lr: must be > 0" in error_line(capsys)
    assert main(["train", "--out", str(tmp_path / "r"), "--norm", "layer"]) == 2
    assert "norm" in error_line(capsys)


def test_checkpoint_is_self_describing_and_weights_only(trained_run):
    payload = torch.load(trained_run.best_checkpoint, weights_only=True)
    for key in (
        "format_version",
        "model_config",
        "classes",
        "mask_spec",
        "normalization",
        "threshold",
        "train_config",
        "versions",
        "train_state",
        "input",
    ):
        assert key in payload, key
    last = torch.load(trained_run.last_checkpoint, weights_only=True)
    assert {"optimizer", "rng", "train_state"} <= last.keys()
    assert last["train_state"]["epoch"] == 2
