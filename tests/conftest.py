"""Shared fixtures: small generated datasets and a tiny trained run, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetkit.configio import resolve
from unetkit.demo import write_demo

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# A config small enough that a CPU trains it in seconds.
TINY = {
    "model": {"widths": (4, 8)},
    "data": {"size": (32, 32)},
    "epochs": 2,
    "batch_size": 4,
    "sample_every": 1,
}


def tiny_config(**overrides):
    from unetkit.configio import merge

    return resolve(None, None, merge(TINY, overrides))


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    return write_demo(tmp_path_factory.mktemp("demo") / "data", num_images=24, size=(40, 48), seed=1)


@pytest.fixture(scope="session")
def multiclass_dir(tmp_path_factory) -> Path:
    return write_demo(tmp_path_factory.mktemp("demo_mc") / "data", num_images=16, size=(40, 40), multiclass=True)


@pytest.fixture(scope="session")
def trained_run(demo_dir, tmp_path_factory):
    """A tiny binary model trained for 2 epochs; shared by evaluate/predict/checkpoint tests."""
    from unetkit.engine import fit

    out = tmp_path_factory.mktemp("run") / "run"
    return fit(tiny_config(data={"root": str(demo_dir), "size": (32, 32)}, precision="fp32"), out=out)


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} not found: the real datasets live in ../shared/data beside the repo (CI has them)")
    return path
