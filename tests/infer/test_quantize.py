"""int8 weight storage (unetkit.infer.quantize): per-channel error bound, exact round trip of what is not
quantised, a file four times smaller than fp32 that loads as an ordinary fp32 model."""

import torch

from unetkit.deploy.export import export_safetensors
from unetkit.infer.checkpoint import load_model
from unetkit.infer.quantize import SCALE_SUFFIX, dequantize_state, quantize_state, storage_of


def test_int8_round_trip_error_is_at_most_half_a_step_per_channel():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 8, 3, 3, generator=g) * torch.tensor([1e-3, 0.1, 1, 10, 0, 5]).view(-1, 1, 1, 1)
    state = {"conv.weight": w, "bn.running_mean": torch.randn(6), "bn.num_batches_tracked": torch.tensor(7)}
    q = quantize_state(state, "int8")
    assert q["conv.weight"].dtype == torch.int8 and q["conv.weight"].abs().max() <= 127
    scale = q["conv.weight" + SCALE_SUFFIX]
    assert torch.allclose(scale, w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / 127)
    assert q["bn.running_mean"].dtype == torch.float16 and q["bn.num_batches_tracked"].dtype == torch.int64
    back = dequantize_state(q)
    assert set(back) == set(state) and back["conv.weight"].dtype == torch.float32
    err = (back["conv.weight"] - w).abs().amax(dim=(1, 2, 3))
    assert torch.all(err <= scale / 2 + 1e-7)  # every channel within half of its own step
    assert torch.equal(back["conv.weight"][4], torch.zeros(8, 3, 3))  # an all-zero channel stays zero
    assert torch.equal(back["bn.num_batches_tracked"], torch.tensor(7))
    assert storage_of(q) == "int8" and storage_of(quantize_state(state, "fp16")) == "fp16"
    assert storage_of(quantize_state(state, "fp32")) == "fp32"


def test_a_tensor_past_fp16s_range_is_stored_fp32_not_infinite():
    """The shipped clicks model's BatchNorm variance reached 90,181: in fp16 that was inf in 9 channels."""
    var = torch.tensor([1.0, 90181.4, 65504.0])
    for storage in ("int8", "fp16"):
        q = quantize_state({"bn.running_var": var, "bn.running_mean": torch.ones(3)}, storage)
        assert q["bn.running_var"].dtype == torch.float32 and q["bn.running_mean"].dtype == torch.float16
        assert torch.equal(dequantize_state(q)["bn.running_var"], var)  # exact, finite
    assert storage_of(q) == "fp16"  # an fp16 file with one fp32 tensor is still fp16 storage
    assert quantize_state({"v": torch.tensor([-70000.0])}, "fp16")["v"].dtype == torch.float32  # both signs


def test_int8_export_is_small_and_predicts_like_the_fp32_model(trained_run, tmp_path):
    model, meta = load_model(trained_run.best_checkpoint)
    sizes = {}
    for storage in ("fp32", "int8"):
        sizes[storage] = export_safetensors(model, meta, tmp_path / f"{storage}.safetensors", storage).stat().st_size
    loaded, meta2 = load_model(tmp_path / "int8.safetensors")
    assert meta2.model == meta.model and all(p.dtype == torch.float32 for p in loaded.parameters())
    assert sizes["int8"] < 0.35 * sizes["fp32"]  # header and fp16 norms included
    x = torch.randn(2, meta.in_channels, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, got = model.eval()(x), loaded(x)
    assert ref.shape == got.shape == (2, 1, 64, 64)  # binary: the mask is logit > 0
    assert ((ref > 0) == (got > 0)).float().mean() > 0.99
    assert (ref - got).abs().max() < 0.05 * ref.abs().max()
