"""Reading images and masks from disk into tensors, and turning raw mask values into class indices.

Internally a mask is a uint8 (H, W) tensor of class indices with ``IGNORE`` (255) for pixels that
count in neither loss nor metrics; the on-disk ignore value is configurable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from unetkit.errors import DataError  # re-exported: callers import it from here

IGNORE = 255
MAX_PIXELS = 200_000_000  # larger images are refused with a message instead of exhausting memory
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm")


def _open(path: Path, what: str) -> Image.Image:
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found; check the path")
    try:
        img = Image.open(path)
        if img.width * img.height > MAX_PIXELS:
            raise DataError(
                f"{path}: {img.width}x{img.height} pixels is larger than the {MAX_PIXELS:,} pixel limit; "
                "downscale or tile the image first"
            )
        img.load()
    except DataError:
        raise
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: image too large ({e}); downscale or tile it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read {what} ({e}); re-export the file or remove the pair") from None
    return img


def image_to_array(img: Image.Image) -> np.ndarray:
    """PIL image (EXIF orientation applied) -> float32 (H, W, C) in [0, 1]; any bit depth and mode."""
    img = ImageOps.exif_transpose(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB" if img.mode != "1" else "L")
    elif img.mode == "LA":
        img = img.convert("RGBA")
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype in (np.uint16, np.dtype(">u2"), np.dtype("<u2")):
        out = arr.astype(np.float32) / 65535.0
    elif img.mode in ("I", "I;16", "I;16B", "I;16L"):
        # 32-bit int containers usually hold 16-bit data.
        out = arr.astype(np.float32) / (65535.0 if arr.max(initial=0) <= 65535 else float(arr.max()))
    elif arr.dtype.kind == "f":
        out = np.clip(arr.astype(np.float32), 0.0, 1.0) if arr.max(initial=0) <= 1.0 else arr / arr.max()
    else:
        out = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    if out.ndim == 2:
        out = out[:, :, None]
    return out


def to_channels(arr: np.ndarray, in_channels: int, path: Path | str) -> np.ndarray:
    """Convert (H, W, c) to (H, W, in_channels) where that loses nothing; otherwise a DataError."""
    c = arr.shape[2]
    if c == in_channels:
        return arr
    if in_channels == 3 and c == 1:
        return np.repeat(arr, 3, axis=2)
    if in_channels == 3 and c == 4:
        return arr[:, :, :3]  # alpha dropped
    if in_channels == 1 and c in (3, 4):
        rgb = arr[:, :, :3]
        if np.ptp(rgb, axis=2).max(initial=0) < 1e-6:  # a grey image saved as RGB
            return rgb[:, :, :1]
    if in_channels == 4 and c == 3:
        return np.concatenate([arr, np.ones_like(arr[:, :, :1])], axis=2)
    raise DataError(
        f"{path}: image has {c} channel(s) but the model expects {in_channels}; "
        f"convert the image or train with --in_channels {c if c in (1, 3, 4) else 3}"
    )


def read_image(path: str | Path, in_channels: int = 3) -> torch.Tensor:
    """Image file -> float32 (C, H, W) tensor in [0, 1] with C = in_channels."""
    path = Path(path)
    arr = to_channels(image_to_array(_open(path, "image")), in_channels, path)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


class MaskSource:
    """A mask that is no file of its own: an entry of a label file (COCO, LabelMe, ...), rendered when
    read. `path` is the label file, `fragment` names the entry in it; `key` is both, unique."""

    path: Path
    fragment: str

    @property
    def key(self) -> str:
        return f"{self.path.resolve()}#{self.fragment}"

    def read(self) -> np.ndarray:
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{self.path}#{self.fragment}"


def file_stamp(path: Path | MaskSource) -> tuple[int, int]:
    """What says a file (for a label file's entry: the label file) changed: its size and mtime."""
    s = (path.path if isinstance(path, MaskSource) else path).stat()
    return s.st_size, s.st_mtime_ns


def read_mask_raw(path: str | Path | MaskSource) -> np.ndarray:
    """Mask file -> raw values: (H, W) ints, or (H, W, 3) uint8 for colour masks.

    Palette PNGs give their palette indices (the usual class-index encoding). A label file's entry
    (MaskSource) renders its mask: class indices, 255 = ignore."""
    if isinstance(path, MaskSource):
        return path.read()
    path = Path(path)
    img = ImageOps.exif_transpose(_open(path, "mask"))
    if img.mode in ("RGB", "RGBA"):
        arr = np.asarray(img)[:, :, :3]
        if (arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 1] == arr[:, :, 2]).all():
            return arr[:, :, 0].copy()
        return arr.copy()
    if img.mode == "LA":
        img = img.getchannel(0)
    if img.mode == "1":
        img = img.convert("L")
        return (np.asarray(img) > 0).astype(np.uint8)
    if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise DataError(f"{path}: mask mode {img.mode} is not supported; save masks as 8-bit PNG")
    return np.asarray(img).astype(np.int64 if img.mode.startswith("I") else np.uint8)


