"""unetkit: train, evaluate, run and serve U-Net semantic segmentation models.

The Python API mirrors the CLI, and is the declared public surface (benchmarks use only it):

    import unetkit
    result = unetkit.train(unetkit.TrainConfig(data=unetkit.DataConfig(root="data")))
    model = unetkit.load(result.best_checkpoint)
    mask = model.predict("image.png")
"""

from unetkit._version import __version__
from unetkit.config import DataConfig, EvaluateConfig, FinetuneConfig, PredictConfig, TrainConfig
from unetkit.deploy import engines
from unetkit.errors import CheckpointError, ConfigError, DataError, TrainingError, UnetkitError
from unetkit.infer.checkpoint import ModelMeta
from unetkit.infer.evaluation import evaluate_checkpoint
from unetkit.model import ModelConfig, UNet
from unetkit.training.loop import fit


def train(config: TrainConfig | None = None, out=None, resume=None):
    """Train (see unetkit.training.loop.fit); returns a FitResult with run_dir and best_checkpoint."""
    return fit(config, out=out, resume=resume)


def load(path, device: str = "auto", precision: str = "auto", engine: str = "torch"):
    """Load a checkpoint for inference; returns a Segmenter with .predict(image). `engine`: torch,
    onnxruntime, openvino or auto (deploy.engines)."""
    return engines.load(path, engine, device, precision)


def evaluate(checkpoint, data, split: str = "auto", out=None, tta: bool = False) -> dict:
    """Metrics of a checkpoint on a dataset (see unetkit.infer.evaluation.evaluate_checkpoint)."""
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
