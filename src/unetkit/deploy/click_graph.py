"""ONNX export of click models: the end-to-end graph takes the uint8 image, the two click-disk maps and
the previous probability map (both at the network's input resolution: the model's `size` for resize
models; for crop models the image's own size, or scaled to its longer side at the checkpoint's
view_size; disks of `click_radius` px) and returns the foreground
probability and the mask (probability above the model's click threshold) at the image's size. Verified
against ClickPredictor. CLICKS is the GraphKind the exporter finds under ModelMeta.kind "interactive"."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F

from unetkit.deploy.graphs import EXAMPLE_HW, GraphKind, ImageGraph
from unetkit.deploy.parity import Parity
from unetkit.infer.checkpoint import ModelMeta
from unetkit.infer.inference import decode, foreground
from unetkit.interactive.clicks import Click, View, click_maps
from unetkit.interactive.predictor import ClickPredictor


class ClickGraph(ImageGraph):
    def __init__(self, model, meta: ModelMeta) -> None:
        super().__init__(model, meta)
        self.threshold = meta.click_threshold

    def forward(self, image: torch.Tensor, click_maps: torch.Tensor, prev_mask: torch.Tensor):
        """The network runs at the click maps' size (the model's view of the image), so a crop-mode
        model with a view size sees the image scaled as ClickPredictor scales it."""
        x = self.normalized(image, click_maps.shape[-2:])
        logits = self.raw(torch.cat([x, click_maps, prev_mask], 1))
        probs, mask = decode(self.at_image_size(logits, image, always=True), True, self.threshold)
        return probs[:, 0], mask


def click_graph(model, meta: ModelMeta):
    """(graph, example inputs, (input names, output names), dynamic shapes) for export_onnx."""
    dyn = torch.export.Dim.DYNAMIC
    h, w = EXAMPLE_HW
    nh, nw = meta.size if meta.resize == "resize" else (h, w)
    example = (
        torch.randint(0, 256, (1, h, w, meta.in_channels), dtype=torch.uint8),
        torch.zeros(1, 2, nh, nw),
        torch.zeros(1, 1, nh, nw),
    )
    net = {0: dyn} if meta.resize == "resize" else {0: dyn, 2: dyn, 3: dyn}
    dims = {"image": {0: dyn, 1: dyn, 2: dyn}, "click_maps": net, "prev_mask": net}
    names = (["image", "click_maps", "prev_mask"], ["probs", "mask"])
    return ClickGraph(model, meta).eval(), example, names, dims


def click_metadata(meta: ModelMeta, variant: str) -> dict[str, str]:
    net = f"{meta.size[0]}x{meta.size[1]}" if meta.resize == "resize" else "the image's H x W"
    if meta.resize == "crop" and meta.click_view_size:
        net = f"H x W scaled so the longer side is {meta.click_view_size}"
    out = {"clicks": json.dumps(meta.clicks), "pred_threshold": json.dumps(meta.click_threshold)}
    if meta.click_first_zoom:  # the step around the graph that unetkit's own callers take (predictor.first_box)
        out["first_zoom"] = (
            f"after the 1st click, if the mask's box has a longer side below {meta.click_first_zoom:g} of the image's, "
            "run again on the box around it and the click (x1.4, at least 200 px a side, inside the image), "
            "the first probabilities as prev_mask"
        )
    if variant == "raw":
        out["inputs"] = "input: float32 (N, C+3, H, W): normalised image, positive disks, negative disks, prev probs"
    else:
        out["inputs"] = (
            f"image: uint8 (N, H, W, C); click_maps: float32 (N, 2, h, w) positive/negative disks of radius "
            f"{meta.clicks.get('radius')} px; prev_mask: float32 (N, 1, h, w) previous probabilities; h x w = {net}"
        )
        out["outputs"] = "probs: float32 (N, H, W) foreground probability; mask: uint8 (N, H, W) probs > pred_threshold"
    return out


def click_parity(session, seg, what: str, image: torch.Tensor):
    """The ONNX graph vs ClickPredictor on one image with a positive and a negative click and a
    non-trivial previous mask: max |probability difference| and differing mask pixels."""
    predictor = ClickPredictor(seg)
    uint8 = (image * 255).round().clamp(0, 255).to(torch.uint8)
    _, h, w = uint8.shape
    clicks = [Click(h // 2, w // 2, True), Click(h // 5, w // 4, False)]
    yy, xx = np.mgrid[:h, :w]
    prev = (0.5 + 0.5 * np.sin(yy / 7.0) * np.cos(xx / 5.0)).astype(np.float32)
    ref = predictor.probs(uint8.float() / 255, clicks, prev)
    view = View.whole(h, w, predictor.net_size((0, 0, h, w), True))
    prev_net = F.interpolate(torch.from_numpy(prev)[None, None], size=view.size, mode="bilinear", align_corners=False)
    feeds = {
        "image": uint8.permute(1, 2, 0)[None].numpy(),
        "click_maps": click_maps(clicks, view, predictor.radius)[None].numpy(),
        "prev_mask": prev_net.numpy(),
    }
    probs, mask = session.run(None, feeds)
    diff = float(np.abs(probs[0] - ref).max())
    return Parity(what, tuple(uint8.shape), diff, float((mask[0] != foreground(ref, predictor.threshold)).mean()))


CLICKS = GraphKind(click_graph, click_metadata, click_parity)