def read_mask(path: str | Path | MaskSource, spec: MaskSpec) -> np.ndarray:
    """uint8 (H, W) class indices with IGNORE: a mask file's values through `spec`; a label file's entry
    as rendered, which is class indices already (so one dataset may mix mask files and label entries:
    a CSV listing DUTS masks and COCO instances)."""
    if isinstance(path, MaskSource):
        return path.read().astype(np.uint8, copy=False)
    return spec.encode(read_mask_raw(path), path)


@dataclass(frozen=True)
class MaskSpec:
    """How raw mask values map to class indices. Resolved once per dataset, saved with the model."""

    mode: str  # binary | index | rgb
    num_classes: int  # >= 2 (binary = 2: background, foreground)
    ignore_value: int | None = None
    colors: tuple[tuple[int, int, int], ...] = ()
    threshold: int = 0  # binary: raw >= threshold is foreground (soft-edged masks); 0 = exact 0/255 or 0/1

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "num_classes": self.num_classes,
            "ignore_value": self.ignore_value,
            "colors": [list(c) for c in self.colors],
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, d: dict) -> MaskSpec:
        colors = tuple(tuple(c) for c in d.get("colors", ()))
        return cls(d["mode"], int(d["num_classes"]), d.get("ignore_value"), colors, int(d.get("threshold", 0)))

    def encode(self, raw: np.ndarray, path: Path | str = "mask") -> np.ndarray:
        """Raw mask -> uint8 (H, W) class indices with IGNORE; unknown values are a DataError."""
        if self.mode == "rgb":
            if raw.ndim != 3:
                raise DataError(f"{path}: expected a colour (RGB) mask, found a single-channel one")
            key = (raw[..., 0].astype(np.int64) << 16) | (raw[..., 1].astype(np.int64) << 8) | raw[..., 2]
            out = np.full(raw.shape[:2], IGNORE, dtype=np.uint8)
            known = np.zeros(raw.shape[:2], dtype=bool)
            for i, (r, g, b) in enumerate(self.colors):
                hit = key == ((r << 16) | (g << 8) | b)
                out[hit] = i
                known |= hit
            if self.ignore_value is not None:
                known |= key == self.ignore_value
            if not known.all():
                bad = np.unique(raw[~known].reshape(-1, 3), axis=0)[:5].tolist()
                raise DataError(f"{path}: colours {bad} are not in the class colour table; add them to `colors`")
            return out
        if raw.ndim == 3:
            raise DataError(f"{path}: colour mask found; set mask_mode=rgb and give the class colours (--colors)")
        raw = raw.astype(np.int64)
        ignore = raw == self.ignore_value if self.ignore_value is not None else np.zeros(raw.shape, bool)
        if self.mode == "binary" and self.threshold:
            fg = raw >= self.threshold
            ok = np.ones(raw.shape, bool)
            out = fg.astype(np.uint8)
        elif self.mode == "binary":
            fg = (raw == 255) | (raw == 1)
            ok = fg | (raw == 0) | ignore
            out = fg.astype(np.uint8)
        else:
            ok = ((raw >= 0) & (raw < self.num_classes)) | ignore
            out = np.clip(raw, 0, 255).astype(np.uint8)
        if not ok.all():
            if self.mode == "binary":
                raise DataError(stray_values_message(path, raw))
            bad = np.unique(raw[~ok])[:10].tolist()
            allowed = "0 and 255 (or 0 and 1)" if self.mode == "binary" else f"0..{self.num_classes - 1}"
            raise DataError(
                f"{path}: mask values {bad} are outside the declared classes ({allowed}); "
                "fix the mask, set ignore_value, or declare more classes"
            )
        out[ignore] = IGNORE
        return out


def stray_values_message(path: Path | str, raw: np.ndarray) -> str:
    """One line for a binary mask holding values other than 0/255 (or 0/1): how many, which, and why."""
    values = np.unique(raw)
    shown = ", ".join(str(v) for v in values[:6].tolist()) + (", ..." if len(values) > 6 else "")
    return (
        f"{path}: {len(values)} distinct value{'s' if len(values) > 1 else ''} ({shown}), expected {{0, 255}}; "
        "was it resized with "
        "interpolation? Re-save it with nearest resampling, or treat it as soft-edged with --mask-threshold 128"
    )


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) float -> (C, h, w): bilinear, antialiased when shrinking (area-like)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return torch.nn.functional.interpolate(
        image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True
    )[0].to(image.dtype)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) labels -> (h, w): nearest only, so no label is ever invented."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    out = torch.nn.functional.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")
    return out[0, 0].to(mask.dtype)
