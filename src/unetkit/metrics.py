"""Segmentation metrics from one confusion matrix accumulated over a whole set.

Rules: rows are the truth, columns the prediction. Pixels labelled IGNORE are left out. A class
absent from both truth and prediction has IoU, Dice, precision and recall NaN and is left out of
the means (nan-aware); a class predicted but absent from the truth scores 0. Means "_fg" leave
out class 0 (background).
"""

from __future__ import annotations

import math

import torch

from unetkit.data.imageio import IGNORE


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """pred, target: integer tensors of the same shape -> (K, K) int64 counts (truth, pred)."""
    valid = target != IGNORE
    t = target[valid].long()
    p = pred[valid].long()
    idx = t * num_classes + p
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def _div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, a / b.clamp_min(1), torch.full_like(a, float("nan")))


def _nanmean(x: torch.Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float("nan")


def scores(cm: torch.Tensor, class_names: tuple[str, ...] | list[str] | None = None) -> dict:
    """Confusion matrix -> per-class and mean IoU/Dice, precision, recall, pixel accuracy."""
    cm = cm.double()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    iou = _div(tp, tp + fp + fn)
    dice = _div(2 * tp, 2 * tp + fp + fn)
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    total = cm.sum()
    k = cm.shape[0]
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    out = {
        "mean_iou": _nanmean(iou),
        "mean_dice": _nanmean(dice),
        "mean_iou_fg": _nanmean(iou[1:]),
        "mean_dice_fg": _nanmean(dice[1:]),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "classes": [
            {
                "name": names[i],
                "iou": float(iou[i]),
                "dice": float(dice[i]),
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "pixels": int(cm[i].sum()),
            }
            for i in range(k)
        ],
    }
    return out


def headline(s: dict, binary: bool) -> float:
    """The one number used to pick the best checkpoint: foreground Dice (binary) or mean IoU."""
    v = s["mean_dice_fg"] if binary else s["mean_iou"]
    return -1.0 if math.isnan(v) else v
