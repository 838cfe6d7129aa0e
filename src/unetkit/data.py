"""Finding image/mask pairs, splitting them, checking them, and serving them as cached datasets."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unetkit.config import DataConfig
from unetkit.imageio import (
    IGNORE,
    IMAGE_EXTENSIONS,
    DataError,
    MaskSpec,
    infer_mask_spec,
    read_image,
    read_mask_raw,
    resize_image,
    resize_mask,
)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path | None
    split: str | None = None

    @property
    def id(self) -> str:
        return self.image.stem


@dataclass
class Problem:
    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}; fix: {self.fix}"


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def pair_folder(images_dir: Path, masks_dir: Path, mask_suffix: str = "", split: str | None = None):
    """Match images and masks by stem (extensions may differ); returns (pairs, problems)."""
    problems: list[Problem] = []
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: images folder not found; expected DIR/images and DIR/masks")
    if not masks_dir.is_dir():
        raise DataError(f"{masks_dir}: masks folder not found; expected DIR/images and DIR/masks")
    masks: dict[str, Path] = {}
    for m in _images_in(masks_dir):
        stem = m.stem
        if mask_suffix:
            if not stem.endswith(mask_suffix):
                problems.append(Problem(str(m), f"mask name lacks the suffix {mask_suffix!r}", "rename it"))
                continue
            stem = stem[: -len(mask_suffix)]
        if stem in masks:
            problems.append(Problem(str(m), f"two masks for {stem!r} ({masks[stem].name})", "remove one"))
            continue
        masks[stem] = m
    pairs, seen = [], {}
    for img in _images_in(images_dir):
        if img.stem in seen:
            problems.append(Problem(str(img), f"two images named {img.stem!r} ({seen[img.stem].name})", "remove one"))
            continue
        seen[img.stem] = img
        mask = masks.pop(img.stem, None)
        if mask is None:
            problems.append(
                Problem(str(img), "image has no mask", f"add {masks_dir}/{img.stem}{mask_suffix}.png or remove it")
            )
        else:
            pairs.append(Pair(img, mask, split))
    for stem, m in sorted(masks.items()):
        problems.append(Problem(str(m), f"mask has no image {stem!r}", f"add the image to {images_dir} or remove it"))
    return pairs, problems


def read_csv_pairs(path: Path):
    """CSV with header image,mask[,split]; relative paths are relative to the CSV's folder."""
    if not path.is_file():
        raise DataError(f"{path}: CSV file not found")
    pairs, problems = [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if not {"image", "mask"} <= cols:
            raise DataError(f"{path}: CSV needs a header with columns image,mask[,split]; found {sorted(cols)}")
        for i, row in enumerate(reader, start=2):
            split = (row.get("split") or "").strip() or None
            if split is not None and split not in SPLITS:
                problems.append(Problem(f"{path}:{i}", f"unknown split {split!r}", "use train, val or test"))
                continue
            img, mask = (path.parent / row["image"].strip()), (path.parent / row["mask"].strip())
            if not img.is_file():
                problems.append(Problem(str(img), "image file missing", f"fix line {i} of {path.name}"))
            elif not mask.is_file():
                problems.append(Problem(str(mask), "mask file missing", f"fix line {i} of {path.name}"))
            else:
                pairs.append(Pair(img, mask, split))
    return pairs, problems


def find_pairs(cfg: DataConfig):
    """All pairs of a dataset with their split if the layout defines one; returns (pairs, problems)."""
    if cfg.csv:
        return read_csv_pairs(Path(cfg.csv))
    root = Path(cfg.root or "")
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found; give --data DIR with images/ and masks/ inside")
    split_dirs = [s for s in SPLITS if (root / s / "images").is_dir()]
    if split_dirs:
        pairs, problems = [], []
        for s in split_dirs:
            p, q = pair_folder(root / s / "images", root / s / "masks", cfg.mask_suffix, s)
            pairs += p
            problems += q
        return pairs, problems
    if not (root / "images").is_dir():
        raise DataError(
            f"{root}: no images/ folder (nor train/images); put images in {root}/images and masks in {root}/masks"
        )
    return pair_folder(root / "images", root / "masks", cfg.mask_suffix)


def split_pairs(pairs: list[Pair], fractions=(0.7, 0.15, 0.15), seed: int = 0) -> dict[str, list[Pair]]:
    """Pairs keep the split their layout gives; splits the layout lacks are cut, seeded, from the rest.

    No layout splits: all pairs are cut by `fractions`. Only train (+ test) folders: val (and test)
    are cut from train with their fractions, so evaluation never looks at training pairs."""
    out: dict[str, list[Pair]] = {s: [] for s in SPLITS}
    free = []
    for p in pairs:
        (out[p.split] if p.split else free).append(p)
    present = {s for s in SPLITS if out[s]}
    if present:
        fractions = tuple(0.0 if s in present and s != "train" else f for s, f in zip(SPLITS, fractions, strict=True))
        free += out["train"]
        out["train"] = []
    if free:
        total = sum(fractions)
        fractions = tuple(f / total for f in fractions)
        free = sorted(free, key=lambda p: str(p.image))
        random.Random(seed).shuffle(free)
        n = len(free)
        n_val = round(n * fractions[1])
        n_test = round(n * fractions[2])
        if n >= 3 and fractions[1] > 0 and n_val == 0:
            n_val = 1
        n_train = n - n_val - n_test
        if n_train < 1:
            raise DataError(f"only {n} pairs: too few to split {fractions}; add data or change --split")
        out["train"] += free[:n_train]
        out["val"] += free[n_train : n_train + n_val]
        out["test"] += free[n_train + n_val :]
    if not out["train"]:
        raise DataError("no training pairs found; check the data folder layout")
    return out


def write_splits(splits: dict[str, list[Pair]], path: Path) -> None:
    data = {s: [{"image": str(p.image), "mask": str(p.mask)} for p in ps] for s, ps in splits.items()}
    path.write_text(json.dumps(data, indent=1))


def read_splits(path: Path) -> dict[str, list[Pair]]:
    data = json.loads(Path(path).read_text())
    return {s: [Pair(Path(d["image"]), Path(d["mask"]), s) for d in data.get(s, [])] for s in SPLITS}


# ----------------------------------------------------------------------------------------------
# The data check: one pass over every pair, a summary, and problems with fixes.


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    sizes: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    mask_values: Counter = field(default_factory=Counter)  # raw value -> pixel count
    empty_masks: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    bad_pairs: set[str] = field(default_factory=set)  # image paths of pairs that failed
    spec: MaskSpec | None = None
    class_pixels: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self, classes: tuple[str, ...] = ()) -> str:
        lines = ["pairs per split: " + ", ".join(f"{k} {v}" for k, v in self.counts.items())]
        sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in self.sizes.most_common(8))
        more = f" and {len(self.sizes) - 8} more" if len(self.sizes) > 8 else ""
        lines.append(f"image sizes (WxH): {sizes}{more}")
        lines.append("image modes: " + ", ".join(f"{m} ({n})" for m, n in self.modes.most_common()))
        vals = ", ".join(f"{v}" for v in sorted(self.mask_values)[:32])
        lines.append(f"mask values found: {vals}")
        if self.spec:
            lines.append(
                f"mask encoding: {self.spec.mode}, {self.spec.num_classes} classes"
                + (f", ignore value {self.spec.ignore_value}" if self.spec.ignore_value is not None else "")
            )
        total = sum(self.class_pixels.values())
        if total:

            def name(c):
                if c == IGNORE:
                    return "ignore"
                return classes[c] if c < len(classes) else str(c)

            freq = ", ".join(f"{name(c)} {n / total:.1%}" for c, n in sorted(self.class_pixels.items()))
            lines.append(f"class pixel frequencies: {freq}")
        if self.empty_masks:
            shown = ", ".join(self.empty_masks[:5]) + (" ..." if len(self.empty_masks) > 5 else "")
            lines.append(f"images with empty masks (no foreground): {len(self.empty_masks)}: {shown}")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p}" for p in self.problems]
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def resolve_spec(cfg: DataConfig, pairs: list[Pair], sample: int = 64) -> MaskSpec:
    """Decide the mask encoding from the config, or from a sample of masks when mode is auto."""
    n = len(cfg.classes) or None
    if cfg.mask_mode == "rgb":
        return MaskSpec("rgb", len(cfg.colors), cfg.ignore_value, cfg.colors)
    if cfg.mask_mode == "binary":
        return MaskSpec("binary", 2, cfg.ignore_value)
    if cfg.mask_mode == "index" and n:
        return MaskSpec("index", n, cfg.ignore_value)
    values: list[set[int]] = []
    step = max(1, len(pairs) // sample)
    for p in pairs[::step]:
        try:
            raw = read_mask_raw(p.mask)
        except DataError:
            continue
        if raw.ndim == 3:
            raise DataError(f"{p.mask}: colour masks need mask_mode=rgb and a colour per class (--colors)")
        values.append(set(np.unique(raw).tolist()))
    if not values:
        raise DataError("no readable masks found; run `unetkit data check` to see why")
    if cfg.mask_mode == "index":
        spec = infer_mask_spec(values, cfg.ignore_value)
        return MaskSpec("index", spec.num_classes, cfg.ignore_value)
    return infer_mask_spec(values, cfg.ignore_value, n)


def check_pairs(pairs: list[Pair], cfg: DataConfig, spec: MaskSpec, report: Report | None = None) -> Report:
    """Read every pair once (header + pixels) and record what is there and what is wrong."""
    report = report or Report()
    for p in pairs:
        try:
            with Image.open(p.image) as im:
                im.verify()
            with Image.open(p.image) as im:
                size, mode = im.size, im.mode
            image = read_image(p.image, cfg.in_channels)
            raw = read_mask_raw(p.mask)
        except DataError as e:
            report.problems.append(Problem(*_split_message(str(e))))
            report.bad_pairs.add(str(p.image))
            continue
        except Exception as e:  # PIL's verify raises assorted types for truncated files
            report.problems.append(Problem(str(p.image), f"cannot read image ({e})", "re-export or remove the pair"))
            report.bad_pairs.add(str(p.image))
            continue
        report.sizes[size] += 1
        report.modes[mode] += 1
        if raw.shape[:2] != tuple(image.shape[-2:]):
            h, w = raw.shape[:2]
            report.problems.append(
                Problem(
                    str(p.mask),
                    f"mask is {w}x{h} but its image is {image.shape[2]}x{image.shape[1]}",
                    "resize the mask (nearest) to its image's size or fix the pairing",
                )
            )
            report.bad_pairs.add(str(p.image))
            continue
        if raw.ndim == 2:
            vals, counts = np.unique(raw, return_counts=True)
            report.mask_values.update(dict(zip(vals.tolist(), counts.tolist(), strict=True)))
        else:
            cols, counts = np.unique(raw.reshape(-1, 3), axis=0, return_counts=True)
            report.mask_values.update({tuple(c): n for c, n in zip(cols.tolist(), counts.tolist(), strict=True)})
        try:
            mask = spec.encode(raw, p.mask)
        except DataError as e:
            report.problems.append(Problem(*_split_message(str(e))))
            report.bad_pairs.add(str(p.image))
            continue
        labels, counts = np.unique(mask, return_counts=True)
        report.class_pixels.update(dict(zip(labels.tolist(), counts.tolist(), strict=True)))
        if not ((mask > 0) & (mask != IGNORE)).any():
            report.empty_masks.append(p.image.name)
    return report


def _split_message(text: str) -> tuple[str, str, str]:
    path, _, rest = text.partition(": ")
    msg, _, fix = rest.partition("; ")
    return path, msg, fix or "fix or remove the file"


def check_dataset(cfg: DataConfig) -> tuple[Report, dict[str, list[Pair]], MaskSpec]:
    """Pairing + splitting + reading every pair: what `unetkit data check` and training both run."""
    pairs, problems = find_pairs(cfg)
    if not pairs:
        raise DataError(f"{cfg.root or cfg.csv}: no image/mask pairs found" + (f"; {problems[0]}" if problems else ""))
    splits = split_pairs(pairs, cfg.split, cfg.split_seed)
    spec = resolve_spec(cfg, splits["train"])
    report = Report(problems=list(problems), spec=spec)
    report.counts = {s: len(ps) for s, ps in splits.items()}
    for s in SPLITS:
        check_pairs(splits[s], cfg, spec, report)
    if problems:
        report.bad_pairs |= {p.path for p in problems}
    return report, splits, spec


def class_names(cfg: DataConfig, spec: MaskSpec) -> tuple[str, ...]:
    if cfg.classes:
        if len(cfg.classes) != spec.num_classes:
            raise DataError(
                f"classes: {len(cfg.classes)} names given but the masks have {spec.num_classes} classes; "
                "give one name per class"
            )
        return tuple(cfg.classes)
    if spec.mode == "binary":
        return ("background", "foreground")
    return tuple(f"class{i}" for i in range(spec.num_classes))


# ----------------------------------------------------------------------------------------------
# Datasets: decoded samples cached, so after the first epoch loading costs little.


class SampleCache:
    """Decoded (image, mask) pairs: in memory, on disk, or not at all.

    The memory cache lives for one run and is keyed by path (no file system calls on a hit, as it is
    hit every step). The disk cache outlives runs, so its key also holds each file's size and mtime:
    an edited file is decoded again."""

    def __init__(self, kind: str = "memory", folder: Path | None = None) -> None:
        self.kind = kind
        self.folder = folder
        self.memory: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        if kind == "disk":
            if folder is None:
                raise ValueError("a disk cache needs a folder")
            folder.mkdir(parents=True, exist_ok=True)

    def _disk_path(self, pair: Pair, extra: tuple) -> Path:
        stats = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (pair.image, pair.mask))
        key = (str(pair.image), str(pair.mask), stats, extra)
        return self.folder / (hashlib.sha1(repr(key).encode()).hexdigest() + ".pt")

    def get(self, pair: Pair, extra: tuple, load) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "none":
            return load()
        if self.kind == "memory":
            key = (str(pair.image), str(pair.mask), extra)
            if key not in self.memory:
                self.memory[key] = load()
            return self.memory[key]
        path = self._disk_path(pair, extra)
        if path.is_file():
            try:
                d = torch.load(path, weights_only=True)
                return d["image"], d["mask"]
            except Exception:
                path.unlink(missing_ok=True)  # a stale or torn entry: decode again below
        image, mask = load()
        tmp = path.with_suffix(".tmp")
        torch.save({"image": image, "mask": mask}, tmp)
        tmp.replace(path)
        return image, mask


