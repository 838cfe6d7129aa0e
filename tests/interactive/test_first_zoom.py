"""Issue 45 item 2: after the first click, a small object is predicted again in a box around it, by
the share the checkpoint records; the same step serves evaluate (ClickSession) and the HTTP API."""

import dataclasses

import numpy as np
import pytest
import torch

from unetkit.interactive.clicks import Click
from unetkit.interactive.predictor import ClickSession, first_box, predict_click


class Recorder:
    """A predictor whose map is one square object, recording each call's box and previous mask."""

    threshold = 0.49

    def __init__(self, square, first_zoom):
        self.square, self.first_zoom, self.calls = square, first_zoom, []

    def probs(self, image, clicks, prev, box):
        self.calls.append((box, None if prev is None else float(prev.sum())))
        y0, x0, y1, x1 = self.square
        out = np.zeros(image.shape[-2:], np.float32)
        out[y0:y1, x0:x1] = 1.0
        return out


def test_a_small_object_after_the_first_click_is_predicted_again_in_its_zoom_box():
    rec = Recorder((100, 200, 120, 220), first_zoom=0.2)  # 20 px in a 480-px-wide image: 4% < 20%
    probs, box = predict_click(rec, torch.zeros(3, 360, 480), [Click(110, 210, True)], None, None, zoom=False)
    # the zoom box: RITM's rule, 200 px (the minimum) around the 20-px object, inside the image
    assert box == (10, 110, 210, 310)
    assert [c[0] for c in rec.calls] == [None, box]
    assert rec.calls[1][1] == 400.0  # the whole image's prediction is the second pass's previous mask
    assert probs[110, 210] == 1.0


def test_a_large_object_or_a_later_click_or_share_zero_predicts_once():
    big = Recorder((0, 0, 300, 300), first_zoom=0.2)  # 300 px >= 0.2 * 480
    assert predict_click(big, torch.zeros(3, 360, 480), [Click(5, 5, True)], None, None, zoom=False)[1] is None
    off = Recorder((100, 200, 120, 220), first_zoom=0.0)
    assert predict_click(off, torch.zeros(3, 360, 480), [Click(110, 210, True)], None, None, zoom=False)[1] is None
    two = Recorder((100, 200, 120, 220), first_zoom=0.2)
    clicks = [Click(110, 210, True), Click(300, 10, False)]
    predict_click(two, torch.zeros(3, 360, 480), clicks, np.zeros((360, 480), np.float32), None, zoom=False)
    assert len(big.calls) == len(off.calls) == len(two.calls) == 1


def test_nothing_found_zooms_on_the_click_itself():
    class Empty(Recorder):
        def probs(self, image, clicks, prev, box):
            self.calls.append((box, None))
            return np.zeros(image.shape[-2:], np.float32)

    rec = Empty((0, 0, 0, 0), first_zoom=0.2)
    assert first_box(np.zeros((360, 480), np.float32), [Click(50, 60, True)], 0.49, 0.2) == (0, 0, 150, 160)
    predict_click(rec, torch.zeros(3, 360, 480), [Click(50, 60, True)], None, None, zoom=False)
    assert [c[0] for c in rec.calls] == [None, (0, 0, 150, 160)]


def test_the_session_keeps_the_first_click_box_for_ritms_zoom_in():
    rec = Recorder((100, 200, 120, 220), first_zoom=0.2)
    session = ClickSession(rec, torch.zeros(3, 360, 480), zoom_in=True)
    session.add(Click(110, 210, True))
    assert session.box == (10, 110, 210, 310)
    session.add(Click(105, 205, False))  # inside the box: RITM's rule keeps it
    assert rec.calls[-1][0] == (10, 110, 210, 310) and len(rec.calls) == 3


def test_the_share_is_recorded_in_the_checkpoint_and_read_back():
    from unetkit.config import ClickConfig, TrainConfig
    from unetkit.infer.checkpoint import ModelMeta
    from unetkit.training.tasks import click_task

    config = TrainConfig(clicks=ClickConfig(interactive=True, first_zoom=0.25))
    base = ModelMeta(None, ("background", "object"), None, (0.5,) * 3, (0.5,) * 3, "crop", (96, 96), 3)
    meta = click_task().adapt_meta(base, config)
    assert meta.clicks["first_zoom"] == 0.25 and meta.click_first_zoom == 0.25
    assert dataclasses.replace(meta, clicks={"radius": 5}).click_first_zoom == 0.0  # older checkpoints: off
    with pytest.raises(Exception, match="first_zoom"):
        ClickConfig(first_zoom=1.5)


def test_the_exported_click_graph_says_the_rule_its_callers_apply():
    from unetkit.deploy.click_graph import click_metadata
    from unetkit.infer.checkpoint import ModelMeta

    clicks = {"radius": 5, "threshold": 0.49, "view_size": 320, "first_zoom": 0.2}
    meta = ModelMeta(None, ("background", "object"), None, (0.5,) * 3, (0.5,) * 3, "crop", (96, 96), 3, clicks=clicks)
    out = click_metadata(meta, "e2e")
    assert '"first_zoom": 0.2' in out["clicks"] and "below 0.2 of the image's" in out["first_zoom"]
    assert "first_zoom" not in click_metadata(dataclasses.replace(meta, clicks={"radius": 5}), "e2e")
