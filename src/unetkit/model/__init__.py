"""The networks: the seed's U-Net (unet.py). Pretrained encoders join here behind a registry."""

from unetkit.model.unet import ConvBlock, ModelConfig, UNet, count_parameters

__all__ = ["ConvBlock", "ModelConfig", "UNet", "count_parameters"]
