"""Interrupted runs (SIGINT, then SIGKILL) resume to exactly the weights of an uninterrupted run."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from unetkit.config.io import resolve
from unetkit.training.loop import fit

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
    """The last resume in this process (the CLI's --resume has run by then): a fresh `unetkit train`
    costs ~7 s of imports and start-up before its first step."""
    fit(resume=run)


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


def test_the_epoch_advances_in_one_place():
    """Only LoopState.end_epoch moves `epoch` forward (the loop calls it once per finished epoch)."""
    import ast
    from pathlib import Path

    import unetkit.training

    writes = []
    for path in Path(unetkit.training.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                flat = [e for t in targets if t is not None for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
                if any(isinstance(t, ast.Attribute) and t.attr == "epoch" for t in flat):
                    writes.append(f"{path.name}:{fn.name}")
    assert writes == ["resume.py:end_epoch"], writes


def test_last_pt_round_trips_through_the_resume_record(tmp_path, trained_run):
    from unetkit.infer.checkpoint import load_model
    from unetkit.training.resume import LoopState, read_last, write_last

    model, meta = load_model(trained_run.best_checkpoint)
    state = LoopState(epoch=3, batch_in_epoch=2, step=17, best=0.75, bad_epochs=1, history=[{"epoch": 3}])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    write_last(tmp_path / "checkpoints" / "last.pt", meta, model.state_dict(), opt.state_dict(), None, state)
    record = read_last(tmp_path)
    assert record.state == state and record.scaler is None and record.mean == meta.mean
    assert record.config == meta.train_config and record.split == meta.split
    assert all(torch.equal(record.state_dict[k], v) for k, v in model.state_dict().items())


def test_deterministic_mode_is_on_and_only_warns():
    """setup(deterministic=True) turns the global switch on in warn-only mode (what exact resume needs),
    by the debug-mode call that does not import inductor (2.8 s of every --deterministic start)."""
    from unetkit.runtime import setup

    before = torch.get_deterministic_debug_mode()
    try:
        setup("cpu", "fp32", deterministic=True)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.set_deterministic_debug_mode(before)
