"""unetkit: train, evaluate, run and serve U-Net semantic segmentation models.

The Python API mirrors the CLI, and is the declared public surface (benchmarks use only it):

    import unetkit
    result = unetkit.train(unetkit.TrainConfig(data=unetkit.DataConfig(root="data")))
    model = unetkit.load(result.best_checkpoint)
    mask = model.predict("image.png")
"""

from unetkit.checkpoint import ModelMeta
from unetkit.config import DataConfig, EvaluateConfig, FinetuneConfig, PredictConfig, TrainConfig
from unetkit.errors import CheckpointError, ConfigError, DataError, TrainingError, UnetkitError
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


def evaluate(checkpoint, data, split: str = "auto", out=None, tta: bool = False) -> dict:
    """Metrics of a checkpoint on a dataset (see unetkit.evaluation.evaluate_checkpoint)."""
    from unetkit.evaluation import evaluate_checkpoint

    config = EvaluateConfig(checkpoint=str(checkpoint), data=str(data), split=split, out=out, tta=tta)
    return evaluate_checkpoint(config, progress=False)


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DataError",
    "EvaluateConfig",
    "FinetuneConfig",
    "ModelConfig",
    "ModelMeta",
    "PredictConfig",
    "TrainConfig",
    "TrainingError",
    "UNet",
    "UnetkitError",
    "__version__",
    "evaluate",
    "load",
    "train",
]
