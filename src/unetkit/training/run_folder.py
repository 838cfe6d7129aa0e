"""The run folder and everything written into it: train.log, config.json, splits.json,
metrics.csv, curves.png, samples/, tensorboard/ and the checkpoints. Only rank 0 writes."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from unetkit import plots
from unetkit.config import TrainConfig
from unetkit.config.io import to_dict
from unetkit.data.splits import SplitRecord, write_splits
from unetkit.errors import ConfigError
from unetkit.infer import checkpoint
from unetkit.runtime import Runtime

METRIC_FIELDS = [
    "epoch",
    "step",
    "train_loss",
    "val_loss",
    "val_dice",
    "val_iou",
    "val_accuracy",
    "lr",
    "seconds",
    "images_per_s",
    "data_fraction",
    "val_seconds",
]
BOARD_KEYS = ("train_loss", "val_loss", "val_dice", "val_iou", "val_accuracy", "lr", "images_per_s")
CURVES_EVERY_S = 20.0  # curves.png costs ~0.5 s to draw: redrawn at most this often, and at the end


def default_run_dir() -> Path:
    return Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")


class RunFolder:
    """RUN/: where a run records itself. Every method is a no-op on ranks other than 0."""

    def __init__(self, path: Path, is_main: bool = True) -> None:
        self.path = Path(path)
        self.is_main = is_main
        self.board = None
        self.curves_drawn = time.monotonic()  # a run shorter than CURVES_EVERY_S draws once, at its end
        if is_main:
            (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)

    @property
    def last(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "checkpoints" / "best.pt"

    def log(self, msg: str) -> None:
        """Print a line and append it to RUN/train.log."""
        if not self.is_main:
            return
        tqdm.write(msg, file=sys.stdout)
        with (self.path / "train.log").open("a") as f:
            f.write(msg + "\n")

    def write_config(self, config: TrainConfig, rt: Runtime) -> None:
        """RUN/config.json: the resolved config a run trains with, plus where it ran."""
        if not self.is_main:
            return
        resolved = to_dict(config)
        resolved["runtime"] = {
            "device": str(rt.device),
            "precision": rt.precision,
            "channels_last": rt.channels_last,
            "world_size": rt.world_size,
        }
        (self.path / "config.json").write_text(json.dumps(resolved, indent=2))

    def write_splits(self, record: SplitRecord) -> None:
        if self.is_main:
            write_splits(record, self.path / "splits.json")

    def save(self, payload: dict, path: Path) -> None:
        if self.is_main:
            checkpoint.save(payload, path)

    def record(self, history: list[dict], final: bool = False) -> None:
        """metrics.csv (atomically), curves.png and TensorBoard scalars after a validated epoch."""
        if not self.is_main or not history:
            return
        tmp = self.path / "metrics.tmp"
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            w.writeheader()
            for row in history:
                w.writerow({k: row.get(k) for k in METRIC_FIELDS})
        tmp.replace(self.path / "metrics.csv")
        if final or time.monotonic() - self.curves_drawn >= CURVES_EVERY_S:
            plots.curves(history, self.path / "curves.png")
            self.curves_drawn = time.monotonic()
        if self.board is not None and not final:
            for key in BOARD_KEYS:
                self.board.add_scalar(key, history[-1][key], history[-1]["epoch"])
            self.board.flush()

    def samples(self, seg, dataset, epoch: int, n: int = 4) -> None:
        """RUN/samples/epoch_NNN.png: image, truth and prediction for the first validation images."""
        if not self.is_main or not len(dataset):
            return
        rows = []
        for i in range(min(n, len(dataset))):
            image, mask = dataset[i]
            pred = seg.predict_batch(image[None]).pred[0]
            rows.append((plots.to_rgb_uint8(image), mask.numpy(), pred.numpy()))
        path = self.path / "samples" / f"epoch_{epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        plots.grid(rows, len(seg.classes), path)

    @contextlib.contextmanager
    def tensorboard(self, enabled: bool):
        if enabled and self.is_main:
            self.board = open_tensorboard(self.path)
        try:
            yield self.board
        finally:
            if self.board is not None:
                self.board.close()
                self.board = None


def open_tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "tensorboard: the tensorboard package is not installed; pip install 'unetkit[tensorboard]' "
            "or leave --tensorboard off"
        ) from None
    return SummaryWriter(str(run_dir / "tensorboard"))
