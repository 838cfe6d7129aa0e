"""What RUN/checkpoints/last.pt holds so a run continues exactly where it stopped, as one typed record
written by `write_last` and read by `read_last` (and nowhere else).

Beside a model checkpoint's metadata and weights it holds the optimiser, the grad scaler and the loop
state. No random-number state: every step's augmentation, dropout and batch order are seeded by the
step's position (runtime.step_seed, schedule.batches_for_epoch), so there is none to restore."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from unetkit.errors import CheckpointError
from unetkit.infer import checkpoint
from unetkit.infer.checkpoint import ModelMeta


@dataclass
class LoopState:
    """Where the loop is; `epoch` counts finished epochs and advances only in LoopState.end_epoch."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    best: float = -math.inf
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    stopped: str = ""  # completed | early_stopping | max_steps | time_limit | interrupted | peer

    def end_epoch(self) -> None:
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def to_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "best_score": self.best,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, d: dict) -> LoopState:
        return cls(d["epoch"], d["batch_in_epoch"], d["step"], d["best_score"], d["bad_epochs"], list(d["history"]))


@dataclass(frozen=True)
class ResumeRecord:
    """A run's last.pt: its resolved config (a dict, as saved), split, normalisation, weights,
    optimiser and scaler state, and where the loop was."""

    config: dict
    split: dict | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    state_dict: dict
    optimizer: dict
    scaler: dict | None
    state: LoopState


def write_last(
    path: Path, meta: ModelMeta, state_dict: dict, optimizer: dict, scaler: dict | None, state: LoopState
) -> None:
    """Atomically write last.pt (its metadata is a full checkpoint's: it loads for inference too)."""
    payload = {**meta.to_payload(), "state_dict": state_dict, "train_state": state.to_dict()}
    checkpoint.save({**payload, "optimizer": optimizer, "scaler": scaler}, path)


def read_last(run_dir: str | Path) -> ResumeRecord:
    """RUN/checkpoints/last.pt as a ResumeRecord (weights-only loading); a file without training state
    is a CheckpointError naming it."""
    path = Path(run_dir) / "checkpoints" / "last.pt"
    saved = checkpoint.load(path)
    missing = [k for k in ("train_config", "train_state", "state_dict", "optimizer") if k not in saved]
    if missing:
        raise CheckpointError(f"{path}: no training state to resume from (lacks {missing[0]!r})")
    norm = saved.get("normalization")
    return ResumeRecord(
        config=saved["train_config"],
        split=saved.get("split"),
        mean=tuple(norm["mean"]) if norm else None,
        std=tuple(norm["std"]) if norm else None,
        state_dict=saved["state_dict"],
        optimizer=saved["optimizer"],
        scaler=saved.get("scaler"),
        state=LoopState.from_dict(saved["train_state"]),
    )
