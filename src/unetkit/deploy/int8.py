"""int8 inference: post-training static quantization of a checkpoint's raw ONNX graph with
onnxruntime's QDQ quantizer (int8 weights per output channel, uint8 activations), calibrated on the
inputs the network sees when it runs on the run's own training images. Accuracy is measured, not
assumed: the int8 graph is scored against the fp32 network on the run's validation split, and one
whose metric drops by more than MAX_DROP is refused with the numbers. The graph runs in OpenVINO or
onnxruntime (engines.py: openvino-int8, onnxruntime-int8), which both execute QDQ graphs with int8
kernels. onnxruntime's quantizer ships with onnxruntime; NNCF would add a dependency tree for the same
QDQ graph."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unetkit.data.datasets import SegmentationDataset
from unetkit.data.splits import Pair, run_split
from unetkit.errors import ConfigError
from unetkit.infer.checkpoint import ModelMeta
from unetkit.infer.evaluation import evaluate
from unetkit.infer.predict import Segmenter
from unetkit.interactive.evaluate import object_and_ignore, simulate
from unetkit.interactive.predictor import ClickPredictor
from unetkit.runtime import cpu_has_vnni, setup

MAX_DROP = 0.005  # the largest fall of the validation metric an int8 graph may cost
CALIBRATION_IMAGES = 16  # training images whose network inputs calibrate the activation ranges
CALIBRATION_INPUTS = 32  # at most, evenly spread: the calibrator keeps every activation of each in memory
SCORE_IMAGES = 200  # validation images scored (the first ones of the split) at most
CLICKS = 5  # click models are scored by their mean IoU over the first CLICKS clicks
AGREEMENT = 0.98  # the least share of mask pixels another runtime must give as the scored one does
# convolutions kept in fp32 at each end of the graph: the first read the image (and a click model's click
# disks and previous mask), the last write the logits. builtin:clicks, 200 val images, 7-bit weights (AVX2
# EPYC), mean IoU over 5 clicks 0.8989 in fp32: drop 0.0076 with every conv in int8, 0.0051 with one kept at
# each end (0.0058 calibrated on 32 images instead of 16), 0.0023 with two at each end (of 64)
EDGE_CONVS = 2


@dataclass(frozen=True)
class Int8Report:
    """What the gate measured: the validation metric of fp32 and int8 on the same images, as onnxruntime
    runs the graph; `runtimes`: each other runtime's mask agreement with it on the calibration inputs
    (a runtime that runs the same graph to other masks is refused, whatever the score)."""

    metric: str
    fp32: float
    int8: float
    scored_on: int
    calibrated_on: int
    split: str
    seconds: float
    runtimes: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def drop(self) -> float:
        return self.fp32 - self.int8

    @property
    def passed(self) -> bool:
        return self.drop <= MAX_DROP

    def __str__(self) -> str:
        verdict = "passed" if self.passed else f"refused (limit {MAX_DROP})"
        return (
            f"int8 {self.metric} {self.int8:.4f} vs fp32 {self.fp32:.4f} on {self.scored_on} {self.split} images "
            f"(drop {self.drop:+.4f}): {verdict}"
        )

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "drop": self.drop, "passed": self.passed, "max_drop": MAX_DROP}

    def runtime_refusal(self, runtime: str) -> str | None:
        """Why `runtime` may not run this graph (its masks differ from the scored ones), or None."""
        agreement = self.runtimes.get(runtime)
        if agreement is None or agreement >= AGREEMENT:
            return None
        return (
            f"{runtime} runs the int8 graph to masks that agree with onnxruntime's (which the gate scored) on "
            f"{agreement:.2%} of the pixels of the calibration inputs, under {AGREEMENT:.0%}: refused"
        )

    @classmethod
    def read(cls, path: Path) -> Int8Report | None:
        if not path.is_file():
            return None
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in fields})


class Recorder(torch.nn.Module):
    """The fp32 network, keeping a copy of the first `limit` inputs it is given (calibration data)."""

    def __init__(self, model: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.model, self.limit, self.inputs = model, limit, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for one in x.float().cpu().numpy():
            if len(self.inputs) < self.limit:
                self.inputs.append(np.ascontiguousarray(one[None]))
        return self.model(x)


def run_pairs(meta: ModelMeta, split: str) -> list[Pair]:
    """The run's recorded pairs of `split` that exist on this machine."""
    record, _ = run_split(meta.split, None)
    pairs = record.pairs(split) if record is not None else []
    return [p for p in pairs if p.image.is_file() and p.mask.is_file()]


