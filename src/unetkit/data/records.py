"""The two records data handling passes around: a Pair (an image and its mask, a file or a label
file's entry) and a Problem (a file, what is wrong, the fix)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unetkit.data.imageio import MaskSource

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path | MaskSource | None
    split: str | None = None

    @property
    def id(self) -> str:
        return self.image.stem


@dataclass
class Problem:
    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}; fix: {self.fix}"
