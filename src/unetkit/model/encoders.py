"""Encoders behind a registry, and the U-Net built on one: the encoder's features at strides 2, 4, 8,
16 and 32 feed a decoder with skip connections (the seed's up blocks: 2x2 transposed conv or bilinear,
concatenation, two 3x3 conv -> norm -> ReLU) and the seed's 1x1 head. `widths` are the decoder's, at
strides 2, 4, 8, 16; a last up block without a skip brings widths[0] back to full resolution. The
encoder keeps its own BatchNorm (what its pretrained weights were learnt with); `norm` is the
decoder's. A new encoder is one module and one entry in ENCODERS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.model import efficientnet_lite
from unetkit.model.unet import ModelConfig, UNet, Up


@dataclass(frozen=True)
class Encoder:
    """How to build one (in_channels -> a module returning [features at strides 2..32], with
    `.channels`) and where its pretrained weights come from, with the normalisation they expect."""

    build: Callable[[int], nn.Module]  # the U-Net pads its input to a multiple of STRIDE before calling it
    imagenet: Callable[[], dict[str, torch.Tensor]]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    first_conv: str  # the state-dict key of its first convolution (input channels adapt there)


def _lite(variant: str) -> Encoder:
    return Encoder(
        build=lambda in_channels: efficientnet_lite.EfficientNetLite(variant, in_channels, divisible=True),
        imagenet=lambda: efficientnet_lite.imagenet_state(variant),
        mean=efficientnet_lite.MEAN,
        std=efficientnet_lite.STD,
        first_conv="stem_conv.weight",
    )


ENCODERS: dict[str, Encoder] = {name: _lite(name) for name in efficientnet_lite.VARIANTS}
STRIDE = 32  # every encoder here reaches stride 32: inputs are padded to a multiple of it


class EncoderUNet(nn.Module):
    """A U-Net on a registered encoder; logits (N, num_classes, H, W) for inputs of any H, W >= 1."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = ENCODERS[c.encoder].build(c.in_channels)
        skips = self.encoder.channels  # strides 2, 4, 8, 16, 32
        ch = skips[-1]
        self.up = nn.ModuleList()
        for width, skip in zip(reversed(c.widths), reversed(skips[:-1]), strict=True):  # strides 16, 8, 4, 2
            self.up.append(Up(ch, width, c.upsampling, c.norm, c.dropout, skip_ch=skip))
            ch = width
        self.final = Up(ch, c.widths[0], c.upsampling, c.norm, c.dropout, skip_ch=0)  # stride 1, no skip
        self.head = nn.Conv2d(c.widths[0], c.num_classes, kernel_size=1)

    @classmethod
    def from_config(cls, config: ModelConfig) -> EncoderUNet:
        return cls(config)

    @property
    def depth(self) -> int:
        return 5  # 2**depth = STRIDE: what export's raw graph pads to

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % STRIDE, (-w) % STRIDE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.forward_padded(x)[..., :h, :w]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W), H and W multiples of 32 -> (N, num_classes, H, W) logits."""
        features = self.encoder(x)
        x = features[-1]
        for up, skip in zip(self.up, reversed(features[:-1]), strict=True):
            x = up(x, skip)
        return self.head(self.final(x, None))


def build(config: ModelConfig) -> nn.Module:
    """The network a ModelConfig describes: the seed U-Net, or a U-Net on a registered encoder."""
    return UNet.from_config(config) if config.encoder == "unet" else EncoderUNet(config)


def load_imagenet(model: EncoderUNet, image_channels: int) -> str:
    """Put the encoder's ImageNet weights into `model` in place; returns the line training logs.
    The first convolution adapts like fine-tuning's (finetune.adapt_first_conv): 3 image channels are
    copied, 1 takes the sum of the RGB kernels (a grey image seen as R=G=B responds the same), and
    the channels after the image's (click maps) start at zero, so they change nothing at first."""
    spec = ENCODERS[model.config.encoder]
    state = spec.imagenet()
    rgb = state[spec.first_conv]
    first = torch.zeros_like(model.encoder.state_dict()[spec.first_conv])
    if image_channels == 1:
        first[:, :1] = rgb.sum(1, keepdim=True)
    else:
        first[:, :3] = rgb  # RGBA: alpha starts at zero
    model.encoder.load_state_dict({**state, spec.first_conv: first})
    extra = model.config.in_channels - image_channels
    note = f", {extra} extra input channels at zero" if extra else ""
    return f"encoder: {model.config.encoder} from its ImageNet weights ({len(state)} tensors{note})"
