"""Named recipes: plain override dicts applied before a config file and flags."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # The seed script's recipe, with its bugs fixed (pairing, nearest masks, a real val split).
    "seed": {
        "model": {"widths": (64, 128, 256, 512), "norm": "batch"},
        "optim": {
            "optimizer": "adam",
            "lr": 1e-4,
            "weight_decay": 0.0,
            "schedule": "constant",
            "warmup_epochs": 0.0,
            "grad_clip": 0.0,
        },
        "loss": {"loss": "ce", "class_balance": "none"},
        "augment": {
            "hflip": 0.0,
            "affine": 0.0,
            "brightness": 0.0,
            "contrast": 0.0,
            "gamma": 0.0,
            "saturation": 0.0,
            "hue": 0.0,
            "noise": 0.0,
            "blur": 0.0,
        },
        "data": {"size": (240, 240), "resize": "resize"},
        "batch_size": 8,
        "epochs": 60,
    },
    # What `unetkit train` uses with no --data: small images, a small net, done in a couple of minutes.
    "demo": {
        "model": {"widths": (16, 32, 64, 128)},
        "data": {"size": (128, 128)},
        "epochs": 25,
        "batch_size": 8,
    },
}
