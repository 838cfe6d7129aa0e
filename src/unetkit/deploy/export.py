"""`unetkit export`: models that leave unetkit as ONNX graphs (raw and end-to-end) and safetensors
weights, each verified against PyTorch before the command succeeds. The graphs are graphs.py's; a kind
of model brings its own end-to-end graph through GRAPH_KINDS (click models: click_graph.py).
onnx/onnxruntime are imported when needed (`pip install 'unetkit[export]'`)."""

from __future__ import annotations

import importlib
import io
import json
import logging
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.onnx import symbolic_helper

from unetkit._version import __version__
from unetkit.deploy.click_graph import CLICKS
from unetkit.deploy.graphs import EXAMPLE_HW, SEGMENTATION, GraphKind, RawGraph, fold_batchnorm
from unetkit.deploy.parity import (
    LOGIT_TOL,
    MASK_TOL,
    Parity,
    raw_parity,
    real_images,
    sample_images,
    verify_safetensors,
)
from unetkit.errors import ConfigError, UnetkitError
from unetkit.infer.checkpoint import ModelMeta, load_model
from unetkit.infer.predict import Segmenter
from unetkit.infer.quantize import quantize_state
from unetkit.model import UNet
from unetkit.runtime import setup

GRAPH_KINDS: dict[str, GraphKind] = {"segmentation": SEGMENTATION, "interactive": CLICKS}  # by ModelMeta.kind


class ExportError(UnetkitError):
    """An export could not be written or does not compute what the PyTorch model computes."""


def need(module: str, extra: str = "export"):
    """An optional dependency, or one `error:` line naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"export: needs the {module} package; pip install 'unetkit[{extra}]'") from None


def onnx_metadata(meta: ModelMeta, variant: str) -> dict[str, str]:
    common = {
        "unetkit_version": __version__,
        "variant": variant,
        "classes": json.dumps(list(meta.classes)),
        "binary": json.dumps(meta.binary),
        "threshold": json.dumps(meta.threshold),
        "mean": json.dumps(list(meta.mean)),
        "std": json.dumps(list(meta.std)),
        "in_channels": json.dumps(meta.in_channels),
        "resize": meta.resize,
        "size": json.dumps(list(meta.size)),
        "inputs": "image: uint8 (N, H, W, C)" if variant == "e2e" else "input: float32 (N, C, H, W), normalised",
        "outputs": "mask: uint8 (N, H, W) class indices" if variant == "e2e" else "logits: float32 (N, K, H, W)",
    }
    return {**common, **GRAPH_KINDS[meta.kind].metadata(meta, variant)}


def _graph(model: UNet, meta: ModelMeta, variant: str):
    """(graph, example inputs, names, dynamic shapes) of the raw graph or of the kind's end-to-end one."""
    if variant != "raw":
        return GRAPH_KINDS[meta.kind].build(model, meta)
    dyn = torch.export.Dim.DYNAMIC
    example = torch.randn(1, model.config.in_channels, *EXAMPLE_HW)  # click models: + click channels
    return RawGraph(model), (example,), (["input"], ["logits"]), {"x": {0: dyn, 2: dyn, 3: dyn}}


def _antialiased_resize(g, x, output_size, align_corners, scales_h=None, scales_w=None):
    """ONNX for F.interpolate(..., antialias=True), which the TorchScript exporter lacks: Resize with
    antialias=1 and exclude_outside=1 (PyTorch's kernel renormalises its window at the borders), as
    the dynamo exporter's own translation (onnxscript torchlib) writes it."""
    mode = "align_corners" if symbolic_helper._maybe_get_const(align_corners, "b") else "half_pixel"
    batch_channels = symbolic_helper._slice_helper(g, g.op("Shape", x), axes=[0], starts=[0], ends=[2])
    size = g.op("Concat", batch_channels, g.op("Cast", output_size, to_i=7), axis_i=0)  # 7: INT64
    empty = symbolic_helper._optional_input_placeholder_tensor(g)
    return g.op(
        "Resize", x, empty, empty, size, mode_s="linear", coordinate_transformation_mode_s=mode,
        antialias_i=1, exclude_outside_i=1, cubic_coeff_a_f=-0.75, nearest_mode_s="floor",
    )  # fmt: skip


