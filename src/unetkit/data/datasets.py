"""Pairs served as tensors: decoded once into a bounded cache, cropped, and fetched in batches
(in worker processes when the machine has cores to spare)."""

from __future__ import annotations

import hashlib
import os
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from unetkit.config import DataConfig, parse_bytes
from unetkit.data.imageio import (
    IGNORE,
    DataError,
    MaskSpec,
    file_stamp,
    read_image,
    read_mask,
    resize_image,
    resize_mask,
)
from unetkit.data.splits import Pair

Sample = tuple[torch.Tensor, torch.Tensor]
CACHE_SHARE = 0.25  # of the available RAM the memory cache may use by default


def available_memory() -> int:
    """Bytes of RAM available now (MemAvailable), or 4 GiB where /proc/meminfo is unreadable."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def cache_budget(cfg: DataConfig) -> int:
    return int(CACHE_SHARE * available_memory()) if cfg.cache_memory == "auto" else parse_bytes(cfg.cache_memory)


def worker_count(cfg: DataConfig, cpus: int | None = None) -> int:
    """auto: no workers on <= 2 cores (decoding would compete with training for them), else up to 8."""
    if cfg.workers != "auto":
        return int(cfg.workers)
    cpus = cpus or os.cpu_count() or 1
    return 0 if cpus <= 2 else min(8, cpus // 2)


def _nbytes(sample: Sample) -> int:
    return sum(t.numel() * t.element_size() for t in sample)


class SampleCache:
    """Decoded (image, mask) pairs: in memory, on disk, or not at all.

    The memory cache holds at most `budget` bytes; past it, the least recently used samples leave
    memory and, with a `folder`, go to the disk cache, which then serves them (decoding a JPEG costs
    ~10x reading its decoded tensor back). It is keyed by path (no file system calls on a hit). The
    disk cache outlives runs, so its key also holds each file's size and mtime: an edited file is
    decoded again."""

    def __init__(self, kind: str = "memory", folder: Path | None = None, budget: int | None = None, log=None) -> None:
        self.kind = kind
        self.folder = folder
        self.budget = budget
        self.used = 0
        self.evictions = 0
        self.log = log
        self.memory: OrderedDict[tuple, tuple[Pair, tuple, Sample]] = OrderedDict()
        if kind == "disk" or (kind == "memory" and folder is not None):
            if folder is None:
                raise ValueError("a disk cache needs a folder")
            folder.mkdir(parents=True, exist_ok=True)

    def _disk_path(self, pair: Pair, extra: tuple) -> Path:
        stats = (file_stamp(pair.image), file_stamp(pair.mask))
        key = (str(pair.image), str(pair.mask), stats, extra)
        return self.folder / (hashlib.sha1(repr(key).encode()).hexdigest() + ".sample")

    def get(self, pair: Pair, extra: tuple, load: Callable[[], Sample]) -> Sample:
        if self.kind == "none":
            return load()
        if self.kind == "memory":
            return self._memory_get(pair, extra, load)
        return self._disk_get(self._disk_path(pair, extra), load)

    def _memory_get(self, pair: Pair, extra: tuple, load: Callable[[], Sample]) -> Sample:
        key = (str(pair.image), str(pair.mask), extra)
        hit = self.memory.get(key)
        if hit is not None:
            self.memory.move_to_end(key)
            return hit[2]
        spilled = self.evictions and self.folder is not None
        sample = self._disk_get(self._disk_path(pair, extra), load, write=False) if spilled else load()
        size = _nbytes(sample)
        if self.budget is not None and size > self.budget:
            return sample  # larger than the whole budget: never cached
        self.memory[key] = (pair, extra, sample)
        self.used += size
        while self.budget is not None and self.used > self.budget:
            self._evict()
        return sample

    def _evict(self) -> None:
        _, (pair, extra, old) = self.memory.popitem(last=False)
        self.used -= _nbytes(old)
        if self.folder is not None:
            path = self._disk_path(pair, extra)
            if not path.is_file():
                self._write(path, old)
        if self.evictions == 0 and self.log:
            where = f"go to the disk cache in {self.folder}" if self.folder else "are decoded again when needed"
            budget = f"{self.budget / 2**20:.0f} MiB, --cache-memory"
            self.log(f"memory cache full ({budget}): least recently used samples {where}")
        self.evictions += 1

    def _disk_get(self, path: Path, load: Callable[[], Sample], write: bool = True) -> Sample:
        if path.is_file():
            try:
                return read_sample(path)
            except (OSError, ValueError):
                path.unlink(missing_ok=True)  # a stale or torn entry: decode again below
        sample = load()
        if write:
            self._write(path, sample)
        return sample

    @staticmethod
    def _write(path: Path, sample: Sample) -> None:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        write_sample(tmp, sample)
        tmp.replace(path)


# A decoded sample on disk: a 16-byte header (image dtype code, C, H, W as int32), the image's raw
# bytes, then the uint8 mask's. Reading it back is a plain copy (~10x faster than torch.load's
# unpickler, which dominated the time of a spilled cache) and runs no code from the file.
_DTYPES = {0: (torch.float16, np.float16), 1: (torch.float32, np.float32)}


def write_sample(path: Path, sample: Sample) -> None:
    image, mask = sample
    code = next(k for k, (t, _) in _DTYPES.items() if t == image.dtype)
    header = np.array([code, *image.shape], dtype=np.int32)
    with open(path, "wb") as f:
        f.write(header.tobytes() + image.contiguous().numpy().tobytes() + mask.contiguous().numpy().tobytes())


def read_sample(path: Path) -> Sample:
    raw = np.fromfile(path, dtype=np.uint8)
    code, c, h, w = np.frombuffer(raw[:16], dtype=np.int32).tolist()
    if code not in _DTYPES or raw.size != 16 + c * h * w * np.dtype(_DTYPES[code][1]).itemsize + h * w:
        raise ValueError(f"{path}: not a cached sample")
    split = 16 + c * h * w * np.dtype(_DTYPES[code][1]).itemsize
    image = torch.from_numpy(raw[16:split].view(_DTYPES[code][1]).reshape(c, h, w).copy())
    return image, torch.from_numpy(raw[split:].reshape(h, w).copy())


class SegmentationDataset(torch.utils.data.Dataset):
    """Pairs -> (image (C, H, W) in [0, 1], mask uint8 (H, W) with IGNORE), decoded once.

    Training keeps float16 images (half the cache); evaluation asks for float32, the same input
    predict gives the network. With `size`, both are resized (image bilinear, mask nearest)."""

    def __init__(
        self,
        pairs: list[Pair],
        spec: MaskSpec,
        in_channels: int = 3,
        size: tuple[int, int] | None = None,
        cache: SampleCache | None = None,
        dtype: torch.dtype = torch.float16,
    ) -> None:
        self.pairs = list(pairs)
        self.spec = spec
        self.in_channels = in_channels
        self.size = tuple(size) if size else None
        self.cache = cache or SampleCache("none")
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, i: int) -> Sample:
        p = self.pairs[i]
        image = read_image(p.image, self.in_channels)
        raw = read_mask(p.mask, self.spec)
        if raw.shape[:2] != tuple(image.shape[-2:]):
            raise DataError(
                f"{p.mask}: mask is {raw.shape[1]}x{raw.shape[0]} but its image is "
                f"{image.shape[2]}x{image.shape[1]}; resize the mask (nearest) or fix the pairing"
            )
        mask = torch.from_numpy(raw)
        if self.size:
            image, mask = resize_image(image, self.size), resize_mask(mask, self.size)
        return image.to(self.dtype), mask

    def __getitem__(self, i: int) -> Sample:
        return self.cache.get(self.pairs[i], (self.in_channels, self.size, str(self.dtype)), lambda: self.load(i))


class RandomCropDataset(torch.utils.data.Dataset):
    """Random crops of `size` at native resolution; deterministic per (seed, epoch, index).

    Images smaller than the crop are padded (image 0, mask IGNORE). A share `foreground` of the crops
    is placed around a random labelled pixel (class > 0), anywhere inside the crop: what click training
    needs, where a sample is one object (nnU-Net oversamples foreground the same way)."""

    def __init__(self, base: SegmentationDataset, size: tuple[int, int], seed: int = 0, foreground: float = 0.0):
        self.base = base
        self.size = tuple(size)
        self.seed = seed
        self.foreground = foreground
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Sample:
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
        if self.foreground and g.random() < self.foreground:
            y, x = around_a_labelled_pixel(mask, (th, tw), g, (y, x))
        return image[:, y : y + th, x : x + tw], mask[y : y + th, x : x + tw]


def around_a_labelled_pixel(mask: torch.Tensor, size: tuple[int, int], g: random.Random, default):
    """The corner of a crop of `size` that holds a random labelled pixel of `mask` at a random place
    inside it (the crop stays inside the image); `default` when nothing is labelled."""
    labelled = ((mask > 0) & (mask != IGNORE)).nonzero()
    if not len(labelled):
        return default
    py, px = labelled[g.randrange(len(labelled))].tolist()
    (h, w), (th, tw) = mask.shape, size
    return g.randint(max(0, py - th + 1), min(py, h - th)), g.randint(max(0, px - tw + 1), min(px, w - tw))


# ----------------------------------------------------------------------------------------------
# Batches: stacked CPU tensors, fetched on this thread or by worker processes


class _BatchSource(torch.utils.data.Dataset):
    """Key (epoch, indices) -> stacked (images (N, C, H, W), masks (N, H, W)); what workers run."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, list[int]]) -> Sample:
        epoch, indices = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        items = [self.dataset[i] for i in indices]
        return torch.stack([im for im, _ in items]), torch.stack([m for _, m in items])


class _Keys(torch.utils.data.Sampler):
    def __init__(self) -> None:
        self.keys: list = []

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class BatchLoader:
    """Yields each epoch's batches as stacked CPU tensors. With workers, persistent worker
    processes decode (each with its share of the cache budget) while the main process trains."""

    def __init__(self, dataset, workers: int = 0) -> None:
        self.source = _BatchSource(dataset)
        self.workers = workers
        self.keys = _Keys()
        self.loader = None
        if workers > 0:
            self.loader = torch.utils.data.DataLoader(
                self.source, batch_size=None, sampler=self.keys, num_workers=workers, persistent_workers=True
            )

    def epoch(self, epoch: int, batches: list[list[int]]) -> Iterator[Sample]:
        if self.loader is None:
            return (self.source[(epoch, b)] for b in batches)
        self.keys.keys = [(epoch, b) for b in batches]
        return iter(self.loader)

    def close(self) -> None:
        """Stop the worker processes now (left to garbage collection, their shutdown can wait out a 5 s
        timeout at some later, unrelated moment)."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None:
            iterator._shutdown_workers()
            self.loader._iterator = None


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