def dataset_of(meta: ModelMeta, pairs: list[Pair]) -> SegmentationDataset:
    return SegmentationDataset(pairs, meta.mask_spec, meta.in_channels, None, dtype=torch.float32)


def fp32_segmenter(model, meta: ModelMeta) -> Segmenter:
    return Segmenter(model.eval(), meta, setup("cpu", "fp32", channels_last=False))


def calibration_inputs(model, meta: ModelMeta, pairs: list[Pair], n: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """The network's inputs while it does its job on `n` training images: a plain prediction
    (tiles and resizing included) or, for click models, a clicks session of CLICKS clicks."""
    recorder = Recorder(model.eval(), limit=n * (CLICKS if meta.interactive else 4))
    seg = fp32_segmenter(recorder, meta)
    dataset = dataset_of(meta, pairs[:n])
    with torch.no_grad():
        for i in range(len(dataset)):
            image, mask = dataset[i]
            if meta.interactive:
                simulate(ClickPredictor(seg), image, *object_and_ignore(mask), CLICKS)
            else:
                seg.predict_batch(image[None])
    step = -(-len(recorder.inputs) // CALIBRATION_INPUTS)  # (onnxruntime's own bound drops data: 1.32)
    return recorder.inputs[::step]


def score(seg: Segmenter, pairs: list[Pair]) -> tuple[str, float]:
    """(metric name, value) on `pairs`: foreground IoU (binary) or mean IoU, or for click models the
    mean IoU over the first CLICKS clicks of the clicks-to-IoU protocol."""
    dataset = dataset_of(seg.meta, pairs)
    if seg.meta.interactive:
        predictor = ClickPredictor(seg)
        ious = [simulate(predictor, *_item(dataset, i), CLICKS)[0].mean() for i in range(len(dataset))]
        return f"mean IoU over {CLICKS} clicks", float(np.mean(ious))
    s = evaluate(seg, dataset).scores
    return ("foreground IoU", s["mean_iou_fg"]) if seg.binary else ("mean IoU", s["mean_iou"])


def _item(dataset, i):
    image, mask = dataset[i]
    return (image, *object_and_ignore(mask))


class Feed:
    """onnxruntime's CalibrationDataReader protocol over recorded inputs."""

    def __init__(self, inputs: list[np.ndarray]) -> None:
        self.items = iter([{"input": x} for x in inputs])

    def get_next(self):
        return next(self.items, None)


def seven_bit(reduce_range: bool | None) -> bool:
    """Whether int8 weights use 7 bits: as asked, or by default where this CPU lacks VNNI (its uint8 x
    int8 products saturate there)."""
    return not cpu_has_vnni() if reduce_range is None else reduce_range


def quantize(fp32_onnx: Path, out: Path, inputs: list[np.ndarray], reduce_range: bool | None = None) -> Path:
    """QDQ int8 graph of `fp32_onnx`, activation ranges from `inputs` (min-max); `reduce_range`: 7-bit
    weights, onnxruntime's advice for CPUs without VNNI (None: where this CPU lacks it)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer warns per rank-1 tensor it leaves per-tensor
    try:
        with tempfile.TemporaryDirectory(prefix="unetkit-int8-") as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared), str(out), Feed(inputs), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=seven_bit(reduce_range),
                nodes_to_exclude=edge_convs(prepared, EDGE_CONVS),
            )  # fmt: skip
    finally:
        root.setLevel(level)
    return out


def edge_convs(graph: Path, k: int) -> list[str]:
    """The names of the first k and the last k convolutions of an ONNX graph, in its node order."""
    import onnx

    convs = [n.name for n in onnx.load(str(graph)).graph.node if n.op_type in ("Conv", "ConvTranspose")]
    return convs[:k] + convs[-k:] if k and len(convs) > 2 * k else []


def build_int8(
    model,
    meta: ModelMeta,
    fp32_onnx: Path,
    out: Path,
    run_engine,
    log=print,
    reduce_range: bool | None = None,
    others: dict | None = None,
) -> Int8Report:
    """Calibrate, quantize into `out`, score int8 (run in `run_engine(path)`) against fp32 on the run's
    validation split, and write the report beside it (OUT.json). The graph is kept either way (the
    report says whether it passed); callers refuse a failed one. `reduce_range` None: 7-bit weights
    where this CPU lacks VNNI (the graph is built and scored on the machine that runs it). `others`:
    runtime name -> engine factory, each checked against `run_engine` (report.runtimes)."""
    t0 = time.perf_counter()
    train, (split, val) = run_pairs(meta, "train"), _scoring_pairs(meta)
    if not train or not val:
        raise ConfigError(
            "int8: calibrating and scoring need the run's own training and validation images, and the ones it "
            f"recorded are not on this machine ({meta.split and meta.split.get('source')}); use an fp32 engine "
            "(--engine openvino or onnxruntime)"
        )
    reduce_range = seven_bit(reduce_range)
    log(f"int8: calibrating on {min(len(train), CALIBRATION_IMAGES)} training images, scoring on {split}"
        + ("; 7-bit weights" if reduce_range else ""))  # fmt: skip
    inputs = calibration_inputs(model, meta, train)
    tmp = out.with_suffix(f".{os.getpid()}.tmp.onnx")
    quantize(fp32_onnx, tmp, inputs, reduce_range)
    metric, fp32 = score(fp32_segmenter(model, meta), val)
    scored = run_engine(tmp)
    _, int8 = score(Segmenter(scored, meta, setup("cpu", "fp32", channels_last=False), "int8"), val)
    report = Int8Report(metric, fp32, int8, len(val), min(len(train), CALIBRATION_IMAGES), split,
                        time.perf_counter() - t0)  # fmt: skip
    report = dataclasses.replace(report, runtimes=agreement(inputs, scored, others or {}, tmp))
    tmp.replace(out)
    out.with_suffix(".json").write_text(json.dumps(report.to_dict(), indent=1))
    log(f"int8: {report}")
    for name, share in report.runtimes.items():
        log(f"int8: {name} gives the same mask pixels as onnxruntime on {share:.2%} of the calibration inputs")
    return report


def agreement(inputs: list[np.ndarray], scored, others: dict, graph: Path) -> dict[str, float]:
    """Each other runtime's share of mask pixels (logit > 0, or the argmax) equal to the scored runtime's,
    over the calibration inputs (the network's real inputs: click disks included)."""
    out = {}
    for name, make in others.items():
        engine, same, total = make(graph), 0, 0
        for x in map(torch.from_numpy, inputs):
            a, b = scored(x), engine(x)
            masks = [t > 0 if t.shape[1] == 1 else t.argmax(1) for t in (a, b)]
            same, total = same + int((masks[0] == masks[1]).sum()), total + masks[0].numel()
        out[name] = round(same / max(1, total), 5)
    return out


def _scoring_pairs(meta: ModelMeta) -> tuple[str, list[Pair]]:
    for split in ("val", "test"):
        pairs = run_pairs(meta, split)
        if pairs:
            return split, pairs[:SCORE_IMAGES]
    return "val", []
