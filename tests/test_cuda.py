"""GPU paths (skipped without CUDA; run on a GPU machine with `pytest tests/test_cuda.py`)."""

import pytest
import torch
from test_transforms import ALL_ON, blocks

from conftest import tiny_config
from unetkit.data.imageio import IGNORE
from unetkit.data.transforms import augment
from unetkit.training.loop import fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_augmentation_on_the_gpu_keeps_labels_and_matches_cpu_geometry():
    images, masks = blocks()
    gi, gm = augment(images.cuda(), masks.cuda(), ALL_ON, torch.Generator().manual_seed(0))
    assert gi.is_cuda and set(gm.unique().tolist()) <= {0, 2, 5, IGNORE}
    ci, cm = augment(images, masks, ALL_ON, torch.Generator().manual_seed(0))
    # Same parameter draws on both devices: the masks agree almost everywhere.
    assert (gm.cpu() == cm).float().mean() > 0.99


@pytest.mark.parametrize("precision", ["auto", "fp16", "fp32"])
def test_training_on_the_gpu(demo_dir, tmp_path, precision):
    r = fit(
        tiny_config(data={"root": str(demo_dir)}, device="cuda", precision=precision, epochs=2),
        out=tmp_path / precision,
    )
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"] * 1.5
    assert r.best_checkpoint.is_file()
