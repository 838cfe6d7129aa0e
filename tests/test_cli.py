"""End-to-end through the CLI entry point: train -> evaluate -> predict, help, and the API."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit._version import __version__
from unetkit.cli import COMMANDS, build_parser, main
from unetkit.commands import annotate, data, evaluate, export, label_studio, models, predict, serve, train

TINY_FLAGS = ["--widths", "4,8", "--size", "32,32", "--epochs", "2", "--batch-size", "4", "--precision", "fp32"]
SECTIONS = ("data", "model", "augment", "optim", "loss", "run")


def test_version_and_command_list(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"unetkit {__version__}"
    assert main([]) == 0
    out = " ".join(capsys.readouterr().out.split())
    modules = (train, evaluate, predict, export, serve, annotate, data, models, label_studio)
    assert list(COMMANDS.values()) == list(modules)  # one module per command, each listed with its help
    for name, module in COMMANDS.items():
        assert name in out and " ".join(module.HELP.split()) in out, name


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def _flag_entries(text: str) -> dict[str, str]:
    """'--flag ...' -> its help text (joined over wrapped lines)."""
    entries, current = {}, None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            flag, _, rest = stripped.partition("  ")
            current = flag.split()[0].rstrip(",")
            entries[current] = rest.strip()
        elif current and line.startswith(" " * 20) and stripped:
            entries[current] += " " + stripped
        else:
            current = None
    return entries


def test_train_help_groups_every_flag_with_a_description_and_default(capsys):
    text = _help(capsys, "train")
    for section in SECTIONS:
        assert f"\n{section}:\n" in text, section
    entries = _flag_entries(text)
    config_flags = {
        k: v
        for k, v in entries.items()
        if k not in ("--data", "--config", "--preset", "--out", "--resume", "--time-budget", "--help")
    }
    assert len(config_flags) > 50
    for flag, help_text in config_flags.items():
        assert "(default: " in help_text and len(help_text) > 20, (flag, help_text)
    assert "none = 0.05 for sgd, 1e-3 for adam and adamw (default: none)" in entries["--lr"]
    assert "(default: 32,64,128,256)" in entries["--widths"]
    expected = {
        "evaluate": ["--split", "--json", "--tta", "--mask-threshold"],
        "predict": ["--tta", "--probs", "--fill-holes", "--no-overlay"],
        "data": ["check", "demo"],
    }
    for cmd, flags in expected.items():
        out = _help(capsys, cmd)
        for flag in flags:
            assert flag in out, (cmd, flag)
    for flag, help_text in _flag_entries(_help(capsys, "evaluate")).items():
        assert flag in ("--help", "--data", "--json") or "(default: " in help_text, flag


def test_train_evaluate_predict(trained_run, learn_dir, tmp_path, capsys):
    run = trained_run.run_dir
    assert f"best checkpoint: {run}/checkpoints/best.pt" in trained_run.stdout
    for name in ("config.json", "splits.json", "metrics.csv", "curves.png", "train.log", "samples/epoch_006.png"):
        assert (run / name).is_file(), name
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,step,train_loss,val_loss,val_dice") and len(rows) == 1 + 12 // 3
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["widths"] == [8, 16, 32] and config["runtime"]["precision"] == "fp32"

    ckpt = run / "checkpoints" / "best.pt"
    assert main(["evaluate", str(ckpt), "--data", str(learn_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["split"] == "test" and summary["own_data"] is True
    assert summary["num_images"] == len(json.loads((run / "splits.json").read_text())["test"]) == 12
    assert [c["name"] for c in summary["classes"]] == ["background", "foreground"]
    assert summary["classes"][1]["dice"] > 0.8  # it learned the task, measured on held-out images
    for name in ("summary.json", "per_image.csv", "confusion.png", "worst.png"):
        assert (run / "eval-test" / name).is_file(), name

    images = learn_dir / "test" / "images"
    masks = tmp_path / "masks"
    assert main(["predict", str(ckpt), str(images), "--out", str(masks), "--tta", "--probs"]) == 0
    written = sorted(masks.glob("demo_*[0-9].png"))
    assert len(written) == len(list(images.iterdir()))
    m = np.asarray(Image.open(written[0]))
    truth = np.asarray(Image.open(learn_dir / "test" / "masks" / written[0].name))
    assert m.shape == (64, 64) and set(np.unique(m).tolist()) <= {0, 255}
    assert ((m > 0) == (truth > 0)).mean() > 0.9
    assert (masks / f"{written[0].stem}_overlay.png").is_file() and (masks / f"{written[0].stem}_prob.png").is_file()


def test_multiclass_predict_writes_palette_png(tmp_path, multiclass_dir):
    run = tmp_path / "run"
    assert main(["train", "--data", str(multiclass_dir), "--out", str(run), *TINY_FLAGS, "--epochs", "1"]) == 0
    out = tmp_path / "pred"
    pattern = str(multiclass_dir / "test" / "images" / "*.png")
    args = ["predict", str(run / "checkpoints" / "last.pt"), pattern, "--out", str(out)]
    assert main([*args, "--largest-component", "--fill-holes"]) == 0
    img = Image.open(sorted(out.glob("demo_*[0-9].png"))[0])
    assert img.mode == "P" and max(np.unique(np.asarray(img))) < 4


def test_api_mirrors_cli(trained_run, learn_dir):
    import unetkit

    model = unetkit.load(trained_run.best_checkpoint, precision="fp32")
    image_path = sorted((learn_dir / "test" / "images").iterdir())[0]
    mask = model.predict(image_path)
    assert mask.shape == (64, 64) and mask.dtype == np.uint8
    probs = model.predict_proba(np.asarray(Image.open(image_path)))
    assert probs.shape == (64, 64) and probs.min() >= 0 and probs.max() <= 1
    assert ((probs > 0.5).astype(np.uint8) == mask).mean() > 0.99
    summary = unetkit.evaluate(trained_run.best_checkpoint, learn_dir, out=None)
    assert summary["split"] == "test" and summary["classes"][1]["dice"] > 0.8


def test_evaluate_scores_the_postprocessed_masks(trained_run, learn_dir, capsys):
    """--largest-component scores exactly the masks predict --largest-component writes."""
    from unetkit.config import EvaluateConfig
    from unetkit.deploy.engines import load
    from unetkit.infer.evaluation import eval_dataset, evaluate
    from unetkit.metrics import confusion_matrix

    ckpt = trained_run.best_checkpoint
    assert main(["evaluate", str(ckpt), "--data", str(learn_dir), "--json", "--largest-component"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["largest_component"] is True and summary["fill_holes"] is False

    seg = load(ckpt, precision="fp32")
    dataset, _ = eval_dataset(seg, EvaluateConfig(checkpoint=str(ckpt), data=str(learn_dir)), ckpt)
    assert dataset[0][0].dtype == torch.float32  # the same input predict gives the network
    result = evaluate(seg, dataset, largest_component=True)
    expected = sum(
        confusion_matrix(torch.from_numpy(seg.predict(dataset.pairs[i].image, largest_component=True)), mask, 2)
        for i, (_, mask) in enumerate(dataset[j] for j in range(len(dataset)))
    )
    assert torch.equal(result.cm, expected)


def test_checkpoint_is_self_describing_and_weights_only(trained_run):
    payload = torch.load(trained_run.best_checkpoint, weights_only=True)
    for key in ("format_version", "model_config", "classes", "mask_spec", "normalization", "threshold"):
        assert key in payload, key
    for key in ("train_config", "versions", "train_state", "input", "split"):
        assert key in payload, key
    assert payload["split"]["hash"] and len(payload["split"]["test"]) == 12
    last = torch.load(trained_run.last_checkpoint, weights_only=True)
    assert {"optimizer", "train_state"} <= last.keys() and "rng" not in last  # steps are seeded by position
    assert last["train_state"]["epoch"] == 12


def test_a_reader_that_goes_away_is_not_an_error():
    """`unetkit models | head -1`: the pipe closes before the listing ends; exit 0 and no error text."""
    import os
    import subprocess

    r, w = os.pipe()
    os.close(r)  # every write to w now fails with EPIPE, deterministically
    try:
        done = subprocess.run([sys.executable, "-m", "unetkit", "models"], stdout=w, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(w)
    assert done.returncode == 0 and done.stderr == ""
