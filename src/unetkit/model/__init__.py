"""The networks: the seed's U-Net (unet.py) and U-Nets on pretrained encoders behind a registry
(encoders.py: ENCODERS, build(config)); EfficientNet-Lite is efficientnet_lite.py."""

from unetkit.model.encoders import ENCODERS, EncoderUNet, build, load_imagenet
from unetkit.model.unet import ConvBlock, ModelConfig, UNet, count_parameters

__all__ = ["ENCODERS", "ConvBlock", "EncoderUNet", "ModelConfig", "UNet", "build", "count_parameters", "load_imagenet"]
