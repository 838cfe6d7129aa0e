"""The declared public surface beyond `unetkit.train/load/evaluate`: the functions the CLI itself
calls, which benchmarks and other programs may build on. Nothing else is promised to stay put."""

from unetkit.autoconfig import epochs_for_budget, fingerprint, plan, time_step
from unetkit.checkpoint import ModelMeta, load_model
from unetkit.clicks import Click
from unetkit.config import TrainConfig, parse_duration
from unetkit.configio import merge, resolve, to_dict
from unetkit.data import load_split, split_pairs
from unetkit.datacheck import check_dataset
from unetkit.engine import FitResult, fit
from unetkit.engines import OnnxRuntimeEngine, OpenVinoEngine
from unetkit.engines import installed as installed_engines
from unetkit.evaluation import evaluate_checkpoint
from unetkit.export import export_onnx, export_safetensors
from unetkit.imageio import MaskSpec
from unetkit.inference import InferenceSpec, predict_logits, run_model
from unetkit.interactive import ClickPredictor
from unetkit.predict import Segmenter
from unetkit.runtime import Runtime, cpu_has_fast_bf16, setup
from unetkit.steps import build_training, load_batch, resolve_norm, standard_batch_fn, train_step

__all__ = [
    "Click",
    "ClickPredictor",
    "TrainConfig",
    "create_app",
    "FitResult",
    "InferenceSpec",
    "MaskSpec",
    "OnnxRuntimeEngine",
    "OpenVinoEngine",
    "ModelMeta",
    "Runtime",
    "Segmenter",
    "build_training",
    "check_dataset",
    "cpu_has_fast_bf16",
    "epochs_for_budget",
    "evaluate_checkpoint",
    "export_onnx",
    "export_safetensors",
    "fingerprint",
    "fit",
    "installed_engines",
    "load_batch",
    "load_model",
    "load_split",
    "merge",
    "parse_duration",
    "plan",
    "predict_logits",
    "resolve",
    "resolve_norm",
    "run_model",
    "setup",
    "split_pairs",
    "standard_batch_fn",
    "time_step",
    "to_dict",
    "train_step",
]


def create_app(seg, limits=None, extra_info=None):
    """The HTTP app (needs the serve extra; imported only when called)."""
    from unetkit.serve import create_app as make

    return make(seg, limits, extra_info)
