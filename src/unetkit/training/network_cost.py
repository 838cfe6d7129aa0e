"""What a candidate network costs: multiply-adds of one forward pass, counted by hand for the seed
U-Net and by torch's FLOP counter for a U-Net on another encoder. autoconfig scales measured step
times by these to predict the others'."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from unetkit.config import TrainConfig
from unetkit.model import ModelConfig, build


def unet_macs(config: TrainConfig) -> float:
    """Multiply-adds of one forward pass of the configured U-Net on one image (convolutions only)."""
    h, w = config.data.size
    ch, macs = config.data.in_channels, 0.0
    for width in config.model.widths:
        macs += h * w * 9 * (ch * width + width * width)
        ch, h, w = width, h // 2, w // 2
    macs += h * w * 9 * (ch * 2 * ch + 4 * ch * ch)  # bottleneck
    for width in reversed(config.model.widths):
        macs += h * w * 4 * 2 * width * width  # 2x2 transposed conv, 2w -> w channels
        h, w = h * 2, w * 2
        macs += h * w * 9 * (2 * width * width + width * width)
    return macs


def network_macs(config: TrainConfig) -> float:
    """Multiply-adds of one forward pass on one image: unet_macs for the seed network; for a U-Net on
    another encoder, counted by torch's FLOP counter on a meta-device copy (no memory, no compute)."""
    m = config.model
    if m.encoder == "unet":
        return unet_macs(config)
    norm = "batch" if m.norm == "auto" else m.norm
    with torch.device("meta"):
        model = build(ModelConfig(config.data.in_channels, 1, m.widths, m.upsampling, norm, m.dropout, m.encoder))
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, config.data.in_channels, *config.data.size))
    return counter.get_total_flops() / 2


def cost(trial: TrainConfig) -> float:
    """Multiply-adds of one training step's forward pass (the batch's)."""
    return network_macs(trial) * trial.batch_size
