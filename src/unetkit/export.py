"""Models that leave unetkit: ONNX graphs (raw and end-to-end) and safetensors weights, each verified
against PyTorch before the command succeeds. onnx/onnxruntime/safetensors are imported lazily
(`pip install 'unetkit[export]'`)."""

from __future__ import annotations

import copy
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unetkit import __version__
from unetkit.checkpoint import ModelMeta, build_model, load_model
from unetkit.errors import ConfigError, UnetkitError
from unetkit.model import ConvBlock, UNet
from unetkit.quantize import dequantize_state, quantize_state

LOGIT_TOL = 1e-3  # max |logit difference| allowed between the export and PyTorch (fp32)
MASK_TOL = 1e-3  # share of mask pixels allowed to differ (threshold/argmax ties at boundaries)


class ExportError(UnetkitError):
    """An export could not be written or does not compute what the PyTorch model computes."""


def _need(module: str, extra: str = "export"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"export: needs the {module} package; pip install 'unetkit[{extra}]'") from None


def fold_batchnorm(model: UNet) -> UNet:
    """A copy with every eval-mode BatchNorm folded into the convolution before it (same outputs)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for block in model.modules():
        if isinstance(block, ConvBlock):
            for i in (0, 3):
                if isinstance(block[i + 1], torch.nn.BatchNorm2d):
                    block[i] = fuse_conv_bn_eval(block[i], block[i + 1])
                    block[i + 1] = torch.nn.Identity()
    return model


class RawGraph(torch.nn.Module):
    """Normalised float (N, C, H, W) of any size -> logits (N, K, H, W); padding inside the graph."""

    def __init__(self, model: UNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        m = 2**self.model.depth
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m))  # always padded: no size-dependent Python
        return self.model.forward_padded(x)[..., :h, :w]


class EndToEndGraph(torch.nn.Module):
    """uint8 image (N, H, W, C) -> uint8 class-index mask (N, H, W): scaling, resizing, normalisation
    and the threshold or argmax inside, so a client in any language needs no pre/post code."""

    def __init__(self, model: UNet, meta: ModelMeta) -> None:
        super().__init__()
        self.raw = RawGraph(model)
        self.register_buffer("mean", torch.tensor(meta.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(meta.std).view(1, -1, 1, 1))
        self.size = tuple(meta.size) if meta.resize == "resize" else None
        self.binary = meta.binary
        self.threshold = meta.threshold

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[1], image.shape[2]
        x = image.permute(0, 3, 1, 2).float() / 255.0  # (N, C, H, W) in [0, 1]
        if self.size is not None:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        logits = self.raw((x - self.mean) / self.std)
        if self.size is not None:
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        if self.binary:
            return (torch.sigmoid(logits[:, 0]) > self.threshold).to(torch.uint8)
        return logits.argmax(1).to(torch.uint8)


def onnx_metadata(meta: ModelMeta, variant: str) -> dict[str, str]:
    return {
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


def export_onnx(model: UNet, meta: ModelMeta, out: Path, variant: str = "e2e", opset: int = 18) -> Path:
    """Write the graph with dynamic batch, height and width and the model's metadata embedded."""
    onnx = _need("onnx")
    _need("onnxscript")
    folded = fold_batchnorm(model.cpu())
    c = meta.in_channels
    dyn = torch.export.Dim.DYNAMIC
    if variant == "raw":
        example = torch.randn(1, model.config.in_channels, 37, 45)  # click models: + click channels
        graph, example, names = RawGraph(folded), example, (["input"], ["logits"])
        dims = {"x": {0: dyn, 2: dyn, 3: dyn}}
    elif meta.interactive:
        from unetkit.click_export import click_graph

        graph, example, names, dims = click_graph(folded, meta)
    else:
        graph = EndToEndGraph(folded, meta).eval()
        example, names = torch.randint(0, 256, (1, 37, 45, c), dtype=torch.uint8), (["image"], ["mask"])
        dims = {"image": {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC}}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    example = example if isinstance(example, tuple) else (example,)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph.eval(), example, dynamo=True, input_names=names[0], output_names=names[1],
            dynamic_shapes=dims, opset_version=opset, verbose=False,
        )  # fmt: skip
    proto = program.model_proto
    metadata = onnx_metadata(meta, variant)
    if meta.interactive:
        from unetkit.click_export import click_metadata

        metadata.update(click_metadata(meta, variant))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    onnx.checker.check_model(str(out))
    return out


# ----------------------------------------------------------------------------------------------
# safetensors: weights + a JSON config, no pickle


def export_safetensors(model: UNet, meta: ModelMeta, out: Path, storage: str | None = None) -> Path:
    """Weights as the model holds them, or in `storage` (fp32 | fp16 | int8: unetkit.quantize), with the
    metadata in the header and beside it."""
    st = _need("safetensors.torch")
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = meta.to_payload()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state = quantize_state(state, storage) if storage else state
    st.save_file(state, str(out), metadata={"unetkit": json.dumps(payload)})
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    return out


