import pytest
import torch
import torch.nn.functional as F

from unetkit import UNet
from unetkit.model import ModelConfig, count_parameters
from unetkit.model import unet as unet_module


def tiny(**kw) -> UNet:
    return UNet(**{"widths": (4, 8), **kw})


def test_default_is_the_seed_network():
    model = UNet()
    assert count_parameters(model) == 31_037_633
    assert model.config == ModelConfig()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.bias is None for c in convs if c.kernel_size == (3, 3))
    assert model.head.kernel_size == (1, 1)
    assert model.bottleneck[0].out_channels == 1024
    assert isinstance(model.up[0].up, torch.nn.ConvTranspose2d)
    assert model.up[0].up.stride == (2, 2)


@pytest.mark.parametrize("size", [(1, 1), (97, 131), (16, 16), (33, 7)])
@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_any_input_size_gives_same_size_output(size, upsampling):
    model = tiny(num_classes=3, upsampling=upsampling).eval()
    out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 3, *size)


@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
def test_every_parameter_gets_a_gradient(norm):
    model = tiny(norm=norm, dropout=0.1, widths=(4, 8, 16))
    out = model(torch.randn(2, 3, 20, 24))
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_depth_follows_widths():
    model = UNet(in_channels=1, num_classes=2, widths=(8, 16, 32, 64, 128))
    assert model.depth == 5
    assert model(torch.randn(1, 1, 40, 50)).shape == (1, 2, 40, 50)


def test_same_seed_same_weights_and_output():
    x = torch.randn(1, 3, 24, 24)
    torch.manual_seed(0)
    a = tiny().eval()
    torch.manual_seed(0)
    b = tiny().eval()
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    assert torch.equal(a(x), b(x))


def test_bad_options_are_errors_naming_the_option():
    with pytest.raises(ValueError, match="upsampling"):
        UNet(upsampling="nearest")
    with pytest.raises(ValueError, match="norm"):
        UNet(norm="layer")
    with pytest.raises(ValueError, match="widths"):
        UNet(widths=())


def test_tiny_unet_overfits_one_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    # Masks: a bright disc on each image, so the signal is learnable from pixels.
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    centres = torch.randint(8, 24, (4, 2), generator=g)
    target = torch.stack([((yy - cy) ** 2 + (xx - cx) ** 2 < 36).float() for cy, cx in centres])
    x = x * 0.3 + target[:, None] * 0.7
    torch.manual_seed(0)
    model = UNet(widths=(8, 16))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        loss = F.binary_cross_entropy_with_logits(model(x)[:, 0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = tiny(widths=(8, 16, 32)).eval()
    x = torch.randn(2, 3, 37, 45)
    ref = model(x)
    out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_compiles_in_eval_mode():
    # fullgraph: the whole forward traces as one graph (no graph breaks from our Python). The
    # aot_eager backend checks tracing in a second; inductor's C++ code generation is PyTorch's own
    # concern and took 30 s here.
    torch.manual_seed(0)
    model = tiny().eval()
    x = torch.randn(1, 3, 19, 23)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-4)


def test_exports_with_torch_export():
    torch.manual_seed(0)
    model = tiny().eval()
    x = torch.randn(1, 3, 19, 23)
    program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), model(x), atol=1e-5, rtol=1e-4)


def test_the_package_names_the_seed_network_of_its_module():
    assert UNet is unet_module.UNet and ModelConfig is unet_module.ModelConfig
    assert count_parameters(UNet()) == 31_037_633
