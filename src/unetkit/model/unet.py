"""The U-Net of the seed script, with its variants as constructor options.

Default ``UNet()`` is the seed's network exactly: widths 64-128-256-512, a 1024-wide bottleneck,
transposed-conv upsampling, BatchNorm, 3 input channels, 1 output logit: 31,037,633 parameters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.config import check_net

NORMS = ("batch", "group", "instance", "none")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a UNet; stored inside every checkpoint."""

    in_channels: int = 3
    num_classes: int = 1
    widths: tuple[int, ...] = field(default=(64, 128, 256, 512))
    upsampling: str = "transpose"
    norm: str = "batch"
    dropout: float = 0.0
    encoder: str = "unet"  # the seed's contracting path, or a pretrained family (model/encoders.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (1 = binary with one logit), got {self.num_classes}")
        check_net(self.widths, self.upsampling, self.norm, self.dropout, NORMS, self.encoder)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        # 32 groups as in Wu & He, fewer when the width is not divisible by 32.
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """Two (3x3 conv -> norm -> ReLU); the conv has a bias only when there is no norm to absorb it."""

    def __init__(self, in_ch: int, out_ch: int, norm: str = "batch", dropout: float = 0.0) -> None:
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias),
            make_norm(norm, out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias),
            make_norm(norm, out_ch),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class Up(nn.Module):
    """Double the resolution to `out_ch` channels, concatenate the skip (`skip_ch` channels: out_ch in
    the seed; 0 for none), then a ConvBlock."""

    def __init__(
        self, in_ch: int, out_ch: int, upsampling: str, norm: str, dropout: float, skip_ch: int | None = None
    ) -> None:
        super().__init__()
        if upsampling == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_ch, out_ch, kernel_size=1),
            )
        self.block = ConvBlock(out_ch + (out_ch if skip_ch is None else skip_ch), out_ch, norm, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        return self.block(x if skip is None else torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net returning logits (N, num_classes, H, W) for inputs of any H, W >= 1.

    Inputs are zero-padded to a multiple of 2**depth and the output is cropped back, so skip
    tensors always match exactly (the seed interpolated them instead, which shifts features).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        widths: tuple[int, ...] | list[int] = (64, 128, 256, 512),
        upsampling: str = "transpose",
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.config = ModelConfig(in_channels, num_classes, tuple(widths), upsampling, norm, dropout)
        widths = self.config.widths
        self.down = nn.ModuleList()
        ch = in_channels
        for w in widths:
            self.down.append(ConvBlock(ch, w, norm))
            ch = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(ch, 2 * ch, norm, dropout)
        self.up = nn.ModuleList(Up(2 * w, w, upsampling, norm, dropout) for w in reversed(widths))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    @classmethod
    def from_config(cls, config: ModelConfig) -> UNet:
        if config.encoder != "unet":
            raise ValueError(f"UNet is the seed network; build a {config.encoder} one with unetkit.model.build")
        return cls(**{k: v for k, v in asdict(config).items() if k != "encoder"})

    @property
    def depth(self) -> int:
        return len(self.config.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))  # (N, C, H', W'), H' and W' multiples of m
        return self.forward_padded(x)[..., :h, :w]

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) with H and W multiples of 2**depth -> (N, num_classes, H, W) logits."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, skip in zip(self.up, reversed(skips), strict=True):
            x = up(x, skip)
        return self.head(x)  # (N, num_classes, H, W)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