def load_safetensors(path: str | Path) -> tuple[UNet, ModelMeta]:
    """(model, meta) from a .safetensors file unetkit wrote: tensors and JSON only, nothing executed."""
    st = _need("safetensors")
    path = Path(path)
    try:
        with st.safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            state = dequantize_state({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118 (no items())
    except Exception as e:
        raise ExportError(f"{path}: not a readable safetensors file ({e})") from None
    if "unetkit" not in header:
        raise ExportError(f"{path}: a safetensors file without unetkit's metadata; export it with unetkit export")
    meta = ModelMeta.from_payload(json.loads(header["unetkit"]), path)
    return build_model(meta, state, path).eval(), meta


# ----------------------------------------------------------------------------------------------
# Verification against PyTorch


@dataclass
class Parity:
    what: str
    shape: tuple[int, ...]
    max_logit_diff: float | None
    mask_diff: float

    @property
    def ok(self) -> bool:
        return (self.max_logit_diff is None or self.max_logit_diff <= LOGIT_TOL) and self.mask_diff <= MASK_TOL

    def __str__(self) -> str:
        logit = "n/a" if self.max_logit_diff is None else f"{self.max_logit_diff:.2e}"
        return f"{self.what} {self.shape}: max |logit diff| {logit}, differing mask pixels {self.mask_diff:.4%}"


def verify_onnx(path: Path, seg, images: list[torch.Tensor], variant: str) -> list[Parity]:
    """Run the ONNX file with onnxruntime and PyTorch (fp32) on each image; one Parity per image."""
    from unetkit.inference import logits_to_pred

    ort = _need("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    results = []
    for what, image in images:
        if variant == "raw":
            x = ((image - torch.tensor(seg.meta.mean).view(-1, 1, 1)) / torch.tensor(seg.meta.std).view(-1, 1, 1))[None]
            if seg.meta.interactive:  # random click disks and previous mask
                g = torch.Generator().manual_seed(x.shape[-1])
                extra = torch.rand(1, 3, *x.shape[-2:], generator=g)
                x = torch.cat([x, (extra[:, :2] > 0.97).float(), extra[:, 2:]], 1)
            with torch.no_grad():
                ref = seg.model(x.float()).numpy()
            got = session.run(None, {"input": x.numpy().astype(np.float32)})[0]
            masks = [logits_to_pred(torch.from_numpy(a), seg.binary, seg.meta.threshold) for a in (ref, got)]
            diff = float(np.abs(ref - got).max())
            results.append(Parity(what, tuple(x.shape), diff, float((masks[0] != masks[1]).float().mean())))
        elif seg.meta.interactive:
            from unetkit.click_export import click_parity

            results.append(click_parity(session, seg, what, image))
        else:
            uint8 = (image * 255).round().clamp(0, 255).to(torch.uint8)
            ref = seg.predict(uint8.permute(1, 2, 0).numpy())
            got = session.run(None, {"image": uint8.permute(1, 2, 0)[None].numpy()})[0][0]
            results.append(Parity(what, tuple(uint8.shape), None, float((ref != got).mean())))
    return results


def verify_safetensors(path: Path, model: UNet, images) -> list[Parity]:
    loaded, _ = load_safetensors(path)
    results = []
    for what, image in images:
        x = image[None]
        extra = model.config.in_channels - x.shape[1]  # click models: random click/previous-mask channels
        if extra:
            x = torch.cat([x, torch.rand(1, extra, *x.shape[-2:], generator=torch.Generator().manual_seed(0))], 1)
        with torch.no_grad():
            a, b = model.eval()(x), loaded(x)
        results.append(
            Parity(what, tuple(image.shape), float((a - b).abs().max()), float(((a > 0) != (b > 0)).float().mean()))
        )
    return results


def sample_images(meta: ModelMeta, real: list[Path], seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """Two random images of different odd sizes, plus up to two real ones (float (C, H, W) in [0, 1])."""
    from unetkit.imageio import read_image

    g = torch.Generator().manual_seed(seed)
    out = [(f"random {h}x{w}", torch.rand(meta.in_channels, h, w, generator=g)) for h, w in ((67, 93), (128, 160))]
    for p in real[:2]:
        out.append((f"real {p.name}", read_image(p, meta.in_channels)))
    return out


def real_images(meta: ModelMeta) -> list[Path]:
    """The run's recorded test (else val) images that still exist on this machine."""
    from unetkit.data import SplitRecord

    if not meta.split:
        return []
    record = SplitRecord.from_dict(meta.split)
    for split in ("test", "val", "train"):
        found = [p.image for p in record.pairs(split) if p.image.is_file()]
        if found:
            return found
    return []


def export(
    checkpoint: str | Path, fmt: str, out: str | Path, variant: str = "e2e", images: list[Path] | None = None, log=print
) -> Path:
    """`unetkit export`: write, verify, and fail (ExportError) if the export does not match PyTorch."""
    from unetkit.predict import Segmenter
    from unetkit.runtime import setup

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
