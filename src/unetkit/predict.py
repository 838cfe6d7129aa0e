"""Image in -> mask out: a loaded checkpoint, post-processing, and the files `predict` writes."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from unetkit import checkpoint, plots
from unetkit.imageio import IMAGE_EXTENSIONS, DataError, image_to_array, read_image, to_channels
from unetkit.inference import inference_spec_from, logits_to_pred, logits_to_probs, predict_logits
from unetkit.model import ModelConfig, UNet
from unetkit.runtime import setup


class Segmenter:
    """A trained model ready for inference; what `unetkit.load(path)` returns."""

    def __init__(self, model: UNet, meta: dict, device: str = "auto", precision: str = "auto") -> None:
        self.rt = setup(device, precision, channels_last=True)
        self.model = model.to(self.rt.device).to(memory_format=torch.channels_last).eval()
        self.meta = meta
        self.spec = inference_spec_from(meta)
        self.classes: list[str] = list(meta["classes"])
        self.in_channels: int = meta["input"]["in_channels"]

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", precision: str = "auto") -> Segmenter:
        payload = checkpoint.load(path)
        try:
            model = UNet.from_config(ModelConfig(**payload["model_config"]))
            model.load_state_dict(payload["state_dict"])
        except (RuntimeError, TypeError, ValueError) as e:
            first = str(e).strip().splitlines()[0][:200]
            raise checkpoint.CheckpointError(
                f"{path}: the weights do not fit the model the checkpoint describes ({first}); "
                "the file was edited or comes from another model size: use the checkpoint its run wrote"
            ) from None
        return cls(model, payload, device, precision)

    @property
    def binary(self) -> bool:
        return self.spec.binary

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
        x = self.to_tensor(image)
        return predict_logits(self.model, x[None], self.spec, self.rt, tta)[0].cpu()

    def predict_proba(self, image, tta: bool = False) -> np.ndarray:
        """(H, W) foreground probability (binary) or (K, H, W) class probabilities."""
        probs = logits_to_probs(self.logits(image, tta)[None], self.binary)[0]
        return (probs[0] if self.binary else probs).numpy()

    def predict(
        self, image, tta: bool = False, largest_component: bool = False, fill_holes: bool = False
    ) -> np.ndarray:
        """(H, W) uint8 class indices at the image's own size (binary: 0/1)."""
        logits = self.logits(image, tta)
        pred = logits_to_pred(logits[None], self.binary, self.spec.threshold)[0].numpy().astype(np.uint8)
        return postprocess(pred, largest_component, fill_holes)


def load(path: str | Path, device: str = "auto", precision: str = "auto") -> Segmenter:
    """Load a checkpoint for inference (weights-only; no code in the file runs)."""
    return Segmenter.load(path, device, precision)


def postprocess(pred: np.ndarray, largest_component: bool = False, fill_holes: bool = False) -> np.ndarray:
    """Per class > 0: keep only its largest connected component and/or fill its holes."""
    if not (largest_component or fill_holes):
        return pred
    from scipy import ndimage

    out = pred.copy()
    for c in np.unique(pred):
        if c == 0:
            continue
        region = pred == c
        if largest_component:
            labels, n = ndimage.label(region)
            if n > 1:
                sizes = np.bincount(labels.ravel())[1:]
                keep = labels == (np.argmax(sizes) + 1)
                out[region & ~keep] = 0
                region = keep
        if fill_holes:
            filled = ndimage.binary_fill_holes(region)
            out[filled & (out == 0)] = c
    return out


def expand_inputs(inputs: list[str]) -> list[Path]:
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


def save_mask(pred: np.ndarray, path: Path, num_classes: int) -> None:
    """Binary: 0/255 PNG; multi-class: class-index PNG with a palette."""
    if num_classes == 2:
        Image.fromarray((pred > 0).astype(np.uint8) * 255).save(path)
    else:
        img = Image.fromarray(pred.astype(np.uint8), mode="P")
        img.putpalette(plots.palette(num_classes).flatten().tolist())
        img.save(path)


def predict_files(
    segmenter: Segmenter,
    inputs: list[str],
    out: Path,
    tta: bool = False,
    overlay: bool = True,
    probs: bool = False,
    largest_component: bool = False,
    fill_holes: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Segment every input image into OUT/<stem>.png (+ overlay / probabilities); returns mask paths."""
    paths = expand_inputs(inputs)
    stems = [p.stem for p in paths]
    dupes = {s for s in stems if stems.count(s) > 1}
    if dupes:
        raise DataError(f"several inputs share the name {sorted(dupes)[0]!r}; outputs would overwrite each other")
    out.mkdir(parents=True, exist_ok=True)
    k = len(segmenter.classes)
    written = []
    for p in tqdm(paths, desc="predict", disable=not progress, unit="img"):
        image = segmenter.to_tensor(p)
        logits = predict_logits(segmenter.model, image[None], segmenter.spec, segmenter.rt, tta)[0].cpu()
        pred = logits_to_pred(logits[None], segmenter.binary, segmenter.spec.threshold)[0].numpy().astype(np.uint8)
        pred = postprocess(pred, largest_component, fill_holes)
        target = out / f"{p.stem}.png"
        save_mask(pred, target, k)
        written.append(target)
        if overlay:
            Image.fromarray(plots.overlay(plots.to_rgb_uint8(image), pred, k)).save(out / f"{p.stem}_overlay.png")
        if probs:
            pr = logits_to_probs(logits[None], segmenter.binary)[0]
            if segmenter.binary:
                Image.fromarray((pr[0].numpy() * 255).round().astype(np.uint8)).save(out / f"{p.stem}_prob.png")
            else:
                np.save(out / f"{p.stem}_probs.npy", pr.numpy().astype(np.float16))
    return written
