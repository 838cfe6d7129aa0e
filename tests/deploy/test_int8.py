"""int8 engines: calibrated on the run's training images, scored against fp32 on its validation split,
refused (with the numbers) when the score falls by more than int8.MAX_DROP."""

import json

import numpy as np
import pytest
import torch

from unetkit.deploy import engines, int8
from unetkit.deploy.engines import load
from unetkit.infer.predict import Segmenter

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("int8cache")


@pytest.fixture
def cache(cache_root, monkeypatch):
    monkeypatch.setenv("UNETKIT_CACHE", str(cache_root))
    return cache_root / "engines"


def test_report_gate_and_round_trip(tmp_path):
    ok = int8.Int8Report("foreground IoU", 0.900, 0.896, 10, 16, "val", 1.0)
    bad = int8.Int8Report("foreground IoU", 0.900, 0.894, 10, 16, "val", 1.0)
    assert ok.passed and not bad.passed and bad.drop == pytest.approx(0.006)
    assert "refused (limit 0.005)" in str(bad) and "0.8940 vs fp32 0.9000" in str(bad)
    (tmp_path / "r.json").write_text(json.dumps(bad.to_dict()))
    assert int8.Int8Report.read(tmp_path / "r.json") == bad
    assert int8.Int8Report.read(tmp_path / "missing.json") is None


def test_calibration_records_what_the_network_sees(trained_run):
    seg = Segmenter.load(trained_run.best_checkpoint, "cpu", "fp32")
    pairs = int8.run_pairs(seg.meta, "train")
    inputs = int8.calibration_inputs(seg.model, seg.meta, pairs, n=3)
    assert len(inputs) == 3 and all(x.shape[:2] == (1, 3) and x.dtype == np.float32 for x in inputs)
    image = seg.to_tensor(pairs[0].image)  # normalised as predict normalises it
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (seg.meta.mean, seg.meta.std))
    h, w = image.shape[-2:]
    np.testing.assert_allclose(inputs[0][0, :, :h, :w], ((image - mean) / std).numpy(), atol=1e-5)


def test_int8_engine_scores_then_serves_and_auto_may_take_it(trained_run, learn_dir, cache):
    ckpt = trained_run.best_checkpoint
    logs = []
    seg = load(ckpt, "onnxruntime-int8", "cpu", "auto", log=logs.append)
    assert seg.engine == "onnxruntime-int8" and seg.model.precision == "int8"
    report = json.loads(next(cache.glob("*.int8.json")).read_text())
    assert report["passed"] and report["split"] == "val" and report["scored_on"] > 0
    assert abs(report["fp32"] - report["int8"]) <= int8.MAX_DROP and report["fp32"] > 0.5
    if engines._imports("openvino"):  # OpenVINO ran the graph to onnxruntime's masks, and says so
        assert report["runtimes"]["openvino"] >= int8.AGREEMENT
        assert any(line.startswith("int8: openvino gives the same mask pixels") for line in logs)
    assert any(line.startswith("int8: int8 foreground IoU") for line in logs)
    reference = Segmenter.load(ckpt, "cpu", "fp32")
    path = sorted((learn_dir / "test" / "images").iterdir())[0]
    assert (seg.predict(path) == reference.predict(path)).mean() > 0.97
    assert "onnxruntime-int8" in engines.installed(ckpt)  # auto now times it too
    logs.clear()
    load(ckpt, "onnxruntime-int8", "cpu", "auto", log=logs.append)
    assert not any("calibrating" in line for line in logs)  # built once


def test_a_refused_graph_names_the_numbers(trained_run, monkeypatch, tmp_path):
    """A graph whose score fell too far is refused with both numbers, by every later call too, and
    auto never times it (the gate's own arithmetic: test_report_gate_and_round_trip)."""
    monkeypatch.setenv("UNETKIT_CACHE", str(tmp_path))  # its own cache: the shared one holds a passed graph
    ckpt = trained_run.best_checkpoint
    base = tmp_path / "engines" / engines.checkpoint_digest(ckpt)
    base.parent.mkdir(parents=True)
    base.with_suffix(".int8.onnx").write_bytes(b"not used")
    bad = int8.Int8Report("foreground IoU", 0.70, 0.68, 16, 16, "val", 1.0)
    base.with_suffix(".int8.json").write_text(json.dumps(bad.to_dict()))
    for _ in range(2):
        with pytest.raises(engines.ConfigError, match=r"0\.6800 vs fp32 0\.7000.*refused \(limit 0.005\).*fp32 engine"):
            load(ckpt, "openvino-int8", "cpu", "auto", log=lambda m: None)
    assert "onnxruntime-int8" not in engines.installed(ckpt) and "openvino-int8" not in engines.installed(ckpt)
    assert not base.with_suffix(".onnx").exists()  # refused before the fp32 graph was even exported