class SegmentationDataset(torch.utils.data.Dataset):
    """Pairs -> (image float16 (C, H, W) in [0, 1], mask uint8 (H, W) with IGNORE), decoded once.

    With `size`, both are resized (image bilinear, mask nearest) before caching."""

    def __init__(
        self,
        pairs: list[Pair],
        spec: MaskSpec,
        in_channels: int = 3,
        size: tuple[int, int] | None = None,
        cache: SampleCache | None = None,
    ) -> None:
        self.pairs = list(pairs)
        self.spec = spec
        self.in_channels = in_channels
        self.size = tuple(size) if size else None
        self.cache = cache or SampleCache("memory")

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.pairs[i]
        image = read_image(p.image, self.in_channels)
        raw = read_mask_raw(p.mask)
        if raw.shape[:2] != tuple(image.shape[-2:]):
            raise DataError(
                f"{p.mask}: mask is {raw.shape[1]}x{raw.shape[0]} but its image is "
                f"{image.shape[2]}x{image.shape[1]}; resize the mask (nearest) or fix the pairing"
            )
        mask = torch.from_numpy(self.spec.encode(raw, p.mask))
        if self.size:
            image, mask = resize_image(image, self.size), resize_mask(mask, self.size)
        return image.half(), mask

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.get(self.pairs[i], (self.in_channels, self.size), lambda: self.load(i))


