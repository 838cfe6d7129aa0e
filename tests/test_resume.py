"""Interrupted runs (SIGINT, then SIGKILL) resume to exactly the weights of an uninterrupted run."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from unetkit.configio import resolve
from unetkit.engine import fit

EPOCHS = 7
FLAGS = [
    "--widths",
    "8,16",
    "--size",
    "32,32",
    "--epochs",
    str(EPOCHS),
    "--batch-size",
    "2",
    "--precision",
    "fp32",
    "--deterministic",
    "--sample-every",
    "0",
    "--seed",
    "3",
]


def overrides(demo_dir):
    return {
        "model": {"widths": (8, 16)},
        "data": {"root": str(demo_dir), "size": (32, 32)},
        "epochs": EPOCHS,
        "batch_size": 2,
        "precision": "fp32",
        "deterministic": True,
        "sample_every": 0,
        "seed": 3,
    }


@pytest.fixture(scope="module")
def reference(demo_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    fit(resolve(overrides=overrides(demo_dir)), out=run)
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state_dict"]


def start(demo_dir, run):
    cmd = [sys.executable, "-m", "unetkit", "train", "--data", str(demo_dir), "--out", str(run), *FLAGS]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_epochs(run, k, proc, timeout=120):
    metrics = run / "metrics.csv"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().strip().splitlines()) > k:
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended before epoch {k}: {proc.stdout.read()}")
        time.sleep(0.02)
    pytest.fail("training too slow")


def resume(run):
    cmd = [sys.executable, "-m", "unetkit", "train", "--resume", str(run)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def assert_same_weights(run, reference):
    final = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert final["train_state"]["epoch"] == EPOCHS
    for key, value in reference.items():
        assert torch.equal(final["state_dict"][key], value), key


@pytest.mark.slow
def test_interrupted_and_killed_runs_resume_exactly(demo_dir, reference, tmp_path):
    """Ctrl-C mid-run saves and says how to resume; the resumed run is then killed (SIGKILL) and
    resumed again from its last checkpoint: the final weights equal an uninterrupted run's."""
    run = tmp_path / "run"
    proc = start(demo_dir, run)
    wait_for_epochs(run, 2, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert f"unetkit train --resume {run}" in out
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["train_state"]
    assert 2 <= state["epoch"] < EPOCHS

    cmd = [sys.executable, "-m", "unetkit", "train", "--resume", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_epochs(run, 4, proc)
    proc.kill()
    out, _ = proc.communicate(timeout=60)
    assert "resuming" in out
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["train_state"]
    assert 4 <= state["epoch"] < EPOCHS and state["batch_in_epoch"] == 0
    resume(run)
    assert_same_weights(run, reference)
