"""Bad flags and bad files through the CLI: each is one `error: ...` line naming the value or file
and the fix, exit code 2, and no traceback or warning."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit.cli import main
from unetkit.infer import checkpoint
from unetkit.model import UNet

TINY = ["--widths", "4,8", "--size", "32,32", "--epochs", "1", "--precision", "fp32"]


class Evil:
    """Pickles to a call of os.system: what a malicious 'checkpoint' holds."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def files(trained_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "text.pt").write_bytes(b"this is not a checkpoint")
    torch.save({"format_version": 1, "model_config": Evil(d / "pwned")}, d / "evil.pt")
    (d / "legacy.pt").write_bytes(pickle.dumps(Evil(d / "pwned"), protocol=4))  # a plain pickle, not torch's zip
    payload = checkpoint.load(trained_run.best_checkpoint)
    checkpoint.save({k: v for k, v in payload.items() if k != "classes"}, d / "nometa.pt")
    checkpoint.save({**payload, "model_config": {**payload["model_config"], "widths": [8, 16]}}, d / "other.pt")
    gray = UNet(in_channels=1, num_classes=1, widths=(4, 8))
    meta = {"model_config": gray.config.to_dict(), "state_dict": gray.state_dict()}
    inputs = {**payload["input"], "in_channels": 1}
    checkpoint.save(
        {**payload, **meta, "input": inputs, "normalization": {"mean": [0.5], "std": [0.25]}}, d / "gray.pt"
    )
    rgb = np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(d / "colour.png")
    (d / "blocker").write_text("a file, not a folder")
    (d / "empty").mkdir()
    return d


def cases(d, ckpt, data):
    """(argv, text the error line must hold)."""
    yield ["train", "--precision", "fp16", "--out", f"{d}/r1"], "precision: fp16 is for CUDA"
    if not torch.cuda.is_available():
        yield ["train", "--device", "cuda", "--out", f"{d}/r2"], "device: 'cuda' asked for but CUDA is not available"
    yield ["train", "--data", data, *TINY, "--class-weights", "1,2,3", "--out", f"{d}/r3"], "class_weights: 3 weights"
    yield ["train", "--lr", "-1"], "lr: must be > 0"
    yield ["train", "--norm", "layer"], "norm: use auto|batch|group|instance|none"
    yield ["train", "--size", "4,4"], "size: need height,width >= 8"
    yield ["train", "--workers", "many"], "workers: use auto or a number"
    yield ["train", "--cache-memory", "lots"], "cache_memory: cannot read size 'lots'"
    yield ["train", "--time-limit", "soon"], "time_limit: cannot read duration"
    yield ["train", "--data", f"{d}/missing"], "missing: data folder not found"
    yield ["train", "--config", f"{d}/missing.toml"], "config file"
    yield ["train", "--resume", f"{d}/r1", "--out", f"{d}/x"], "resume: --resume continues a run"
    yield ["train", "--resume", f"{d}/nothing"], "last.pt: checkpoint not found"
    yield ["evaluate", f"{d}/text.pt", "--data", data], "text.pt: not a readable unetkit checkpoint"
    yield (
        ["evaluate", f"{d}/evil.pt", "--data", data],
        "evil.pt: refused: the file asks to run Python code (posix.system)",
    )
    yield (
        ["evaluate", f"{d}/legacy.pt", "--data", data],
        "legacy.pt: refused: the file asks to run Python code (posix.system)",
    )
    yield ["evaluate", f"{d}/nometa.pt", "--data", data], "nometa.pt: checkpoint lacks the metadata key 'classes'"
    yield ["evaluate", ckpt, "--data", data, "--split", "weird"], "split: use auto|train|val|test|all"
    yield ["evaluate", ckpt, "--data", f"{d}/empty"], "empty: no images/ folder"
    yield ["predict", f"{d}/nope.pt", data, "--out", f"{d}/o"], "nope.pt: checkpoint not found"
    yield ["predict", f"{d}/other.pt", data, "--out", f"{d}/o"], "weights do not fit the model"
    yield ["predict", f"{d}/gray.pt", f"{d}/colour.png", "--out", f"{d}/o"], "colour.png: image has 3 channel(s)"
    yield ["predict", ckpt, f"{d}/empty", "--out", f"{d}/o"], "no images found"
    yield ["predict", ckpt, f"{d}/colour.png", "--out", f"{d}/blocker/o"], "cannot write or read"
    yield ["data", "check", f"{d}/missing"], "missing: data folder not found"
    yield ["data", "demo", f"{d}/demo", "--num-images", "1"], "need --num-images >= 3"


def test_each_bad_input_is_one_error_line_and_exit_2(files, trained_run, demo_dir, capsys):
    seen = 0
    for argv, expected in cases(files, str(trained_run.best_checkpoint), str(demo_dir)):
        code = main(argv)
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert code == 2, (argv, captured.err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, captured.err)
        assert expected in lines[0], (argv, lines[0])
        assert "Traceback" not in captured.out + captured.err and "Warning" not in captured.err, argv
        seen += 1
    assert seen >= 24
    assert not (files / "pwned").exists()  # the pickled os.system call never ran


def test_nan_loss_stops_with_a_message_naming_the_step(demo_dir, tmp_path, capsys):
    args = ["train", "--data", str(demo_dir), "--out", str(tmp_path / "r"), *TINY, "--epochs", "3"]
    code = main([*args, "--lr", "1e30", "--grad-clip", "0", "--warmup-epochs", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "loss became nan at epoch 1, step" in err.lower() or "loss became inf at epoch 1, step" in err.lower()