def _traced_proto(graph, example, names, dims, opset: int):
    """The graph as an ONNX ModelProto through torch's TorchScript exporter: a fraction of the dynamo
    exporter's time (with it the whole test suite went from 448 to 308 s here), and no onnxscript. The dynamic
    axes are the graph's dynamic shapes, renamed from its forward arguments to the input names; every
    export checks parity at sizes other than the traced one (verify_onnx, the engines' cache)."""
    onnx = need("onnx")
    torch.onnx.register_custom_op_symbolic("aten::_upsample_bilinear2d_aa", _antialiased_resize, opset)
    axes = {name: {axis: f"{name}_{axis}" for axis in spec} for name, spec in zip(names[0], dims.values(), strict=True)}
    buffer = io.BytesIO()
    torch.onnx.export(
        graph.eval(), example, buffer, dynamo=False, input_names=names[0], output_names=names[1],
        dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
    )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def export_onnx(model: UNet, meta: ModelMeta, out: Path, variant: str = "e2e", opset: int = 18) -> Path:
    """Write the graph with dynamic batch, height and width and the model's metadata embedded."""
    onnx = need("onnx")
    graph, example, names, dims = _graph(fold_batchnorm(model.cpu()), meta, variant)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        proto = _traced_proto(graph, example, names, dims, opset)
    for key, value in onnx_metadata(meta, variant).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    onnx.checker.check_model(str(out))
    return out


def export_safetensors(model: UNet, meta: ModelMeta, out: Path, storage: str | None = None) -> Path:
    """Weights as the model holds them, or in `storage` (fp32 | fp16 | int8: unetkit.infer.quantize),
    with the metadata in the header and beside it; infer.checkpoint.read_safetensors reads it back."""
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = meta.to_payload()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state = quantize_state(state, storage) if storage else state
    save_file(state, str(out), metadata={"unetkit": json.dumps(payload)})
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    return out


def verify_onnx(path: Path, seg: Segmenter, images: list[tuple[str, torch.Tensor]], variant: str) -> list[Parity]:
    """Run the ONNX file with onnxruntime and PyTorch (fp32) on each image; one Parity per image."""
    ort = need("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    check = raw_parity if variant == "raw" else GRAPH_KINDS[seg.meta.kind].parity
    return [check(session, seg, what, image) for what, image in images]


def export(
    checkpoint: str | Path, fmt: str, out: str | Path, variant: str = "e2e", images: list[Path] | None = None, log=print
) -> Path:
    """`unetkit export`: write, verify, and fail (ExportError) if the export does not match PyTorch."""
    model, meta = load_model(checkpoint)
    out = Path(out)
    samples = sample_images(meta, images if images is not None else real_images(meta))
    if fmt == "onnx":
        export_onnx(model, meta, out, variant)
        parity = verify_onnx(out, Segmenter(model, meta, setup("cpu", "fp32", channels_last=False)), samples, variant)
    elif fmt == "safetensors":
        export_safetensors(model, meta, out)
        parity = verify_safetensors(out, model, samples)
    else:
        raise ConfigError(f"format: unknown export format {fmt!r}; use onnx or safetensors")
    for p in parity:
        log(f"  {'ok  ' if p.ok else 'FAIL'} {p}")
    if not all(p.ok for p in parity):
        raise ExportError(
            f"{out}: the export does not compute what the PyTorch model computes (limits: |logit diff| <= "
            f"{LOGIT_TOL}, differing mask pixels <= {MASK_TOL:.2%}); the file was written but should not be used"
        )
    log(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB), verified on {len(parity)} images")
    return out
