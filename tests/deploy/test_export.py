"""Exports compute what PyTorch computes: ONNX (raw and end-to-end, dynamic batch/height/width,
BatchNorm folded, metadata embedded) and safetensors (no pickle); the command fails when they do not."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from unetkit.cli import main
from unetkit.data.imageio import MaskSpec
from unetkit.infer.checkpoint import ModelMeta, load_model
from unetkit.infer.predict import Segmenter
from unetkit.model import UNet
from unetkit.runtime import setup

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def batchnorm_model(num_classes: int) -> UNet:
    """A UNet whose BatchNorm layers hold non-trivial running statistics (so folding matters)."""
    torch.manual_seed(0)
    model = UNet(3, num_classes, (8, 16), norm="batch").train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 32, 32) * 2 + 0.5)
        model.head.bias.zero_()  # so every class wins somewhere and argmax is exercised
        model.head.weight.mul_(20)
    return model.eval()


def meta_for(model: UNet, classes, resize="crop") -> ModelMeta:
    k = len(classes)
    spec = MaskSpec("binary", 2) if k == 2 else MaskSpec("index", k)
    return ModelMeta(model.config, tuple(classes), spec, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), resize, (32, 32), 3)


def test_raw_graph_folds_batchnorm_and_takes_any_batch_and_size(tmp_path):
    from unetkit.deploy.export import export_onnx

    model = batchnorm_model(4)
    meta = meta_for(model, [f"c{i}" for i in range(4)])
    path = export_onnx(model, meta, tmp_path / "raw.onnx", variant="raw")
    proto = onnx.load(str(path))
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == ["c0", "c1", "c2", "c3"] and json.loads(props["mean"]) == [0.4, 0.5, 0.6]
    assert props["variant"] == "raw" and props["unetkit_version"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((1, 3, 32, 32), (3, 3, 17, 45), (2, 3, 1, 9)):
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4, shape


def test_end_to_end_graph_gives_predicts_masks_for_multiclass(tmp_path):
    from unetkit.deploy.export import export_onnx

    model = batchnorm_model(4)
    meta = meta_for(model, [f"c{i}" for i in range(4)])
    path = export_onnx(model, meta, tmp_path / "e2e.onnx", variant="e2e")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    seg = Segmenter(model, meta, setup("cpu", "fp32", channels_last=False))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 23, 31, 3), dtype=np.uint8)  # a batch, odd size
    masks = session.run(None, {"image": images})[0]
    assert masks.dtype == np.uint8 and masks.shape == (2, 23, 31)
    for image, mask in zip(images, masks, strict=True):
        assert (mask == seg.predict(image)).mean() > 0.999
    assert len(np.unique(masks)) > 1


def test_export_command_verifies_e2e_onnx_and_safetensors(trained_run, learn_dir, tmp_path, capsys):
    ckpt = str(trained_run.best_checkpoint)
    assert main(["export", ckpt, "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert out.count("  ok   ") == 4 and "real demo_" in out and "verified on 4 images" in out  # 2 random + 2 test
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    image = np.asarray(__import__("PIL.Image").Image.open(sorted((learn_dir / "test" / "images").iterdir())[0]))
    seg = Segmenter.load(ckpt, "cpu", "fp32")
    assert np.array_equal(session.run(None, {"image": image[None]})[0][0], seg.predict(image))

    st = tmp_path / "m.safetensors"
    assert main(["export", ckpt, "--format", "safetensors", "--out", str(st)]) == 0
    assert b"__reduce__" not in st.read_bytes() and (tmp_path / "m.json").is_file()
    loaded, meta = load_model(st)
    original, _ = load_model(ckpt)
    x = torch.rand(2, 3, 40, 24)
    with torch.no_grad():
        assert torch.equal(loaded(x), original(x))
    assert meta.classes == ("background", "foreground") and meta.binary
    assert main(["predict", str(st), str(learn_dir / "test" / "images"), "--out", str(tmp_path / "p")]) == 0


def test_export_fails_when_parity_breaks(trained_run, tmp_path, capsys, monkeypatch):
    import unetkit.deploy.parity

    monkeypatch.setattr(unetkit.deploy.parity, "LOGIT_TOL", -1.0)  # nothing can match: the command must refuse
    args = ["export", str(trained_run.best_checkpoint), "--format", "safetensors", "--out", str(tmp_path / "m.st")]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "does not compute what the PyTorch model computes" in captured.err


def test_model_meta_survives_replace():
    model = UNet(3, 1, (4, 8))
    meta = dataclasses.replace(meta_for(model, ["bg", "fg"]), threshold=0.3)
    assert meta.inference_spec().threshold == 0.3 and meta.binary


def test_triton_repository_is_written_parsed_and_verified(trained_run, tmp_path, capsys):
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="pip install 'unetkit[triton]'")
    from unetkit.deploy.export import ExportError
    from unetkit.deploy.triton import parse_config, verify_repository

    ckpt = str(trained_run.best_checkpoint)
    repo = tmp_path / "repo"
    args = ["export", ckpt, "--format", "triton", "--out", str(repo), "--name", "seg", "--max-batch-size", "4"]
    assert main([*args, "--triton-kind", "gpu", "--instances", "2"]) == 0
    out = capsys.readouterr().out
    assert "a batch of 2 at the declared names gives unetkit's masks" in out and "checked with:" in out
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()) == [
        "seg/1/model.onnx",
        "seg/config.pbtxt",
    ]
    config = parse_config(repo / "seg" / "config.pbtxt")
    assert (config.max_batch_size, config.instance_group[0].count, config.instance_group[0].kind) == (4, 2, 1)
    assert [(t.name, list(t.dims)) for t in (*config.input, *config.output)] == [
        ("image", [-1, -1, 3]),
        ("mask", [-1, -1]),
    ]
    assert json.loads(config.parameters["classes"].string_value) == ["background", "foreground"]

    text = (repo / "seg" / "config.pbtxt").read_text()
    (repo / "seg" / "config.pbtxt").write_text(
        text.replace("TYPE_UINT8 dims: [ -1, -1 ]", "TYPE_FP32 dims: [ -1, -1 ]")
    )
    with pytest.raises(ExportError, match="tensor 'mask' TYPE_FP32"):
        verify_repository(repo, "seg", ckpt)
    (repo / "seg" / "config.pbtxt").write_text(text.replace("max_batch_size", "max_batch"))
    with pytest.raises(ExportError, match="not a valid Triton model configuration"):
        verify_repository(repo, "seg", ckpt)
    assert main([*args[:-2], "--name", "../up"]) == 2
    assert "use letters, digits" in capsys.readouterr().err
