"""The evaluation clicker follows RITM's rules exactly, on hand-made masks; click disks land where the
clicks are at the network's resolution; NoC/NoF count as the protocol says."""

import numpy as np
import pytest
import torch

from unetkit.interactive.clicks import Click, View, click_maps, clicks_to_reach, iou, next_click
from unetkit.interactive.evaluate import simulate, summarize


def square(shape, y0, x0, y1, x1) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_first_click_is_positive_at_the_centre_of_a_square_object():
    gt = square((40, 40), 10, 10, 21, 21)  # 11 x 11: one centre pixel
    assert next_click(np.zeros_like(gt), gt) == Click(15, 15, True)


def test_the_image_border_counts_as_a_boundary():
    gt = square((30, 30), 0, 0, 10, 10)  # touches the top-left border
    # with the border as a boundary the deepest pixels are (4..5, 4..5); raster order picks (4, 4)
    assert next_click(np.zeros_like(gt), gt) == Click(4, 4, True)


def test_negative_click_on_a_false_positive_blob_larger_than_the_remaining_miss():
    gt = square((60, 60), 5, 5, 25, 25)
    pred = gt.copy()
    pred[5:25, 5:8] = False  # a 3-px-wide miss: distance 2 at most
    pred[35:46, 35:46] = True  # an 11 x 11 false positive: distance 6 at its centre
    assert next_click(pred, gt) == Click(40, 40, False)


def test_ties_go_to_a_negative_click_on_the_first_maximum_in_raster_order():
    gt = square((40, 40), 5, 5, 10, 10)  # 5 x 5 miss, max distance 3 at (7, 7)
    pred = square((40, 40), 20, 25, 25, 30)  # 5 x 5 false positive, max distance 3 at (22, 27)
    assert next_click(pred, gt) == Click(22, 27, False)
    pred2 = square((40, 40), 20, 25, 26, 31)  # 6 x 6: four pixels at distance 3, (22, 27) first in raster order
    assert next_click(pred2, gt) == Click(22, 27, False)


def test_ignored_pixels_are_neither_errors_nor_counted_in_iou():
    gt = square((40, 40), 10, 10, 30, 30)
    ignore = square((40, 40), 10, 10, 30, 20)  # the left half of the object is unknown
    click = next_click(np.zeros_like(gt), gt, ignore)
    assert click.positive and 20 <= click.x < 30 and ignore[click.y, click.x] == 0
    pred = square((40, 40), 10, 20, 30, 30)  # exactly the known part
    assert iou(pred, gt, ignore) == 1.0 and iou(pred, gt) == 0.5
    assert next_click(pred, gt, ignore) is None  # nothing left to fix


def test_a_pixel_is_never_clicked_twice():
    gt = square((40, 40), 10, 10, 21, 21)
    clicked = np.zeros_like(gt)
    clicked[15, 15] = True
    c = next_click(np.zeros_like(gt), gt, None, clicked)
    assert c.positive and (c.y, c.x) != (15, 15) and max(abs(c.y - 15), abs(c.x - 15)) == 1


def test_noc_and_nof_with_the_20_click_cap():
    ious = np.array([[0.5, 0.86, 0.91] + [0.95] * 17, [0.3] * 19 + [0.89], [0.9] * 20])
    assert [clicks_to_reach(r, 0.90) for r in ious] == [3, 20, 1]
    s = summarize(ious, 20)
    assert s["noc90"] == pytest.approx((3 + 20 + 1) / 3) and s["noc85"] == pytest.approx((2 + 20 + 1) / 3)
    assert s["nof90"] == 1 and s["nof85"] == 0 and len(s["iou_at_clicks"]) == 20
    assert s["iou_at_clicks"][0] == pytest.approx((0.5 + 0.3 + 0.9) / 3)


def test_click_disks_at_the_networks_resolution():
    view = View((0, 0, 100, 200), (50, 50))  # image 100 x 200 squashed to 50 x 50
    maps = click_maps([Click(50, 100, True), Click(10, 20, False)], view, radius=3)
    assert maps.shape == (2, 50, 50)
    cy, cx = view.to_net(50, 100)
    assert (cy, cx) == pytest.approx(((50 + 0.5) * 50 / 100 - 0.5, (100 + 0.5) * 50 / 200 - 0.5))
    ys, xs = torch.nonzero(maps[0], as_tuple=True)
    inside = {(y, x) for y in range(50) for x in range(50) if (y - cy) ** 2 + (x - cx) ** 2 <= 9}
    assert set(zip(ys.tolist(), xs.tolist(), strict=True)) == inside and len(inside) >= 25
    assert maps[1].sum() > 0 and maps[0, 5, 2] == 0 and maps[1, 4, 4] == 1


class Oracle:
    """A predictor that gets the object right after `k` clicks (to test the protocol loop)."""

    threshold = 0.49

    def __init__(self, gt, k):
        self.gt, self.k = gt, k

    def session(self, image, zoom_in=False):
        oracle = self

        class S:
            clicks: list = []
            probs = np.zeros(oracle.gt.shape, np.float32)

            def add(self, click):
                self.clicks = [*self.clicks, click]
                self.probs = oracle.gt.astype(np.float32) * (0.99 if len(self.clicks) >= oracle.k else 0.3)

            @property
            def mask(self):
                return self.probs > 0.49

        return S()


