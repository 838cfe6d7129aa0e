"""An export is checked against the PyTorch model it came from before anyone uses it: `Parity` is one
image's comparison; the raw graph and safetensors checks live here, each end-to-end graph's check
with its kind (graphs.py, click_graph.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unetkit.data.imageio import read_image
from unetkit.data.splits import run_split
from unetkit.infer.checkpoint import ModelMeta, read_safetensors
from unetkit.infer.inference import decode
from unetkit.model import UNet

LOGIT_TOL = 1e-3  # max |logit difference| allowed between the export and PyTorch (fp32)
MASK_TOL = 1e-3  # share of mask pixels allowed to differ (threshold/argmax ties at boundaries)


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


def with_extra_channels(x: torch.Tensor, model: UNet) -> torch.Tensor:
    """(1, C, H, W) image -> the network's input: channels the network takes beyond the image's (a
    click model's click disks and previous mask) filled with seeded random values in [0, 1]."""
    extra = model.config.in_channels - x.shape[1]
    if not extra:
        return x
    g = torch.Generator().manual_seed(x.shape[-1])
    return torch.cat([x, torch.rand(1, extra, *x.shape[-2:], generator=g)], 1)


def raw_parity(session, seg, what: str, image: torch.Tensor) -> Parity:
    """The raw graph (normalised float in, logits out) vs the PyTorch model on one image."""
    meta = seg.meta
    x = (image - torch.tensor(meta.mean).view(-1, 1, 1)) / torch.tensor(meta.std).view(-1, 1, 1)
    x = with_extra_channels(x[None].float(), seg.model)
    with torch.no_grad():
        ref = seg.model(x).numpy()
    got = session.run(None, {"input": x.numpy().astype(np.float32)})[0]
    masks = [decode(torch.from_numpy(a), seg.binary, meta.threshold)[1] for a in (ref, got)]
    diff = float(np.abs(ref - got).max())
    return Parity(what, tuple(x.shape), diff, float((masks[0] != masks[1]).float().mean()))


def verify_safetensors(path: Path, model: UNet, images) -> list[Parity]:
    """The weights read back from the file vs the model's own, on each image: logits and masks."""
    loaded, meta = read_safetensors(path)
    results = []
    for what, image in images:
        x = with_extra_channels(image[None], model)
        with torch.no_grad():
            a, b = model.eval()(x), loaded(x)
        masks = [decode(t, meta.binary, meta.threshold)[1] for t in (a, b)]
        diff = float((masks[0] != masks[1]).float().mean())
        results.append(Parity(what, tuple(image.shape), float((a - b).abs().max()), diff))
    return results


def sample_images(meta: ModelMeta, real: list[Path], seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """Two random images of different odd sizes, plus up to two real ones (float (C, H, W) in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    out = [(f"random {h}x{w}", torch.rand(meta.in_channels, h, w, generator=g)) for h, w in ((67, 93), (128, 160))]
    for p in real[:2]:
        out.append((f"real {p.name}", read_image(p, meta.in_channels)))
    return out


def real_images(meta: ModelMeta) -> list[Path]:
    """The run's recorded test (else val) images that still exist on this machine."""
    record, _ = run_split(meta.split, None)
    if record is None:
        return []
    for split in ("test", "val", "train"):
        found = [p.image for p in record.pairs(split) if p.image.is_file()]
        if found:
            return found
    return []
