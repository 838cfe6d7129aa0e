"""Decoded samples: a memory cache bounded by a budget, and batches from worker processes equal to
batches decoded on the training thread."""

import pytest
import torch

from unetkit.config import DataConfig
from unetkit.data.check import check_dataset
from unetkit.data.datasets import (
    BatchLoader,
    RandomCropDataset,
    SampleCache,
    SegmentationDataset,
    around_a_labelled_pixel,
    cache_budget,
    read_sample,
    worker_count,
    write_sample,
)
from unetkit.data.imageio import IGNORE
from unetkit.data.splits import Pair


def sample(i: int):
    return torch.full((3, 10, 10), float(i), dtype=torch.float16), torch.zeros(10, 10, dtype=torch.uint8)


def test_memory_cache_drops_least_recently_used_past_its_budget(tmp_path):
    per_sample = 3 * 10 * 10 * 2 + 10 * 10  # float16 image + uint8 mask bytes
    lines = []
    cache = SampleCache("memory", budget=3 * per_sample, log=lines.append)
    pairs = [Pair(tmp_path / f"{i}.png", tmp_path / f"m{i}.png") for i in range(5)]
    loads = []

    def get(i):
        return cache.get(pairs[i], (), lambda: loads.append(i) or sample(i))

    for i in (0, 1, 2, 0, 3, 4):  # 0 is used again before 3 and 4 arrive: 1 and 2 are dropped
        assert get(i)[0][0, 0, 0] == i
    assert cache.used <= 3 * per_sample and len(cache.memory) == 3
    assert set(k[0] for k in cache.memory) == {str(pairs[i].image) for i in (0, 3, 4)}
    assert loads == [0, 1, 2, 3, 4] and cache.evictions == 2
    get(1)
    assert loads[-1] == 1 and len(lines) == 1 and "memory cache full" in lines[0]  # said once


def test_past_its_budget_the_memory_cache_spills_to_disk(tmp_path):
    per_sample = 3 * 10 * 10 * 2 + 10 * 10
    cache = SampleCache("memory", tmp_path / "spill", budget=2 * per_sample)
    pairs = [tmp_path / f"{i}.png" for i in range(4)]
    for p in pairs:
        p.write_bytes(b"x")
    pairs = [Pair(p, p) for p in pairs]
    loads = []
    for i in (0, 1, 2, 3, 0, 1):
        assert cache.get(pairs[i], (), lambda i=i: loads.append(i) or sample(i))[0][0, 0, 0] == i
    assert loads == [0, 1, 2, 3]  # 0 and 1 came back from the disk cache, not decoded again
    assert cache.used <= 2 * per_sample and len(list((tmp_path / "spill").glob("*.sample"))) >= 2


def test_budget_and_workers_auto():
    assert cache_budget(DataConfig(cache_memory="2G")) == 2 * 2**30
    assert 0 < cache_budget(DataConfig()) < 2**50
    assert worker_count(DataConfig(), cpus=2) == 0  # no cores to spare
    assert worker_count(DataConfig(), cpus=16) == 8
    assert worker_count(DataConfig(workers="3"), cpus=2) == 3


def test_worker_batches_equal_batches_decoded_here(demo_dir):
    cfg = DataConfig(root=str(demo_dir))
    _, splits, spec = check_dataset(cfg)
    base = SegmentationDataset(splits["train"], spec, cache=SampleCache("memory"))
    crops = RandomCropDataset(base, (24, 24), seed=1)
    batches = [[0, 1, 2], [5, 3, 4]]
    serial = [[t.clone() for t in b] for e in (0, 1) for b in BatchLoader(crops, 0).epoch(e, batches)]
    loader = BatchLoader(crops, workers=2)
    parallel = [[t.clone() for t in b] for e in (0, 1) for b in loader.epoch(e, batches)]
    assert len(serial) == len(parallel) == 4
    for (a_img, a_mask), (b_img, b_mask) in zip(serial, parallel, strict=True):
        assert torch.equal(a_img, b_img) and torch.equal(a_mask, b_mask)
    assert not torch.equal(serial[0][0], serial[2][0])  # epochs crop differently


def test_disk_sample_round_trip_and_a_torn_file_is_refused(tmp_path):
    image, mask = torch.rand(3, 5, 7).half(), torch.randint(0, 255, (5, 7), dtype=torch.uint8)
    for img in (image, image.float()):
        write_sample(tmp_path / "s", (img, mask))
        back = read_sample(tmp_path / "s")
        assert torch.equal(back[0], img) and back[0].dtype == img.dtype and torch.equal(back[1], mask)
    (tmp_path / "s").write_bytes((tmp_path / "s").read_bytes()[:-3])
    with pytest.raises(ValueError, match="not a cached sample"):
        read_sample(tmp_path / "s")


class OneObject(torch.utils.data.Dataset):
    """A 100x120 image whose only labelled pixels are a 4x4 object at (80, 10), an ignored band, and
    a second image with nothing labelled."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        mask = torch.zeros(100, 120, dtype=torch.uint8)
        mask[:, 110:] = IGNORE
        if i == 0:
            mask[80:84, 10:14] = 1
        return torch.zeros(3, 100, 120), mask


def test_object_crops_hold_the_object_and_uniform_crops_mostly_miss_it():
    held = [(RandomCropDataset(OneObject(), (32, 32), seed=s, foreground=1.0)[0][1] == 1).any() for s in range(40)]
    assert all(held)  # wherever the object pixel falls inside the crop, the crop stays in the image
    uniform = [(RandomCropDataset(OneObject(), (32, 32), seed=s)[0][1] == 1).any() for s in range(40)]
    assert sum(uniform) < 10  # a 32x32 crop of 100x120 holds the object about 1 time in 10
    image, mask = RandomCropDataset(OneObject(), (32, 32), seed=0, foreground=1.0)[1]
    assert mask.shape == (32, 32) and image.shape == (3, 32, 32)  # nothing labelled: a uniform crop


def test_around_a_labelled_pixel_keeps_the_crop_inside_and_ignores_ignore():
    import random

    mask = torch.full((10, 10), IGNORE, dtype=torch.uint8)
    mask[9, 9] = 2
    for s in range(20):
        y, x = around_a_labelled_pixel(mask, (4, 4), random.Random(s), None)
        assert (y, x) == (6, 6)  # the corner pixel can only be held by the corner crop
    assert (
        around_a_labelled_pixel(torch.full((10, 10), IGNORE, dtype=torch.uint8), (4, 4), random.Random(0), "d") == "d"
    )
