"""Checkpoints written before the code moved into sub-packages (tests/fixtures/premove, written by the
flat package at 1db3a59) load and predict exactly as they did, and their last.pt reads as a resume record."""

from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.infer.checkpoint import CLICK_THRESHOLD, load_model
from unetkit.infer.predict import Segmenter
from unetkit.training.resume import read_last

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "premove"


@pytest.mark.parametrize("name", ["seg", "click"])
def test_a_checkpoint_from_before_the_move_gives_the_same_logits(name):
    seg = Segmenter.load(FIXTURES / f"{name}_best.pt", "cpu", "fp32")
    image = torch.rand(3, 37, 45, generator=torch.Generator().manual_seed(0))
    logits = seg.predict_batch(image[None]).logits.numpy()
    expected = np.load(FIXTURES / f"{name}_logits.npy")
    assert logits.shape == expected.shape == (1, 1, 37, 45)
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_an_old_click_checkpoint_gets_the_click_threshold_it_was_used_with():
    _, meta = load_model(FIXTURES / "click_best.pt")
    assert meta.kind == "interactive" and "threshold" not in meta.clicks
    assert meta.click_threshold == CLICK_THRESHOLD == 0.49
    _, seg_meta = load_model(FIXTURES / "seg_best.pt")
    assert seg_meta.kind == "segmentation"


def test_an_old_last_pt_reads_as_a_resume_record(tmp_path):
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes((FIXTURES / "seg_last.pt").read_bytes())
    record = read_last(tmp_path / "run")
    assert record.state.epoch == 1 and record.state.batch_in_epoch == 0 and record.state.step == 2
    assert len(record.state.history) == 1 and record.config["model"]["widths"] == [4, 8]
    assert record.optimizer["param_groups"] and record.split["train"] and len(record.mean) == 3
    model, _ = load_model(FIXTURES / "seg_last.pt")
    assert set(record.state_dict) == set(model.state_dict())
