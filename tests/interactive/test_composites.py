"""Issue 45 item 1: composites paste other pictures' objects, shrunk, at random places; each pasted
object gets its own label so the click target is drawn among all of them; covered pixels leave the
masks below; the batch itself is left unchanged."""

import numpy as np
import torch

from unetkit.data.imageio import IGNORE
from unetkit.interactive.composites import paste_objects
from unetkit.interactive.training import pick_object


def batch():
    images = torch.zeros(2, 3, 96, 96)
    masks = torch.zeros(2, 96, 96, dtype=torch.long)
    images[0, 0] = 1.0  # picture 0 is red
    masks[0, 10:90, 10:90] = 1  # a large object covering most of it
    images[1, 2, 20:60, 30:70] = 1.0  # picture 1: a blue 40 x 40 object on black
    masks[1, 20:60, 30:70] = 1
    masks[1, 0, :] = IGNORE
    return images, masks


def test_pasted_objects_get_labels_of_their_own_and_cover_what_is_below():
    images, masks = batch()
    out_i, out_m = paste_objects(images, masks, np.random.default_rng(0), share=1.0, most=3)
    assert torch.equal(images, batch()[0]) and torch.equal(masks, batch()[1])  # inputs untouched
    pasted = out_m[0] >= 2  # onto picture 0: picture 1's blue square, shrunk
    assert pasted.any() and int(out_m[0].max()) >= 2
    assert (out_i[0, 2][pasted] > 0.99).all() and (out_i[0, 0][pasted] < 0.01).all()  # its pixels are blue
    assert (out_i[0, 0][~pasted] == 1.0).all()  # and nothing else of picture 0 changed
    assert int(((out_m[0] == 1) | pasted).sum()) == int((masks[0] == 1).sum() + (pasted & (masks[0] == 0)).sum())
    for label in range(2, int(out_m[0].max()) + 1):  # each pasted object is at most the donor's size
        n = int((out_m[0] == label).sum())
        assert 0 < n <= 40 * 40
    labels_1 = set(out_m[1].unique().tolist())
    assert IGNORE in labels_1 and labels_1 - {0, 1, IGNORE} <= set(range(2, 6))


def test_share_zero_or_a_single_picture_changes_nothing():
    images, masks = batch()
    assert paste_objects(images, masks, np.random.default_rng(0), 0.0, 4)[1] is masks
    assert paste_objects(images[:1], masks[:1], np.random.default_rng(0), 1.0, 4)[1].equal(masks[:1])


def test_the_click_target_is_drawn_among_all_objects_alike():
    """A tiny pasted object is the target as often as the large one below it (one label each)."""
    mask = np.zeros((96, 96), np.int64)
    mask[5:90, 5:90] = 1
    mask[40:46, 40:46] = 2  # a 6 x 6 object pasted on top
    rng = np.random.default_rng(0)
    small = sum(pick_object(mask, rng, whole_share=0.5).sum() == 36 for _ in range(400))
    assert 150 < small < 250  # half the draws, by class; an area-weighted draw would give ~2


def test_the_options_are_checked():
    import pytest

    from unetkit.config.clicks import ClickConfig
    from unetkit.config.fields import require
    from unetkit.errors import ConfigError

    assert ClickConfig(composites=0.5, composite_objects=3).composites == 0.5
    for bad in ({"composites": 1.5}, {"composite_objects": 0}, {"composite_objects": 17}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ClickConfig(**bad)
    with pytest.raises(ConfigError, match="^key: why$"):
        require(False, "key", "why")
