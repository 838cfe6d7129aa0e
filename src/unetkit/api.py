"""The declared public surface beyond `unetkit.train/load/evaluate`: the functions the CLI itself
calls, which benchmarks and other programs may build on. Nothing else is promised to stay put."""

from unetkit.config import EvaluateConfig, TrainConfig, parse_duration
from unetkit.config.io import merge, resolve, to_dict
from unetkit.data.check import check_dataset
from unetkit.data.formats import read_labels
from unetkit.data.imageio import MaskSpec
from unetkit.data.splits import find_pairs, load_split, split_pairs
from unetkit.deploy.engines import OnnxRuntimeEngine, OpenVinoEngine, export_int8
from unetkit.deploy.engines import installed as installed_engines
from unetkit.deploy.engines import load as load_segmenter
from unetkit.deploy.export import export_onnx, export_safetensors
from unetkit.deploy.int8 import Int8Report, build_int8
from unetkit.deploy.int8 import Recorder as InputRecorder
from unetkit.deploy.int8 import quantize as quantize_int8
from unetkit.infer import evaluation
from unetkit.infer.builtin import available as builtin_models
from unetkit.infer.checkpoint import ModelMeta, load_model
from unetkit.infer.inference import InferenceSpec, decode, predict_logits, run_model
from unetkit.infer.predict import Segmenter
from unetkit.interactive.clicks import Click, next_click
from unetkit.interactive.clicks import iou as click_iou
from unetkit.interactive.evaluate import simulate as simulate_clicks
from unetkit.interactive.evaluate import summarize as summarize_clicks
from unetkit.interactive.predictor import ClickPredictor
from unetkit.model import build as build_network
from unetkit.runtime import Runtime, cpu_has_fast_bf16, cpu_has_vnni, setup
from unetkit.training.autoconfig import epochs_for_budget, fingerprint, time_step
from unetkit.training.loop import FitResult, fit
from unetkit.training.plan import plan_for_budget as plan
from unetkit.training.steps import (
    build_training,
    load_batch,
    resolve_norm,
    standard_batch_fn,
    train_step,
    training_runtime,
)

__all__ = [
    "find_pairs",
    "simulate_clicks",
    "next_click",
    "click_iou",
    "summarize_clicks",
    "Click",
    "ClickPredictor",
    "InputRecorder",
    "TrainConfig",
    "create_app",
    "decode",
    "FitResult",
    "InferenceSpec",
    "MaskSpec",
    "OnnxRuntimeEngine",
    "OpenVinoEngine",
    "ModelMeta",
    "Runtime",
    "Segmenter",
    "build_network",
    "build_training",
    "builtin_models",
    "check_dataset",
    "read_labels",
    "cpu_has_fast_bf16",
    "cpu_has_vnni",
    "epochs_for_budget",
    "evaluate_checkpoint",
    "export_int8",
    "export_onnx",
    "export_safetensors",
    "fingerprint",
    "fit",
    "installed_engines",
    "Int8Report",
    "quantize_int8",
    "build_int8",
    "load_batch",
    "load_model",
    "load_segmenter",
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
    "training_runtime",
]


def evaluate_checkpoint(config: EvaluateConfig, progress: bool = True) -> dict:
    """`unetkit evaluate`'s scores and reports, in the engine config.engine names."""
    seg = load_segmenter(config.checkpoint, config.engine, config.device, config.precision)
    return evaluation.evaluate_checkpoint(config, progress, seg)


def create_app(seg, limits=None, extra_info=None, add_ons=()):
    """The HTTP app (needs the serve extra; imported only when called), with optional add-ons
    (serve.app.AddOn: (app, segmenter, limits) -> entries for GET /v1/model)."""
    from unetkit.serve.app import create_app as make

    return make(seg, limits, extra_info, add_ons)
