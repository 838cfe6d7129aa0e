"""The PyTorch graphs that ONNX export traces: BatchNorm folded into the convolutions, the raw graph
(normalised float in, logits out) and the end-to-end graph of a segmentation model (uint8 image in,
class-index mask out). A kind of model brings its end-to-end graph as a `GraphKind` (this file's
SEGMENTATION, click_graph.CLICKS); the exporter looks it up by ModelMeta.kind."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from unetkit.deploy.parity import Parity
from unetkit.infer.checkpoint import ModelMeta
from unetkit.infer.inference import decode
from unetkit.model import ConvBlock, UNet

EXAMPLE_HW = (37, 45)  # traced at an odd size; every size is dynamic


@dataclass(frozen=True)
class GraphKind:
    """How one kind of model becomes an end-to-end graph, what its file says about it, and its check."""

    # (folded model, meta) -> (graph, example inputs, (input names, output names), dynamic shapes)
    build: Callable[[UNet, ModelMeta], tuple[torch.nn.Module, tuple, tuple[list[str], list[str]], dict]]
    # (meta, variant) -> metadata entries beyond the common ones (export.onnx_metadata)
    metadata: Callable[[ModelMeta, str], dict[str, str]]
    # (onnxruntime session, PyTorch segmenter, label, image (C, H, W) in [0, 1]) -> Parity
    parity: Callable[..., Parity]


def fold_batchnorm(model: UNet) -> UNet:
    """A copy with every eval-mode BatchNorm folded into the convolution before it (same outputs):
    the seed's ConvBlocks, and the pairs an encoder's modules name (`conv_bn_pairs()`)."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, ConvBlock):
            for i in (0, 3):
                if isinstance(module[i + 1], torch.nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = torch.nn.Identity()
        for conv, bn in getattr(module, "conv_bn_pairs", list)():
            setattr(module, conv, fuse_conv_bn_eval(getattr(module, conv), getattr(module, bn)))
            setattr(module, bn, torch.nn.Identity())
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


class ImageGraph(torch.nn.Module):
    """What every end-to-end graph does around the network: uint8 (N, H, W, C) in, scaled, resized to
    the model's size (resize models) and normalised; logits back at the image's size."""

    def __init__(self, model: UNet, meta: ModelMeta) -> None:
        super().__init__()
        self.raw = RawGraph(model)
        self.register_buffer("mean", torch.tensor(meta.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(meta.std).view(1, -1, 1, 1))
        self.size = tuple(meta.size) if meta.resize == "resize" else None

    def normalized(self, image: torch.Tensor, size=None) -> torch.Tensor:
        """uint8 (N, H, W, C) -> normalised float (N, C, h, w) at the network's input size (`size`, else
        the model's for resize models, else the image's own)."""
        x = image.permute(0, 3, 1, 2).float() / 255.0  # (N, C, H, W) in [0, 1]
        size = size if size is not None else self.size
        if size is not None:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def at_image_size(self, logits: torch.Tensor, image: torch.Tensor, always: bool = False) -> torch.Tensor:
        if self.size is None and not always:
            return logits
        return F.interpolate(logits, size=(image.shape[1], image.shape[2]), mode="bilinear", align_corners=False)


class EndToEndGraph(ImageGraph):
    """uint8 image (N, H, W, C) -> uint8 class-index mask (N, H, W): scaling, resizing, normalisation
    and the threshold or argmax inside, so a client in any language needs no pre/post code."""

    def __init__(self, model: UNet, meta: ModelMeta) -> None:
        super().__init__(model, meta)
        self.binary = meta.binary
        self.threshold = meta.threshold

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.at_image_size(self.raw(self.normalized(image)), image)
        return decode(logits, self.binary, self.threshold)[1]


def segmentation_graph(model: UNet, meta: ModelMeta):
    dyn = torch.export.Dim.DYNAMIC
    example = torch.randint(0, 256, (1, *EXAMPLE_HW, meta.in_channels), dtype=torch.uint8)
    return EndToEndGraph(model, meta).eval(), (example,), (["image"], ["mask"]), {"image": {0: dyn, 1: dyn, 2: dyn}}


def segmentation_metadata(meta: ModelMeta, variant: str) -> dict[str, str]:
    return {}  # export.onnx_metadata's entries describe it fully


def segmentation_parity(session, seg, what: str, image: torch.Tensor) -> Parity:
    """The end-to-end graph's mask vs Segmenter.predict's on one image (uint8, as a client sends it)."""
    uint8 = (image * 255).round().clamp(0, 255).to(torch.uint8)
    ref = seg.predict(uint8.permute(1, 2, 0).numpy())
    got = session.run(None, {"image": uint8.permute(1, 2, 0)[None].numpy()})[0][0]
    return Parity(what, tuple(uint8.shape), None, float((ref != got).mean()))


SEGMENTATION = GraphKind(segmentation_graph, segmentation_metadata, segmentation_parity)
