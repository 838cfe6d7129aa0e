"""Click-guided training: samples are one object with clicks inside it, the batch has the click and
previous-mask channels, a model trained with --interactive uses its clicks (IoU rises with them), still
predicts without clicks, and exports with the same parity checks."""

import json

import numpy as np
import pytest
import torch

from unetkit.cli import main
from unetkit.config import ClickConfig
from unetkit.config.io import build, merge
from unetkit.data.imageio import IGNORE
from unetkit.interactive.training import click_batch_fn, make_sample, pick_object, zoom_box


def two_squares() -> np.ndarray:
    m = np.zeros((48, 64), np.int64)
    m[4:14, 4:14] = 1  # a 10 x 10 square
    m[20:44, 30:60] = 1  # a 24 x 30 rectangle
    m[0:2, :] = IGNORE
    return m


def test_objects_are_single_regions_or_the_whole_foreground():
    rng = np.random.default_rng(0)
    m = two_squares()
    seen = {int(pick_object(m, rng, whole_share=0.0).sum()) for _ in range(60)}
    assert seen == {100, 720}  # each region alone, the bigger one more often
    assert int(pick_object(m, rng, whole_share=1.0).sum()) == 820
    assert pick_object(np.zeros((8, 8), np.int64), rng, 0.5) is None


def test_zoom_box_holds_the_object_and_stays_inside_the_image():
    rng = np.random.default_rng(1)
    obj = two_squares() == 1
    obj[20:, :] = False  # the small square only
    for _ in range(20):
        y0, x0, y1, x1 = zoom_box(obj, rng)
        assert y0 >= 0 and x0 >= 0 and y1 <= 48 and x1 <= 64 and y1 - y0 >= 14 and x1 - x0 >= 14


def test_samples_have_clicks_inside_their_object_and_keep_ignored_pixels():
    rng = np.random.default_rng(2)
    image = torch.rand(3, 48, 64)
    mask = torch.from_numpy(two_squares())
    cc = ClickConfig(interactive=True, zoom_share=0.0, auto_share=0.0)
    for _ in range(20):
        _, target, clicks, auto = make_sample(image, mask, rng, cc)
        assert not auto and clicks and clicks[0].positive
        assert (target[0:2] == IGNORE).all() and set(torch.unique(target).tolist()) <= {0, 1, IGNORE}
        for c in clicks:
            assert (target[int(c.y), int(c.x)] == 1) == c.positive
    _, target, clicks, auto = make_sample(image, mask, rng, ClickConfig(interactive=True, auto_share=1.0))
    assert auto and clicks == [] and int((target == 1).sum()) == 820


def test_batches_carry_click_disks_and_the_previous_mask(tmp_path):
    from unetkit.config import TrainConfig
    from unetkit.runtime import setup

    config = build(TrainConfig, merge({}, {"clicks": {"interactive": True, "auto_share": 0.0, "click_iters": 0}}))
    prepare = click_batch_fn(config, setup("cpu", "fp32", False), (0.5,) * 3, (0.25,) * 3)
    masks = torch.from_numpy(np.stack([two_squares()] * 4)).to(torch.uint8)
    x, target = prepare(torch.rand(4, 3, 48, 64), masks, seed=3, model=None)
    assert x.shape == (4, 6, 48, 64) and target.shape == (4, 48, 64)
    assert (x[:, 3].flatten(1).sum(1) > 0).all()  # every sample has a positive disk
    assert (x[:, 5] == 0).all()  # no previous mask without corrective clicks
    positives = x[:, 3] > 0
    assert ((target == 1) | ~positives).float().mean() > 0.95  # positive disks sit on their object


