"""Shared fixtures: small generated datasets, a run trained once to a real quality bar, a fake clock."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest

from unetkit.config.io import merge, resolve
from unetkit.data.demo import write_demo

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# A config small enough that a CPU trains it in a second: for tests of plumbing, not of learning.
TINY = {
    "model": {"widths": (4, 8)},
    "data": {"size": (32, 32)},
    "epochs": 2,
    "batch_size": 4,
    "sample_every": 1,
}
# Enough to learn the demo task: test foreground Dice ~0.87 in ~8 s on 2 cores (fp32, so the same everywhere).
LEARN_FLAGS = [
    *("--widths", "8,16,32", "--size", "64,64", "--epochs", "12", "--batch-size", "4"),
    *("--precision", "fp32", "--val-every", "3", "--sample-every", "6"),
]


def tiny_config(**overrides):
    return resolve(None, None, merge(TINY, overrides))


def ticks(step: float):
    """A clock that advances `step` seconds each time it is read: time limits without sleeping."""
    counter = itertools.count()
    return lambda: next(counter) * step


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    return write_demo(tmp_path_factory.mktemp("demo") / "data", num_images=24, size=(40, 48), seed=1)


@pytest.fixture(scope="session")
def learn_dir(tmp_path_factory) -> Path:
    return write_demo(tmp_path_factory.mktemp("learn") / "data", num_images=80, size=(64, 64), seed=1)


@pytest.fixture(scope="session")
def multiclass_dir(tmp_path_factory) -> Path:
    return write_demo(tmp_path_factory.mktemp("demo_mc") / "data", num_images=48, size=(48, 48), multiclass=True)


@pytest.fixture(scope="session")
def trained_run(learn_dir, tmp_path_factory):
    """A binary model trained through the CLI to a real quality bar; shared by the evaluate, predict,
    checkpoint and API tests. Its stdout is kept for the end-to-end test."""
    import contextlib
    import io

    from unetkit.cli import main

    run = tmp_path_factory.mktemp("run") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", "--data", str(learn_dir), "--out", str(run), *LEARN_FLAGS])
    assert code == 0, out.getvalue()
    ckpts = run / "checkpoints"
    return SimpleNamespace(
        run_dir=run, best_checkpoint=ckpts / "best.pt", last_checkpoint=ckpts / "last.pt", stdout=out.getvalue()
    )


@pytest.fixture(scope="session")
def click_run(learn_dir, tmp_path_factory):
    """A click-guided model trained through the CLI (`--interactive`) on the same data: 8 epochs (its
    click simulation makes an epoch twice the cost), enough for clicks to raise IoU."""
    from unetkit.cli import main

    run = tmp_path_factory.mktemp("click") / "run"
    flags = [*LEARN_FLAGS, "--interactive", "--epochs", "8", "--val-every", "4", "--sample-every", "0"]
    assert main(["train", "--data", str(learn_dir), "--out", str(run), *flags]) == 0
    return SimpleNamespace(run_dir=run, best_checkpoint=run / "checkpoints" / "best.pt")


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} not found: the real datasets live in ../shared/data beside the repo (CI has them)")
    return path


def pytest_addoption(parser) -> None:
    parser.addoption("--label-studio", action="store_true", help="run the tests that start a real Label Studio")


def pytest_collection_modifyitems(config, items) -> None:
    """The real-Label-Studio test runs in its own CI step (`make test-label-studio`), not in `make test`."""
    if config.getoption("--label-studio"):
        return
    skip = pytest.mark.skip(reason="starts a real Label Studio (minutes): run `make test-label-studio`")
    for item in items:
        if "labelstudio" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def open_client():
    """open_client(app) -> a started fastapi TestClient, closed (lifespan shutdown) after the test: an
    app's inference pool and learner end with the test that made them, not whenever the garbage
    collector finds the app (a pool thread that ran torch, left to a later collection)."""
    import contextlib

    from fastapi.testclient import TestClient

    with contextlib.ExitStack() as stack:
        yield lambda app: stack.enter_context(TestClient(app))
