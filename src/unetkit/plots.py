"""Figures written into run and evaluation folders (matplotlib, Agg backend, no screen needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def palette(num_classes: int) -> np.ndarray:
    """(256, 3) uint8 colours: black background, distinct colours after, white for ignore."""
    rng = np.random.default_rng(7)
    pal = rng.integers(40, 256, size=(256, 3), dtype=np.uint8)
    base = [
        (0, 0, 0),
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
        (0, 128, 128),
    ]
    pal[: len(base)] = base
    if num_classes == 2:
        pal[1] = (255, 255, 255)
    pal[255] = (128, 128, 128)
    return pal


def legend_colors(num_classes: int) -> list[list[int]]:
    """The page's colours per class (serve's legend, annotate's overlay): the palette, except that a
    binary mask's object is red rather than white, which vanishes on light images and the white page."""
    pal = palette(num_classes)
    if num_classes == 2:
        pal[1] = palette(3)[1]
    return [pal[i].tolist() for i in range(num_classes)]


def curves(rows: list[dict], path: Path) -> None:
    """Loss and validation metrics per epoch, from the rows of metrics.csv."""
    if not rows:
        return
    plt = _plt()
    epochs = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [r["train_loss"] for r in rows], label="train loss")
    a.plot(epochs, [r["val_loss"] for r in rows], label="val loss")
    a.set_xlabel("epoch")
    a.set_yscale("log")
    a.legend()
    for key in ("val_dice", "val_iou"):
        b.plot(epochs, [r[key] for r in rows], label=key)
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend()
    # Fixed margins: tight_layout measured every tick label of the log axis, up to seconds per call.
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.96, wspace=0.2)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def colorize(mask: torch.Tensor | np.ndarray, num_classes: int) -> np.ndarray:
    return palette(num_classes)[np.asarray(mask, dtype=np.uint8)]


def overlay(image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.45) -> np.ndarray:
    """image uint8 (H, W, 3), mask (H, W) -> uint8 (H, W, 3) with classes > 0 tinted."""
    colours = colorize(mask, max(num_classes, 3)).astype(np.float32)
    if num_classes == 2:
        colours[mask == 1] = (255, 40, 40)
    out = image.astype(np.float32)
    sel = (mask > 0) & (mask != 255)
    out[sel] = (1 - alpha) * out[sel] + alpha * colours[sel]
    return out.clip(0, 255).astype(np.uint8)


def to_rgb_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W, 3) uint8 for display."""
    arr = image.float().clamp(0, 1).permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return (arr[:, :, :3] * 255).astype(np.uint8)


def grid(
    samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    num_classes: int,
    path: Path,
    titles: list[str] | None = None,
) -> None:
    """Rows of (image, truth, prediction)."""
    if not samples:
        return
    plt = _plt()
    fig, axes = plt.subplots(len(samples), 3, figsize=(9, 3 * len(samples)), squeeze=False)
    for i, (img, truth, pred) in enumerate(samples):
        for j, (arr, name) in enumerate(
            (
                (img, "image"),
                (colorize(truth, num_classes), "truth"),
                (colorize(pred, num_classes), "prediction"),
            )
        ):
            axes[i, j].imshow(arr)
            axes[i, j].set_axis_off()
            axes[i, j].set_title(titles[i] if titles and j == 0 else name, fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.3 / (3 * len(samples)), hspace=0.15, wspace=0.03)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def confusion(cm: torch.Tensor, names: list[str], path: Path) -> None:
    """Row-normalised confusion matrix (truth rows, prediction columns)."""
    plt = _plt()
    cmn = cm.double() / cm.sum(1, keepdim=True).clamp_min(1)
    k = len(names)
    fig, ax = plt.subplots(figsize=(2 + 0.6 * k, 1.5 + 0.6 * k))
    ax.imshow(cmn.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{cmn[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if cmn[i, j] > 0.5 else "black",
            )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