def test_a_click_model_uses_its_clicks(click_run, learn_dir, tmp_path, capsys):
    out = tmp_path / "clicks"
    ckpt = str(click_run.best_checkpoint)
    assert main(["evaluate", ckpt, "--data", str(learn_dir), "--clicks", "5", "--json", "--out", str(out)]) == 0
    s = json.loads(capsys.readouterr().out)
    ious = s["iou_at_clicks"]
    assert s["num_images"] == 12 and len(ious) == 5 and s["split"] == "test"
    assert ious[4] > ious[0] + 0.05 and s["noc85"] <= 5 and 0 <= s["nof90"] <= 12
    assert {p.name for p in out.iterdir()} >= {"per_image.csv", "iou_vs_clicks.png", "worst.png", "summary.json"}
    rows = (out / "per_image.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["image", "noc85", "noc90", "iou_1"] and len(rows) == 13
    # with no clicks, `unetkit predict` still works: the automatic prediction
    image = sorted((learn_dir / "test" / "images").iterdir())[0]
    assert main(["predict", ckpt, str(image), "--out", str(tmp_path / "auto")]) == 0
    assert (tmp_path / "auto" / image.name).is_file()


def test_click_models_export_to_onnx_with_parity(click_run, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    ckpt = str(click_run.best_checkpoint)
    assert main(["export", ckpt, "--format", "onnx", "--out", str(tmp_path / "c.onnx")]) == 0
    assert main(["export", ckpt, "--format", "onnx", "--variant", "raw", "--out", str(tmp_path / "r.onnx")]) == 0
    assert main(["export", ckpt, "--format", "safetensors", "--out", str(tmp_path / "c.safetensors")]) == 0
    assert capsys.readouterr().out.count("FAIL") == 0
    proto = onnx.load(str(tmp_path / "c.onnx"))
    assert [i.name for i in proto.graph.input] == ["image", "click_maps", "prev_mask"]
    assert [o.name for o in proto.graph.output] == ["probs", "mask"]
    assert json.loads({p.key: p.value for p in proto.metadata_props}["clicks"]) == {"radius": 5, "threshold": 0.49}
    assert main(["export", ckpt, "--format", "triton", "--out", str(tmp_path / "t")]) == 2


def test_click_predictions_are_the_same_with_the_onnx_engine(click_run, learn_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from unetkit.deploy.engines import load
    from unetkit.interactive.clicks import Click
    from unetkit.interactive.predictor import ClickPredictor

    monkeypatch.setenv("UNETKIT_CACHE", str(tmp_path))
    image = sorted((learn_dir / "test" / "images").iterdir())[1]
    clicks = [Click(30, 30, True), Click(5, 50, False)]
    masks = []
    for engine in ("torch", "onnxruntime"):
        predictor = ClickPredictor(load(click_run.best_checkpoint, engine, "cpu", "fp32"))
        probs = predictor.probs(predictor.seg.to_tensor(image), clicks)
        masks.append(probs > 0.49)
    assert (masks[0] != masks[1]).mean() <= 1e-3


def test_interactive_training_on_multiclass_masks(tmp_path, multiclass_dir):
    """Each class region is an object; the network has one output whatever the data's classes."""
    from unetkit.infer.checkpoint import load_model

    tiny = ["--widths", "4,8", "--size", "32,32", "--batch-size", "4", "--precision", "fp32"]
    run = tmp_path / "mc"
    assert main(["train", "--data", str(multiclass_dir), "--out", str(run), *tiny, "--epochs", "1",
                 "--interactive"]) == 0  # fmt: skip
    model, meta = load_model(run / "checkpoints" / "last.pt")
    assert meta.classes == ("background", "object") and meta.clicks == {"radius": 5, "threshold": 0.49} and meta.binary
    assert model.config.in_channels == 6 and meta.in_channels == 3


def test_click_validation_runs_the_model_in_eval_mode(click_run):
    """Training hands validation its model in train mode; clicks must not run BatchNorm on batch
    statistics nor move its running statistics (they did before: click models' BN drifted on val)."""
    from unetkit.infer.checkpoint import load_model
    from unetkit.infer.predict import Segmenter
    from unetkit.interactive.clicks import Click
    from unetkit.interactive.predictor import ClickPredictor
    from unetkit.model import UNet
    from unetkit.runtime import setup

    _, meta = load_model(click_run.best_checkpoint)
    model = UNet(6, 1, (4, 8), norm="batch").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predictor = ClickPredictor(Segmenter(model, meta, setup("cpu", "fp32", False)))
    predictor.probs(torch.rand(3, 40, 48), [Click(20, 24, True)])
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_view_size_is_kept_through_export_and_evaluate(click_run, learn_dir, tmp_path, capsys):
    """A crop-mode click model with a recorded view size: the ONNX graph runs at the click maps' size
    (parity against ClickPredictor at that size), and evaluate reports the size it ran at."""
    import dataclasses

    pytest.importorskip("onnx")
    from unetkit.api import export_safetensors
    from unetkit.infer.checkpoint import load_model

    model, meta = load_model(click_run.best_checkpoint)
    meta = dataclasses.replace(meta, resize="crop", clicks={**meta.clicks, "view_size": 40})
    path = export_safetensors(model, meta, tmp_path / "view.safetensors")
    capsys.readouterr()
    assert main(["export", str(path), "--format", "onnx", "--out", str(tmp_path / "v.onnx")]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "  ok  " in out, out
    assert load_model(path)[1].click_view_size == 40
    code = main(["evaluate", str(path), "--data", str(learn_dir / "test"), "--clicks", "2", "--json", "--split", "all",
                 "--out", str(tmp_path / "e"), "--view-size", "48"])  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out)["view_size"] == 48  # the override; 40 recorded
