"""unetkit: train, evaluate, run and serve U-Net semantic segmentation models.

The Python API mirrors the CLI:

    import unetkit
    result = unetkit.train(unetkit.TrainConfig(data=unetkit.DataConfig(root="data")))
    model = unetkit.load(result.best_checkpoint)
    mask = model.predict("image.png")
"""

from unetkit.config import DataConfig, TrainConfig
from unetkit.model import ModelConfig, UNet

__version__ = "0.1.0"


def train(config: TrainConfig | None = None, out=None, resume=None):
    """Train (see unetkit.engine.fit); returns a FitResult with run_dir and best_checkpoint."""
    from unetkit.engine import fit

    return fit(config, out=out, resume=resume)


def load(path, device: str = "auto", precision: str = "auto"):
    """Load a checkpoint for inference; returns a Segmenter with .predict(image)."""
    from unetkit.predict import load as _load

    return _load(path, device, precision)


def evaluate(checkpoint, data, split: str = "test", out=None, tta: bool = False) -> dict:
    """Metrics of a checkpoint on a dataset split (see unetkit.evaluate.evaluate_checkpoint)."""
    from unetkit.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(checkpoint, data, split, out, tta, progress=False)


__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "UNet", "__version__", "evaluate", "load", "train"]
