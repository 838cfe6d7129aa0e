import math

import pytest
import torch

from unetkit.config import LossConfig
from unetkit.data.datasets import class_pixel_counts
from unetkit.data.imageio import IGNORE
from unetkit.metrics import confusion_matrix, scores
from unetkit.training.losses import cross_entropy, focal, make_loss, median_frequency_weights, soft_dice


def test_confusion_matrix_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, IGNORE, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm = confusion_matrix(pred, target, 3)
    # rows truth, cols pred; the IGNORE pixel is not counted
    assert cm.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    s = scores(cm, ["a", "b", "c"])
    iou = [1 / 3, 3 / 4, 1 / 2]
    dice = [2 / 4, 6 / 7, 2 / 3]
    for c, i, d in zip(s["classes"], iou, dice, strict=True):
        assert c["iou"] == pytest.approx(i) and c["dice"] == pytest.approx(d)
    assert s["mean_iou"] == pytest.approx(sum(iou) / 3)
    assert s["mean_iou_fg"] == pytest.approx((iou[1] + iou[2]) / 2)
    assert s["pixel_accuracy"] == pytest.approx(5 / 7)
    assert s["classes"][0]["precision"] == pytest.approx(1 / 2)
    assert s["classes"][2]["recall"] == pytest.approx(1 / 2)


def test_class_absent_from_truth_and_prediction_is_nan_and_left_out_of_means():
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 0, 1, 0])
    s = scores(confusion_matrix(pred, target, 3))
    assert math.isnan(s["classes"][2]["iou"])
    assert s["mean_iou"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # predicted but absent from the truth: scores 0
    s2 = scores(confusion_matrix(torch.tensor([2, 0]), torch.tensor([0, 0]), 3))
    assert s2["classes"][2]["iou"] == 0.0


def test_matches_torchmetrics_classification():
    tm = pytest.importorskip("torchmetrics.classification")
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (3, 20, 20), generator=g)
    pred = torch.where(torch.rand(3, 20, 20, generator=g) < 0.7, target, torch.randint(0, 4, (3, 20, 20), generator=g))
    target[0, :5] = IGNORE
    ours = scores(confusion_matrix(pred, target, 4))
    kw = {"num_classes": 4, "ignore_index": IGNORE}
    ref_cm = tm.MulticlassConfusionMatrix(**kw)(pred, target)
    assert torch.equal(confusion_matrix(pred, target, 4), ref_cm)
    ref_iou = tm.MulticlassJaccardIndex(average=None, **kw)(pred, target)
    ref_f1 = tm.MulticlassF1Score(average=None, **kw)(pred, target)
    ref_acc = tm.MulticlassAccuracy(average="micro", **kw)(pred, target)
    torch.testing.assert_close(
        torch.tensor([c["iou"] for c in ours["classes"]], dtype=torch.float64), ref_iou.double(), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        torch.tensor([c["dice"] for c in ours["classes"]], dtype=torch.float64), ref_f1.double(), atol=1e-6, rtol=0
    )
    assert ours["pixel_accuracy"] == pytest.approx(float(ref_acc))


def test_cross_entropy_at_init_is_ln_c_and_ignores_pixels():
    target = torch.randint(0, 5, (2, 8, 8))
    logits = torch.zeros(2, 5, 8, 8)
    assert float(cross_entropy(logits, target)) == pytest.approx(math.log(5))
    target_ignored = target.clone()
    target_ignored[:, :4] = IGNORE
    logits2 = logits.clone()
    logits2[:, :, :4] = 100 * torch.randn(2, 5, 4, 8)  # garbage where ignored: no effect
    assert float(cross_entropy(logits2, target_ignored)) == pytest.approx(math.log(5))
    bin_target = torch.tensor([[[0, 1, IGNORE]]])
    assert float(cross_entropy(torch.zeros(1, 1, 1, 3), bin_target)) == pytest.approx(math.log(2))


def test_dice_and_focal_values():
    target = torch.tensor([[[0, 1], [1, IGNORE]]])
    perfect = torch.where(target == 1, 20.0, -20.0)[:, None].float()
    assert float(soft_dice(perfect, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(focal(perfect, target)) == pytest.approx(0.0, abs=1e-6)
    wrong = -perfect
    assert float(soft_dice(wrong, target)) > 0.6
    # focal with gamma 0 equals cross-entropy
    logits = torch.randn(2, 3, 4, 4)
    t = torch.randint(0, 3, (2, 4, 4))
    assert float(focal(logits, t, gamma=0.0)) == pytest.approx(float(cross_entropy(logits, t)), rel=1e-4)


def test_combined_loss_and_class_weights():
    logits = torch.randn(2, 3, 4, 4)
    t = torch.randint(0, 3, (2, 4, 4))
    combo = make_loss(LossConfig(loss="dice+ce", dice_weight=0.5, ce_weight=2.0), 3)(logits, t)
    assert float(combo) == pytest.approx(0.5 * float(soft_dice(logits, t)) + 2 * float(cross_entropy(logits, t)))
    with pytest.raises(ValueError, match="class_weights"):
        make_loss(LossConfig(class_weights=(1.0, 2.0)), 3)


def test_median_frequency_weights_by_hand():
    # class frequency = its pixels / pixels of the images it appears in: 30/40, 5/40, 5/20; class 3 absent
    w = median_frequency_weights(torch.tensor([30, 5, 5, 0]), torch.tensor([40, 40, 20, 0]))
    assert w.tolist() == pytest.approx([0.25 / 0.75, 0.25 / 0.125, 1.0, 1.0])


def test_class_pixel_counts_skip_ignored_pixels():
    image = torch.zeros(3, 2, 4)
    masks = [
        torch.tensor([[0, 0, 1, 1], [0, 0, IGNORE, IGNORE]]),  # 6 valid pixels: 4 of class 0, 2 of class 1
        torch.tensor([[2, 2, 2, 0], [0, 0, 0, 0]]),  # 8 valid pixels: 5 of class 0, 3 of class 2
    ]
    pixels, image_pixels = class_pixel_counts([(image, m) for m in masks], 3)
    assert pixels.tolist() == [9, 2, 3]
    assert image_pixels.tolist() == [14, 6, 8]
