"""Image in -> mask out: the Segmenter (a model with its metadata) and the files `predict` writes.

`Segmenter.predict_batch` is the one path from images to masks: predict, evaluate, the worst-image
grid and training's sample grids all call it, so a mask is always made the same way. The network it
runs is a torch module here; deploy.engines.load puts an ONNX runtime in its place."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from unetkit import plots
from unetkit.config import PredictConfig
from unetkit.data.imageio import IMAGE_EXTENSIONS, DataError, image_to_array, read_image, to_channels
from unetkit.errors import ConfigError
from unetkit.infer.checkpoint import ModelMeta, load_model
from unetkit.infer.inference import decode, postprocess, predict_logits
from unetkit.runtime import Runtime, setup


@dataclass
class Prediction:
    logits: torch.Tensor  # (N, K, H, W) float32, on the CPU
    pred: torch.Tensor  # (N, H, W) uint8 class indices, post-processed


class Segmenter:
    """A trained model ready for inference; what `unetkit.load(path)` returns."""

    def __init__(self, model, meta: ModelMeta, rt: Runtime, engine: str = "torch") -> None:
        self.model = model  # a torch module, or an engines.py runtime with the same call
        self.meta = meta
        self.rt = rt
        self.engine = engine
        self.spec = meta.inference_spec()
        self.classes: list[str] = list(meta.classes)
        self.in_channels: int = meta.in_channels

    @classmethod
    def load(
        cls, path: str | Path, device: str = "auto", precision: str = "auto", engine: str = "torch", log=None
    ) -> Segmenter:
        """The checkpoint's model in PyTorch (weights-only loading). ONNX engines come from
        `unetkit.api.load_segmenter(path, engine)` (deploy.engines), which builds on this; `engine`
        and `log` stay in the signature so older calls that name torch keep working."""
        if engine != "torch":
            raise ConfigError(
                f"engine: Segmenter.load runs PyTorch; for {engine} use unetkit.api.load_segmenter(path, {engine!r})"
            )
        rt = setup(device, precision, channels_last=True)
        model, meta = load_model(path)
        return cls(model.to(rt.device).to(memory_format=torch.channels_last), meta, rt)

    @property
    def binary(self) -> bool:
        return self.meta.binary

    @torch.no_grad()
    def predict_batch(
        self, images: torch.Tensor, tta: bool = False, largest_component: bool = False, fill_holes: bool = False
    ) -> Prediction:
        """images: (N, C, H, W) float32 in [0, 1], one size -> logits and masks at that size."""
        self.model.eval()
        logits = predict_logits(self.model, images.float(), self.spec, self.rt, tta)
        pred = decode(logits, self.binary, self.spec.threshold)[1].cpu()
        if largest_component or fill_holes:
            pred = torch.stack([torch.from_numpy(postprocess(p.numpy(), largest_component, fill_holes)) for p in pred])
        return Prediction(logits.cpu(), pred)

    def to_tensor(self, image, name: str = "image") -> torch.Tensor:
        """Path, PIL image, uint8/float numpy (H, W[, C]) or float tensor (C, H, W) -> (C, H, W) in [0, 1]."""
        if isinstance(image, str | Path):
            return read_image(image, self.in_channels)
        if isinstance(image, Image.Image):
            arr = image_to_array(image)
        elif isinstance(image, np.ndarray):
            arr = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
            arr = arr[:, :, None] if arr.ndim == 2 else arr
        elif isinstance(image, torch.Tensor):
            return self.to_tensor(image.permute(1, 2, 0).float().cpu().numpy(), name)
        else:
            raise TypeError(f"cannot segment a {type(image).__name__}; give a path, PIL image or array")
        arr = to_channels(arr, self.in_channels, name)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def logits(self, image, tta: bool = False) -> torch.Tensor:
        return self.predict_batch(self.to_tensor(image)[None], tta).logits[0]

    def predict_proba(self, image, tta: bool = False) -> np.ndarray:
        """(H, W) foreground probability (binary) or (K, H, W) class probabilities."""
        probs = decode(self.logits(image, tta)[None], self.binary)[0][0]
        return (probs[0] if self.binary else probs).numpy()

    def predict(
        self, image, tta: bool = False, largest_component: bool = False, fill_holes: bool = False
    ) -> np.ndarray:
        """(H, W) uint8 class indices at the image's own size (binary: 0/1)."""
        x = self.to_tensor(image)[None]
        return self.predict_batch(x, tta, largest_component, fill_holes).pred[0].numpy()


def expand_inputs(inputs: list[str] | tuple[str, ...]) -> list[Path]:
    """Files, folders (their images) and globs -> sorted unique image paths; nothing found is an error."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            found.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                raise DataError(f"{item}: no such file, folder or matching images; check the path")
            found += matches
    unique = list(dict.fromkeys(found))
    if not unique:
        raise DataError(f"no images found in {' '.join(inputs)}")
    return unique


def save_mask(pred: np.ndarray, path: Path, num_classes: int, compress_level: int = 6) -> None:
    """Binary: 0/255 PNG; multi-class: class-index PNG with a palette. compress_level 1: twice as
    fast to write, ~1.5x the bytes (what a click's answer wants)."""
    if num_classes == 2:
        Image.fromarray((pred > 0).astype(np.uint8) * 255).save(path, format="PNG", compress_level=compress_level)
    else:
        img = Image.fromarray(pred.astype(np.uint8), mode="P")
        img.putpalette(plots.palette(num_classes).flatten().tolist())
        img.save(path, format="PNG", compress_level=compress_level)


def save_probs(logits: torch.Tensor, binary: bool, out: Path, stem: str) -> None:
    probs = decode(logits[None], binary)[0][0]
    if binary:
        Image.fromarray((probs[0].numpy() * 255).round().astype(np.uint8)).save(out / f"{stem}_prob.png")
    else:
        np.save(out / f"{stem}_probs.npy", probs.numpy().astype(np.float16))


def predict_files(segmenter: Segmenter, config: PredictConfig, progress: bool = True) -> list[Path]:
    """Segment every input image into OUT/<stem>.png (+ overlay / probabilities); returns mask paths."""
    paths = expand_inputs(config.inputs)
    stems = [p.stem for p in paths]
    dupes = {s for s in stems if stems.count(s) > 1}
    if dupes:
        raise DataError(f"several inputs share the name {sorted(dupes)[0]!r}; outputs would overwrite each other")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    k = len(segmenter.classes)
    written = []
    for p in tqdm(paths, desc="predict", disable=not progress, unit="img"):
        image = segmenter.to_tensor(p)
        result = segmenter.predict_batch(image[None], config.tta, config.largest_component, config.fill_holes)
        pred = result.pred[0].numpy()
        target = out / f"{p.stem}.png"
        save_mask(pred, target, k)
        written.append(target)
        if config.overlay:
            Image.fromarray(plots.overlay(plots.to_rgb_uint8(image), pred, k)).save(out / f"{p.stem}_overlay.png")
        if config.probs:
            save_probs(result.logits[0], segmenter.binary, out, p.stem)
    return written
