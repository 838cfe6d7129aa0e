"""Every engine computes the masks PyTorch computes, through the same pre- and post-processing."""

import json

import pytest
import torch

from unetkit.deploy.engines import load
from unetkit.infer.predict import Segmenter

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def cache(cache_root, monkeypatch):
    """One engine cache for this module, so the checkpoint is exported to ONNX once (~4 s)."""
    monkeypatch.setenv("UNETKIT_CACHE", str(cache_root))
    (cache_root / "engines" / "choices.json").unlink(missing_ok=True)
    return cache_root / "engines"


def test_engines_give_torchs_masks(trained_run, learn_dir, cache):
    ckpt = trained_run.best_checkpoint
    images = sorted((learn_dir / "test" / "images").iterdir())[:4]
    reference = Segmenter.load(ckpt, "cpu", "fp32", "torch")
    engines = ["onnxruntime"] + (["openvino"] if _has("openvino") else [])
    for name in engines:
        seg = load(ckpt, name, "cpu", "fp32")  # fp32 asked: OpenVINO pinned to f32 even where the CPU has bf16
        assert seg.engine == name and seg.rt.precision == "fp32"
        for path in images:
            agree = (seg.predict(path, tta=True) == reference.predict(path, tta=True)).mean()
            assert agree > 0.995, (name, path.name, agree)
    assert len(list(cache.glob("*.onnx"))) == 1  # exported once, shared by both runtimes


def test_auto_measures_once_and_remembers(trained_run, cache):
    logs = []
    seg = load(trained_run.best_checkpoint, "auto", "cpu", "auto", log=logs.append)
    assert seg.engine in ("torch", "onnxruntime", "openvino")
    assert any(line.startswith("engine auto: torch ") and f"using {seg.engine}" in line for line in logs)
    choices = json.loads((cache / "choices.json").read_text())
    assert [c["engine"] for c in choices.values()] == [seg.engine]
    logs.clear()
    again = load(trained_run.best_checkpoint, "auto", "cpu", "auto", log=logs.append)
    assert again.engine == seg.engine and not any("engine auto" in line for line in logs)


def _has(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def test_cli_engine_flag(trained_run, learn_dir, tmp_path, cache, capsys):
    from unetkit.cli import main

    args = ["evaluate", str(trained_run.best_checkpoint), "--data", str(learn_dir), "--json"]
    assert main([*args, "--engine", "onnxruntime"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["engine"] == "onnxruntime" and summary["classes"][1]["dice"] > 0.8
    assert main([*args, "--engine", "tensorrt"]) == 2
    assert "engine: use torch|onnxruntime|openvino|onnxruntime-int8|openvino-int8|auto" in capsys.readouterr().err


def test_a_shipped_model_reaches_an_engine_as_its_file(cache, monkeypatch):
    """`--engine onnxruntime|auto` with builtin:NAME: the engine cache keys on the shipped file (it once
    failed with 'No such file: builtin:clicks')."""
    from unetkit.deploy import engines
    from unetkit.infer import builtin

    seen = []

    def fake(name, checkpoint, model, meta, device, log=print, precision="auto"):
        seen.append(engines.checkpoint_digest(checkpoint))  # reads the file: a ref would raise here
        return model

    monkeypatch.setattr(engines, "make_engine", fake)
    seg = load("builtin:objects", "onnxruntime", "cpu", "fp32")
    assert seg.engine == "onnxruntime" and len(seen) == 1
    assert seen[0] == engines.checkpoint_digest(builtin.get("objects").path)


def test_auto_times_a_click_model_at_the_size_it_is_served_at(cache, monkeypatch):
    """builtin:clicks trains at 192 px but runs at its view size (320): auto times that, with the
    click channels, each engine as the median of a few runs (at 192 px one run each had tied them)."""
    from unetkit.deploy import engines

    shapes = []

    def timed(engines_, x, rt):
        shapes.append(tuple(x.shape))
        return {name: 0.01 for name in engines_}

    monkeypatch.setattr(engines, "installed", lambda checkpoint=None: ["torch"])
    monkeypatch.setattr(engines, "_median_seconds", timed)
    seg = load("builtin:clicks", "auto", "cpu", "fp32", log=lambda m: None)
    assert seg.engine == "torch" and shapes == [(1, 6, 320, 320)]
    assert seg.meta.click_view_size == 320 and tuple(seg.meta.size) == (192, 192)


def test_auto_times_engines_in_turns_so_a_slow_spell_slows_them_alike(monkeypatch):
    """A shared machine slows down for a while: timed one engine after the other, the slower engine
    that ran before the spell looked faster; timed in turns, the faster one wins."""
    from unetkit.deploy import engines
    from unetkit.runtime import setup

    clock = {"now": 0.0, "calls": 0}

    class Fake:
        def __init__(self, cost):
            self.cost = cost

        def __call__(self, x):
            clock["calls"] += 1
            clock["now"] += self.cost * (1 if clock["calls"] <= 8 else 3)  # the spell starts at call 9
            return x

    monkeypatch.setattr(engines.time, "perf_counter", lambda: clock["now"])
    monkeypatch.setattr(engines.time, "sleep", lambda s: None)
    timings = engines._median_seconds(
        {"slow": Fake(0.012), "fast": Fake(0.010)}, torch.zeros(1, 1, 2, 2), setup("cpu", "fp32")
    )
    assert min(timings, key=timings.get) == "fast"
    assert timings == {"slow": pytest.approx(0.036), "fast": pytest.approx(0.030)}
