"""`unetkit export --format triton`: a Triton Inference Server model repository around the end-to-end
ONNX graph (uint8 image in, class-index mask out), so a cluster serves the model with no unetkit code.

    REPO/<name>/config.pbtxt      onnxruntime backend, dynamic batching, CPU or GPU instances
    REPO/<name>/1/model.onnx      the verified end-to-end graph

Verification parses config.pbtxt with Triton's own protobuf definitions (`tritonclient`) and runs the
model with onnxruntime at the declared names, types and shapes, batched as Triton would batch it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetkit.deploy.export import ExportError, export, need
from unetkit.deploy.parity import MASK_TOL
from unetkit.errors import ConfigError
from unetkit.infer.checkpoint import ModelMeta, load_model
from unetkit.infer.predict import Segmenter

ONNX_TO_TRITON = {"tensor(uint8)": "TYPE_UINT8", "tensor(float)": "TYPE_FP32"}


@dataclass(frozen=True)
class TritonOptions:
    name: str = "unetkit"
    kind: str = "cpu"  # instance group: cpu | gpu
    instances: int = 1
    max_batch_size: int = 8
    queue_delay_us: int = 2000  # how long Triton waits to fill a batch

    def check(self) -> None:
        if not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"--name {self.name!r}: use letters, digits, '-' and '_' (it is a folder name)")
        if self.kind not in ("cpu", "gpu"):
            raise ConfigError(f"--triton-kind {self.kind!r}: use cpu or gpu")
        if self.instances < 1 or self.max_batch_size < 1 or self.queue_delay_us < 0:
            raise ConfigError("triton: --instances and --max-batch-size must be >= 1, --queue-delay-us >= 0")


def config_pbtxt(meta: ModelMeta, opts: TritonOptions) -> str:
    """The model configuration in protobuf text format (model_config.proto)."""
    params = {
        "classes": json.dumps(list(meta.classes)),
        "binary": json.dumps(meta.binary),
        "threshold": json.dumps(meta.threshold),
    }
    parameters = "\n".join(
        f'parameters {{ key: "{k}" value {{ string_value: {json.dumps(v)} }} }}' for k, v in params.items()
    )
    return f"""name: "{opts.name}"
backend: "onnxruntime"
platform: "onnxruntime_onnx"
max_batch_size: {opts.max_batch_size}
input [
  {{ name: "image" data_type: TYPE_UINT8 dims: [ -1, -1, {meta.in_channels} ] }}
]
output [
  {{ name: "mask" data_type: TYPE_UINT8 dims: [ -1, -1 ] }}
]
instance_group [ {{ count: {opts.instances} kind: KIND_{opts.kind.upper()} }} ]
dynamic_batching {{ max_queue_delay_microseconds: {opts.queue_delay_us} }}
{parameters}
"""


def write_repository(checkpoint: str | Path, repo: str | Path, opts: TritonOptions, images=None, log=print) -> Path:
    """Export and verify the end-to-end ONNX graph into REPO/<name>/1/, write config.pbtxt, verify both."""
    opts.check()
    _, meta = load_model(checkpoint)
    if meta.interactive:
        raise ConfigError(
            "triton: click models are not exported as Triton repositories yet; use --format onnx (inputs image, "
            "click_maps, prev_mask) and serve it with your own Triton config, or `unetkit serve`"
        )
    model_dir = Path(repo) / opts.name
    export(checkpoint, "onnx", model_dir / "1" / "model.onnx", "e2e", images, log)
    (model_dir / "config.pbtxt").write_text(config_pbtxt(meta, opts))
    for line in verify_repository(Path(repo), opts.name, checkpoint):
        log(f"  ok   {line}")
    log(f"  checked with: {server_check()}")
    log(f"wrote Triton model repository {repo} (model {opts.name!r}, version 1)")
    return model_dir


def server_check() -> str:
    """Which check ran: Triton's in-process server cannot be had from PyPI (the `tritonserver` package
    there is a placeholder that refuses to install; the real wheel ships inside NVIDIA's containers)."""
    try:
        import tritonserver  # noqa: F401
    except ImportError:
        return (
            "Triton's protobuf definitions (tritonclient) + onnxruntime at the declared names, types and shapes; "
            "Triton's in-process server (package tritonserver) is not installed, so the repository was not loaded "
            "by Triton itself"
        )
    return "tritonserver is importable: load the repository with it (tritonserver.Server(model_repository=...))"


def parse_config(path: Path):
    """config.pbtxt -> Triton's ModelConfig message; a typo or unknown field raises here, as in Triton."""
    model_config_pb2 = need("tritonclient.grpc.model_config_pb2", extra="triton")
    from google.protobuf import text_format

    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise ExportError(f"{path}: not a valid Triton model configuration ({e})") from None


def verify_repository(repo: Path, name: str, checkpoint: str | Path) -> list[str]:
    """What Triton would check and do: layout, config, names/types/ranks, a batched run; masks equal
    unetkit's. Returns one line per check that passed; raises ExportError on the first that fails."""
    import onnxruntime as ort

    config = parse_config(repo / name / "config.pbtxt")
    data_type = need("tritonclient.grpc.model_config_pb2", extra="triton").DataType
    model_file = repo / name / "1" / (config.default_model_filename or "model.onnx")

    def holds(ok: bool, what: str) -> str:
        if not ok:
            raise ExportError(f"{repo / name}: {what} does not hold; the repository would not load in Triton")
        return what

    lines = [
        holds(config.name == name, f"config name {config.name!r} equals the folder name"),
        holds(config.backend == "onnxruntime" and config.platform == "onnxruntime_onnx", "onnxruntime backend"),
        holds(model_file.is_file(), f"model file {model_file.relative_to(repo)} exists"),
    ]
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    batched = config.max_batch_size > 0
    for declared, actual in ((config.input, session.get_inputs()), (config.output, session.get_outputs())):
        by_name = {a.name: a for a in actual}
        for d in declared:
            a = by_name.get(d.name)
            type_name = data_type.Name(d.data_type)
            ok = a is not None and ONNX_TO_TRITON.get(a.type) == type_name and len(a.shape) == len(d.dims) + batched
            lines.append(holds(ok, f"tensor {d.name!r} {type_name} dims {list(d.dims)} matches the ONNX graph"))
    seg = Segmenter.load(checkpoint, "cpu", "fp32")
    channels = config.input[0].dims[-1]
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (min(2, max(config.max_batch_size, 1)), 45, 61, channels), dtype=np.uint8)
    masks = session.run([config.output[0].name], {config.input[0].name: batch})[0]
    differ = max(float((masks[i] != seg.predict(batch[i])).mean()) for i in range(len(batch)))
    lines.append(
        holds(
            differ <= MASK_TOL,
            f"a batch of {len(batch)} at the declared names gives unetkit's masks ({differ:.4%} pixels differ)",
        )
    )
    return lines