def test_a_runtime_that_disagrees_with_the_scored_one_is_refused(trained_run, monkeypatch, tmp_path):
    """The gate scores the graph as onnxruntime runs it; another runtime whose masks differ from those
    on the calibration inputs is refused with its number, and auto leaves it out, while onnxruntime-int8
    stays."""
    monkeypatch.setenv("UNETKIT_CACHE", str(tmp_path))
    ckpt = trained_run.best_checkpoint
    base = tmp_path / "engines" / engines.checkpoint_digest(ckpt)
    base.parent.mkdir(parents=True)
    base.with_suffix(".int8.onnx").write_bytes(b"not used")
    report = int8.Int8Report("foreground IoU", 0.70, 0.699, 16, 16, "val", 1.0, runtimes={"openvino": 0.3125})
    base.with_suffix(".int8.json").write_text(json.dumps(report.to_dict()))
    assert report.passed and report.runtime_refusal("onnxruntime") is None
    with pytest.raises(engines.ConfigError, match=r"agree with onnxruntime's .* on 31\.25% .*under 98%: refused"):
        load(ckpt, "openvino-int8", "cpu", "auto", log=lambda m: None)
    names = engines.installed(ckpt)
    assert "onnxruntime-int8" in names and "openvino-int8" not in names


def test_agreement_counts_equal_mask_pixels():
    """Share of pixels whose mask (logit > 0; argmax for several classes) is the scored runtime's."""
    logits = np.array([[[[1.0, -1.0], [2.0, -2.0]]]], np.float32)  # (1, 1, 2, 2)
    flip_one = lambda x: x * torch.tensor([[[[1.0, 1.0], [1.0, -1.0]]]])  # noqa: E731
    shares = int8.agreement([logits, logits], lambda x: x, {"same": lambda p: (lambda x: x), "one": lambda p: flip_one},
                            graph=None)  # fmt: skip
    assert shares == {"same": 1.0, "one": 0.75}
    three = np.zeros((1, 3, 1, 2), np.float32)
    three[0, :, 0, 0] = [0, 5, 1]  # class 1
    three[0, :, 0, 1] = [3, 0, 1]  # class 0
    swap = lambda x: x[:, [0, 2, 1]]  # noqa: E731 - pixel 0 becomes class 2, pixel 1 stays class 0
    assert int8.agreement([three], lambda x: x, {"swap": lambda p: swap}, graph=None) == {"swap": 0.5}


def test_export_int8_cli(trained_run, cache, tmp_path, capsys):
    from unetkit.cli import main

    out = tmp_path / "model.int8.onnx"
    assert main(["export", str(trained_run.best_checkpoint), "--format", "onnx-int8", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["passed"] and out.stat().st_size > 0
    import onnx

    graph = onnx.load(str(out)).graph
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= {n.op_type for n in graph.node}
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    k = int8.EDGE_CONVS
    assert k and all(c.input[1] not in dequantized for c in convs[:k] + convs[-k:])  # fp32 at both ends
    assert all(c.input[1] in dequantized for c in convs[k:-k] if c.op_type == "Conv")  # int8 between them


def test_int8_needs_the_runs_data(trained_run, cache, monkeypatch):
    monkeypatch.setattr(int8, "run_pairs", lambda meta, split: [])
    ckpt = trained_run.best_checkpoint
    model, meta = engines.load_model(ckpt)
    with pytest.raises(engines.ConfigError, match="training and validation images"):
        int8.build_int8(model, meta, cache / "x.onnx", cache / "x.int8.onnx", None)


def test_cpus_without_vnni_get_7_bit_weights(trained_run, cache, monkeypatch, tmp_path):
    """Without an int8 dot product (AVX2 only) onnxruntime's uint8 x int8 kernels can saturate, so the
    graph is built with reduce_range: every int8 weight within [-64, 64] (full range with VNNI)."""
    import onnx
    from onnx import numpy_helper

    model, meta = engines.load_model(trained_run.best_checkpoint)
    fp32 = engines.onnx_for(engines.checkpoint_file(trained_run.best_checkpoint), model, meta, lambda m: None)
    spans = {}
    for vnni in (True, False):
        monkeypatch.setattr(int8, "cpu_has_vnni", lambda vnni=vnni: vnni)
        logs, out = [], tmp_path / f"vnni-{vnni}.onnx"
        int8.build_int8(model, meta, fp32, out, lambda p: engines.OnnxRuntimeEngine(p, 1), logs.append)
        weights = [numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer if t.data_type == 3]
        spans[vnni] = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
        assert any(("7-bit weights" in line) == (not vnni) for line in logs if "calibrating" in line)
    assert spans[False] <= 64 < spans[True]
