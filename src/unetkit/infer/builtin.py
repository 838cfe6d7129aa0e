"""The pretrained weights shipped inside the package (unetkit/weights/): for each NAME a
NAME.safetensors (int8 kernels and fp16 norms, see unetkit.infer.quantize, with the checkpoint metadata as
JSON; no pickle), NAME.json (its card: what it was trained on, with which command, on which machine,
and its scores) and NAME.md (the card for people). `builtin:NAME` names one wherever a checkpoint path is accepted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from unetkit.errors import ConfigError

WEIGHTS = Path(__file__).parents[1] / "weights"
PREFIX = "builtin:"


@dataclass(frozen=True)
class Builtin:
    name: str
    path: Path  # the .safetensors file
    card: dict  # NAME.json

    @property
    def ref(self) -> str:
        return PREFIX + self.name

    @property
    def in_channels(self) -> int:
        return int(self.card["in_channels"])

    @property
    def interactive(self) -> bool:
        return bool(self.card.get("interactive"))

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.card["classes"])

    def fits(self, in_channels: int, interactive: bool, num_classes: int) -> bool:
        """A starting point for data with this many image channels and classes, of this kind of model."""
        if (self.in_channels, self.interactive) != (in_channels, interactive):
            return False
        return interactive or (len(self.classes) == 2) == (num_classes == 2)


def available(root: Path | None = None) -> list[Builtin]:
    """Every shipped model, by name (a card without its weights file is not listed)."""
    out = []
    for card in sorted((root or WEIGHTS).glob("*.json")):
        weights = card.with_suffix(".safetensors")
        if weights.is_file():
            out.append(Builtin(card.stem, weights, json.loads(card.read_text())))
    return out


def is_ref(text: str | Path) -> bool:
    return str(text).startswith(PREFIX)


def get(ref: str, root: Path | None = None) -> Builtin:
    """`builtin:NAME` (or NAME) -> the shipped model; an unknown name lists the known ones."""
    name = ref[len(PREFIX) :] if is_ref(ref) else ref
    models = {b.name: b for b in available(root)}
    if name not in models:
        known = ", ".join(PREFIX + n for n in models) or "none are installed"
        raise ConfigError(f"{ref}: no shipped model of that name; known: {known} (see `unetkit models`)")
    return models[name]
