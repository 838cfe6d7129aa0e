"""unetkit: train, evaluate, run and serve U-Net semantic segmentation models."""

from unetkit.model import ModelConfig, UNet

__version__ = "0.1.0"

__all__ = ["ModelConfig", "UNet", "__version__"]
