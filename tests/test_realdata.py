"""The real datasets in ../shared/data load with the right shapes, values and alignment."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_dataset
from unetkit.config import DataConfig
from unetkit.data.check import Report, check_dataset, infer_spec
from unetkit.data.datasets import SegmentationDataset
from unetkit.data.imageio import IGNORE
from unetkit.data.splits import find_pairs, split_pairs

pytestmark = pytest.mark.realdata


def load_all(cfg: DataConfig, limit: int | None = None):
    report, splits, spec = check_dataset(cfg)
    assert report.ok, report.format()
    pairs = [p for ps in splits.values() for p in ps][:limit]
    return report, spec, SegmentationDataset(pairs, spec, cfg.in_channels)


def test_grabcut_band_is_ignored():
    root = shared_dataset("grabcut")
    report, spec, ds = load_all(DataConfig(root=str(root), ignore_value=128))
    assert spec.mode == "binary" and report.counts["train"] + report.counts["val"] + report.counts["test"] == 50
    for i in range(len(ds)):
        image, mask = ds[i]
        raw = np.asarray(Image.open(ds.pairs[i].mask))
        assert image.shape[0] == 3 and image.shape[1:] == mask.shape == raw.shape
        assert torch.equal(mask == IGNORE, torch.from_numpy(raw == 128))
        assert torch.equal(mask == 1, torch.from_numpy(raw == 255))


def test_isbi_grayscale_images():
    root = shared_dataset("isbi2012_em")
    _, spec, ds = load_all(DataConfig(root=str(root), in_channels=1))
    assert len(ds) == 30 and spec.mode == "binary"
    image, mask = ds[0]
    assert image.shape == (1, 512, 512) and mask.shape == (512, 512)
    raw = np.asarray(Image.open(ds.pairs[0].image), dtype=np.float32) / 255
    torch.testing.assert_close(image[0].float(), torch.from_numpy(raw), atol=1e-3, rtol=0)
    assert set(mask.unique().tolist()) == {0, 1}


def test_camvid_index_masks_with_void(tmp_path):
    root = shared_dataset("camvid")
    cfg = DataConfig(root=str(root), ignore_value=11)
    pairs, problems = find_pairs(cfg)
    splits = split_pairs(pairs, cfg.split, cfg.split_seed)
    assert not problems and {s: len(v) for s, v in splits.items()} == {"train": 184, "val": 51, "test": 233}
    # The full check of all 468 pairs takes seconds; 40 of them (every split) are read here.
    rows = ["image,mask,split"] + [f"{p.image},{p.mask},{s}" for s, v in splits.items() for p in v[::12]]
    subset = tmp_path / "camvid.csv"
    subset.write_text("\n".join(rows))
    spec = infer_spec(cfg, pairs, Report())  # from all 468 masks: 11 classes, void ignored
    assert spec.mode == "index" and spec.num_classes == 11
    classes = tuple(f"c{i}" for i in range(11))
    report, spec, ds = load_all(DataConfig(csv=str(subset), ignore_value=11, mask_mode="index", classes=classes), 20)
    assert spec.mode == "index" and spec.num_classes == 11
    for i in range(len(ds)):
        image, mask = ds[i]
        raw = np.asarray(Image.open(ds.pairs[i].mask))
        assert image.shape == (3, 360, 480) and mask.shape == (360, 480)
        assert torch.equal(mask == IGNORE, torch.from_numpy(raw == 11))
        keep = raw != 11
        assert (mask.numpy()[keep] == raw[keep]).all()


def test_drive_tiff_images():
    root = shared_dataset("drive")
    report, spec, ds = load_all(DataConfig(root=str(root)), limit=5)
    assert report.counts["test"] == 20 and report.counts["train"] + report.counts["val"] == 20
    image, mask = ds[0]
    assert ds.pairs[0].image.suffix == ".tif"
    assert image.shape == (3, 584, 565) and mask.shape == (584, 565)
    raw = np.asarray(Image.open(ds.pairs[0].image).convert("RGB"), dtype=np.float32) / 255
    torch.testing.assert_close(image.permute(1, 2, 0).float(), torch.from_numpy(raw), atol=1e-3, rtol=0)
    fraction = float((mask == 1).float().mean())
    assert 0.05 < fraction < 0.2  # vessels are a thin minority
