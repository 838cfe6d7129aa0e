"""Every retrained candidate keeps a share of the starting model (serve/interpolate.py, WiSE-FT): the
weights averaged by hand, BatchNorm's counts kept, and the click recipe kept in the written model."""

import pytest
import torch

from unetkit.deploy.export import export_safetensors
from unetkit.errors import CheckpointError
from unetkit.infer.checkpoint import load_model
from unetkit.serve.interpolate import interpolate, interpolate_checkpoints


def test_interpolate_weighs_the_base_by_keep():
    base = {"w": torch.tensor([0.0, 4.0]), "bn.num_batches_tracked": torch.tensor(3)}
    tuned = {"w": torch.tensor([2.0, 0.0]), "bn.num_batches_tracked": torch.tensor(7)}
    out = interpolate(base, tuned, 0.25)  # 0.25 * base + 0.75 * tuned
    assert torch.equal(out["w"], torch.tensor([1.5, 1.0]))
    assert out["bn.num_batches_tracked"].item() == 7  # counts are not averaged
    assert torch.equal(interpolate(base, tuned, 0.0)["w"], tuned["w"])
    inf = float("inf")  # infinite in both (inf - inf is NaN): the tuned value
    mixed = interpolate({"v": torch.tensor([inf, 2.0])}, {"v": torch.tensor([inf, 4.0])}, 0.5)["v"]
    assert torch.equal(mixed, torch.tensor([inf, 3.0]))
    assert torch.equal(interpolate(base, tuned, 1.0)["w"], base["w"])


def test_interpolate_refuses_models_that_do_not_match():
    w = torch.zeros(2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        interpolate({"w": w}, {"w": w}, 1.5)
    with pytest.raises(CheckpointError, match="differ in their weights.*v"):
        interpolate({"w": w}, {"w": w, "v": w}, 0.5)
    with pytest.raises(CheckpointError, match=r"w: shape \(2,\) in the base model, \(3,\) tuned"):
        interpolate({"w": w}, {"w": torch.zeros(3)}, 0.5)


def test_interpolated_checkpoint_is_halfway_and_keeps_the_click_recipe(click_run, tmp_path):
    base_path = str(click_run.best_checkpoint)
    model, meta = load_model(base_path)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.add_(1.0)
    tuned = export_safetensors(model, meta, tmp_path / "tuned.safetensors")
    out = interpolate_checkpoints(base_path, str(tuned), 0.5, tmp_path / "half.safetensors")
    half, half_meta = load_model(out)
    for k, v in half.state_dict().items():
        expected = base[k] + 0.5 if v.is_floating_point() else base[k]
        assert torch.allclose(v, expected, atol=1e-6), k
    assert half_meta.interactive and half_meta.click_first_zoom == meta.click_first_zoom
    assert half_meta.size == meta.size