class RandomCropDataset(torch.utils.data.Dataset):
    """Random crops of `size` at native resolution; deterministic per (seed, epoch, index).

    Images smaller than the crop are padded (image 0, mask IGNORE)."""

    def __init__(self, base: SegmentationDataset, size: tuple[int, int], seed: int = 0) -> None:
        self.base = base
        self.size = tuple(size)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.base[i]
        th, tw = self.size
        h, w = mask.shape
        if h < th or w < tw:
            ph, pw = max(0, th - h), max(0, tw - w)
            image = torch.nn.functional.pad(image, (0, pw, 0, ph))
            mask = torch.nn.functional.pad(mask, (0, pw, 0, ph), value=IGNORE)
            h, w = mask.shape
        g = random.Random(hash((self.seed, self.epoch, i)))
        y, x = g.randint(0, h - th), g.randint(0, w - tw)
        return image[:, y : y + th, x : x + tw], mask[y : y + th, x : x + tw]


def channel_stats(dataset: SegmentationDataset, max_items: int = 256) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over (up to max_items of) the training images, for normalisation."""
    n = len(dataset)
    idx = range(0, n, max(1, n // max_items))
    s = s2 = None
    count = 0
    for i in idx:
        img = dataset[i][0].float().flatten(1)
        s = img.sum(1) if s is None else s + img.sum(1)
        s2 = (img**2).sum(1) if s2 is None else s2 + (img**2).sum(1)
        count += img.shape[1]
    mean = s / count
    std = (s2 / count - mean**2).clamp_min(1e-8).sqrt().clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def class_pixel_counts(dataset: SegmentationDataset, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixels of each class, pixels of the images that contain each class) over a dataset's masks,
    ignored pixels left out: the inputs of median-frequency class weights."""
    pixels = torch.zeros(num_classes, dtype=torch.int64)
    image_pixels = torch.zeros(num_classes, dtype=torch.int64)
    for i in range(len(dataset)):
        mask = dataset[i][1].long().flatten()
        counts = torch.bincount(mask[mask < num_classes], minlength=num_classes)
        pixels += counts
        image_pixels += (counts > 0) * counts.sum()
    return pixels, image_pixels