def test_protocol_loop_records_iou_after_each_click():
    gt = square((30, 30), 5, 5, 20, 20)
    ious, session = simulate(Oracle(gt, 3), None, gt, np.zeros_like(gt), 20)
    assert list(ious[:3]) == [0.0, 0.0, 1.0] and (ious[3:] == 1.0).all()
    assert len(session.clicks) == 3  # no error left after the third: no more clicks
    assert all(c.positive for c in session.clicks)


def test_zoom_box_is_ritms_object_roi():
    from unetkit.interactive.predictor import zoom_box

    mask = np.zeros((600, 800), bool)
    mask[100:400, 200:300] = True  # 300 x 100 object
    y0, x0, y1, x1 = zoom_box(mask, [])
    assert (y1 - y0, x1 - x0) == (420, 200)  # height x1.4; width x1.4 = 140 -> at least 200
    assert (y0 + y1) / 2 == pytest.approx(249.5, abs=1) and (x0 + x1) / 2 == pytest.approx(249.5, abs=1)
    y0, x0, y1, x1 = zoom_box(np.zeros((600, 800), bool), [Click(5, 790, True)])  # a positive click counts
    assert (y0, y1, x1) == (0, 105, 800) and x0 == pytest.approx(690, abs=1)  # clipped to the image
    assert zoom_box(np.zeros((10, 10), bool), [Click(5, 5, False)]) is None


def test_zoom_in_session_predicts_on_the_box_from_the_second_click():
    from unetkit.interactive.predictor import ClickSession

    class Recorder:
        threshold = 0.49
        first_zoom = 0.0

        def __init__(self):
            self.boxes = []

        def probs(self, image, clicks, prev, box):
            self.boxes.append(box)
            out = np.zeros(image.shape[-2:], np.float32)
            out[100:200, 100:200] = 1.0
            return out

    rec = Recorder()
    session = ClickSession(rec, torch.zeros(3, 400, 400), zoom_in=True)
    session.add(Click(150, 150, True))
    session.add(Click(160, 160, False))  # inside the object's box: zoom on it
    session.add(Click(170, 170, True))  # still inside: the box is kept
    session.add(Click(390, 20, True))  # outside: recomputed to include it
    assert rec.boxes[0] is None and rec.boxes[1] == rec.boxes[2] == (50, 50, 250, 250)
    assert rec.boxes[3][0] <= 390 < rec.boxes[3][2] and rec.boxes[3][1] <= 20
    assert len(session.undo().shape) == 2 and len(session.clicks) == 3


def test_a_crop_model_sees_the_image_at_its_view_size_with_its_aspect():
    """Item 3 of issue 21: a recorded view_size scales the whole image (and a zoom box) so the longer
    side is that many pixels; without one, the whole image stays at its own size."""
    import dataclasses

    from unetkit.infer.checkpoint import ModelMeta
    from unetkit.infer.predict import Segmenter
    from unetkit.interactive.predictor import ClickPredictor
    from unetkit.model import ModelConfig, UNet
    from unetkit.runtime import setup

    seen = []

    class Net(UNet):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return super().forward(x)

    clicks = {"radius": 5, "threshold": 0.49, "view_size": 200}
    net = ModelConfig(in_channels=6, widths=(4, 8))
    meta = ModelMeta(net, ("background", "object"), None, (0.5,) * 3, (0.5,) * 3, "crop", (96, 96), 3, clicks=clicks)
    seg = Segmenter(Net(6, 1, (4, 8)), meta, setup("cpu", "fp32", False))
    assert meta.click_view_size == 200
    p = ClickPredictor(seg)
    assert p.net_size((0, 0, 480, 640), True) == (150, 200)  # whole image: longer side 200, aspect kept
    assert p.net_size((40, 100, 140, 150), False) == (200, 100)  # a zoom box too
    probs = p.probs(torch.rand(3, 480, 640), [Click(240, 320, True)])
    assert seen == [(150, 200)] and probs.shape == (480, 640)
    assert ClickPredictor(seg, view_size=0).net_size((0, 0, 480, 640), True) == (480, 640)  # evaluate's override
    old = dataclasses.replace(meta, clicks={"radius": 5})
    assert old.click_view_size == 0 and ClickPredictor(Segmenter(Net(6, 1, (4, 8)), old, seg.rt)).net_size(
        (40, 100, 140, 150), False
    ) == (96, 48)  # older checkpoints: zoom box at the training size


def test_click_disks_drawn_in_their_boxes_equal_the_whole_grid():
    """Disks rasterised only in their bounding boxes equal the full-grid formula, at the borders, outside
    the view and overlapping too."""
    g = torch.Generator().manual_seed(0)
    view = View((0, 0, 90, 130), (37, 45))
    clicks = [Click(float(y), float(x), bool(p)) for y, x, p in zip(
        (torch.rand(40, generator=g) * 110 - 10).tolist(), (torch.rand(40, generator=g) * 150 - 10).tolist(),
        (torch.rand(40, generator=g) > 0.4).tolist(), strict=True)]  # fmt: skip
    ys, xs = torch.arange(37.0)[:, None], torch.arange(45.0)[None, :]
    expected = torch.zeros(2, 37, 45)
    for c in clicks:
        cy, cx = view.to_net(c.y, c.x)
        expected[0 if c.positive else 1] += (ys - cy) ** 2 + (xs - cx) ** 2 <= 2.5**2
    assert torch.equal(click_maps(clicks, view, radius=2.5), expected.clamp(max=1))
