"""Typed, frozen, validated configuration for training; saved with every run and checkpoint.

Precedence: dataclass defaults < preset < config file (TOML or JSON) < command-line flags.
Unknown keys and bad values raise ``ConfigError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it and says what is allowed."""


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


@dataclass(frozen=True)
class DataConfig:
    """Where the images and masks are and how to read them."""

    root: str | None = None  # folder with images/ + masks/ (or train/ val/ test/); None = demo data
    csv: str | None = None  # or a CSV of image,mask[,split] paths
    mask_suffix: str = ""  # mask stem = image stem + suffix, e.g. "_mask"
    mask_mode: str = "auto"  # auto | binary | index | rgb
    classes: tuple[str, ...] = ()  # class names; empty = derived from the masks
    colors: tuple[tuple[int, int, int], ...] = ()  # rgb mode: one colour per class
    ignore_value: int | None = None  # mask value excluded from loss and metrics (e.g. 128, 11)
    in_channels: int = 3
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)  # used only without train/val/test folders
    split_seed: int = 0
    resize: str = "resize"  # resize: squash to `size`; crop: random crops of `size` at native scale
    size: tuple[int, int] = (256, 256)  # (height, width)
    cache: str = "memory"  # memory | disk | none
    skip_bad: bool = False  # skip pairs that fail the data check instead of refusing to train

    def __post_init__(self) -> None:
        _check(self.mask_mode in ("auto", "binary", "index", "rgb"), "mask_mode", "use auto|binary|index|rgb")
        _check(self.in_channels in (1, 3, 4), "in_channels", f"must be 1, 3 or 4, got {self.in_channels}")
        _check(len(self.split) == 3, "split", "give three fractions: train,val,test")
        _check(
            all(f >= 0 for f in self.split) and abs(sum(self.split) - 1) < 1e-6,
            "split",
            "fractions must be >= 0 and sum to 1",
        )
        _check(self.split[0] > 0, "split", "the train fraction must be > 0")
        _check(self.resize in ("resize", "crop"), "resize", "use resize|crop")
        _check(len(self.size) == 2 and min(self.size) >= 8, "size", f"need height,width >= 8, got {self.size}")
        _check(self.cache in ("memory", "disk", "none"), "cache", "use memory|disk|none")
        _check(self.ignore_value is None or 0 <= self.ignore_value <= 65535, "ignore_value", "must be 0..65535")
        _check(not (self.root and self.csv), "csv", "give either root or csv, not both")
        if self.mask_mode == "rgb":
            _check(len(self.colors) >= 2, "colors", "rgb masks need a colour per class (at least 2)")
        for c in self.colors:
            _check(len(c) == 3 and all(0 <= v <= 255 for v in c), "colors", f"bad colour {c}")
        if self.colors and self.classes:
            _check(len(self.colors) == len(self.classes), "colors", "need exactly one colour per class")


@dataclass(frozen=True)
class NetConfig:
    """Network shape; in_channels and num_classes come from the data."""

    widths: tuple[int, ...] = (32, 64, 128, 256)
    upsampling: str = "transpose"
    norm: str = "auto"  # batch | group | instance | none | auto (group under 100 training images, else batch)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check(len(self.widths) >= 1 and all(w >= 1 for w in self.widths), "widths", "need positive ints")
        _check(self.upsampling in ("transpose", "bilinear"), "upsampling", "use transpose|bilinear")
        norms = ("auto", "batch", "group", "instance", "none")
        _check(self.norm in norms, "norm", "use " + "|".join(norms))
        _check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and strengths of the joint image+mask augmentations (0 disables one).

    Defaults are deliberately light: in the minutes-to-an-hour budgets this tool targets, stronger
    photometric/rotation augmentation lost validation quality (benchmarks/RESULTS.md, ablations)."""

    hflip: float = 0.5
    vflip: float = 0.0
    rot90: float = 0.0
    affine: float = 0.5  # probability of a random scale/rotate/translate
    scale_range: tuple[float, float] = (0.8, 1.25)
    rotate_deg: float = 0.0
    elastic: float = 0.0
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    noise: float = 0.02
    blur: float = 0.0  # probability of a Gaussian blur

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip", "rot90", "affine", "elastic", "blur"):
            _check(0 <= getattr(self, name) <= 1, name, "is a probability in [0, 1]")
        for name in ("brightness", "contrast", "gamma", "saturation", "hue", "noise", "rotate_deg"):
            _check(getattr(self, name) >= 0, name, "must be >= 0")
        _check(0 < self.scale_range[0] <= self.scale_range[1], "scale_range", "need 0 < low <= high")


@dataclass(frozen=True)
class OptimConfig:
    """SGD (Nesterov) with poly decay is the default: on CamVid it beat AdamW by ~0.1 mIoU at the same
    steps, and it was as good or better on the other benchmark sets (benchmarks/RESULTS.md)."""

    optimizer: str = "sgd"  # sgd | adamw | adam
    lr: float = 0.05
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "poly"  # poly | cosine | constant
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0  # max gradient norm; 0 disables

    def __post_init__(self) -> None:
        _check(self.optimizer in ("adamw", "adam", "sgd"), "optimizer", "use adamw|adam|sgd")
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        _check(self.schedule in ("cosine", "poly", "constant"), "schedule", "use cosine|poly|constant")
        _check(self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0")
        _check(self.grad_clip >= 0, "grad_clip", "must be >= 0")


@dataclass(frozen=True)
class LossConfig:
    loss: str = "dice+ce"  # ce | dice | focal | dice+ce | dice+focal
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    focal_gamma: float = 2.0
    class_weights: tuple[float, ...] = ()  # one per class for ce/focal; empty = from class_balance
    class_balance: str = "auto"  # none | median_freq | auto (median_freq for 3+ classes, none for binary)

    def __post_init__(self) -> None:
        _check(
            self.loss in ("ce", "dice", "focal", "dice+ce", "dice+focal"),
            "loss",
            "use ce|dice|focal|dice+ce|dice+focal",
        )
        _check(self.dice_weight >= 0 and self.ce_weight >= 0, "dice_weight", "weights must be >= 0")
        _check(all(w >= 0 for w in self.class_weights), "class_weights", "must be >= 0")
        _check(self.class_balance in ("none", "median_freq", "auto"), "class_balance", "use none|median_freq|auto")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Every field can be set from a file or a flag of the same name."""

    data: DataConfig = field(default_factory=DataConfig)
    model: NetConfig = field(default_factory=NetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 40
    batch_size: int = 8
    max_steps: int = 0  # 0 = no limit
    time_limit: str = ""  # e.g. "10m", "1h30m"; empty = no limit
    # With a time_limit: after the first epochs, re-measure the epoch time and set `epochs` so the
    # LR schedule ends at the limit instead of being cut off or finishing early (--time-budget sets it).
    fill_time_limit: bool = False
    patience: int = 0  # early stopping on the validation score; 0 = off
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    compile: bool = False
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threshold: float = 0.5  # binary decision threshold on the foreground probability
    val_every: int = 1  # validate, log and checkpoint every N epochs (and at the end)
    sample_every: int = 5  # epochs between prediction grids
    checkpoint_every: int = 0  # also save last.pt every N steps; 0 = once per epoch
    sync_bn: bool = False  # torchrun: SyncBatchNorm (batch statistics over all ranks)
    tensorboard: bool = False  # also log to RUN/tensorboard (needs the `tensorboard` extra)

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.max_steps >= 0, "max_steps", "must be >= 0")
        _check(self.patience >= 0, "patience", "must be >= 0")
        _check(self.precision in ("auto", "fp32", "bf16", "fp16"), "precision", "use auto|fp32|bf16|fp16")
        _check(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
            "device",
            "use auto|cpu|cuda|cuda:N",
        )
        _check(0 < self.threshold < 1, "threshold", "must be in (0, 1)")
        _check(self.sample_every >= 0 and self.checkpoint_every >= 0, "sample_every", "must be >= 0")
        _check(self.val_every >= 1, "val_every", f"must be >= 1, got {self.val_every}")
        parse_duration(self.time_limit)  # raises ConfigError on a bad value
        _check(not self.fill_time_limit or bool(self.time_limit), "fill_time_limit", "needs a time_limit, e.g. 30m")


def parse_duration(text: str) -> float:
    """'90s', '10m', '1h30m', '45' (seconds) -> seconds; '' -> 0 (no limit)."""
    if not text:
        return 0.0
    m = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not m or not any(m.groups()):
        raise ConfigError(f"time_limit: cannot read duration {text!r}; use e.g. 90s, 10m, 1h30m")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


SECTIONS = ("data", "model", "augment", "optim", "loss")

# Presets are plain override dicts, applied before a config file and flags.
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


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Turn a value from a file or a flag string into the annotated type, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if origin is tuple:
        if isinstance(value, str):
            sep = ";" if args and typing.get_origin(args[0]) is tuple else ","
            value = [v for v in value.split(sep) if v.strip()] if value.strip() else []
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)} ({value!r})")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if tp is str:
            if not isinstance(value, str | int | float):
                raise ValueError(value)
            return str(value).strip()
    except ValueError:
        raise ConfigError(f"{key}: expected {getattr(tp, '__name__', tp)}, got {value!r}") from None
    raise ConfigError(f"{key}: unsupported type {tp}")


def build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a nested dict; unknown keys are errors naming the key."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"{full}: unknown key; known keys: {', '.join(sorted(names))}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a section (table), got {value!r}")
            kwargs[key] = build(tp, value, prefix=f"{full}.")
        else:
            kwargs[key] = _coerce(value, tp, full)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{prefix}{e}") from None


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready nested dict (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = to_dict(v) if dataclasses.is_dataclass(v) else plain(v)
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        return json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"config file {path}: cannot parse ({e})") from None


def flag_index() -> dict[str, tuple[str | None, Any]]:
    """Flag name -> (section or None, type) for every leaf field of TrainConfig."""
    index: dict[str, tuple[str | None, Any]] = {}
    for name, tp in _field_types(TrainConfig).items():
        if dataclasses.is_dataclass(tp):
            for sub, subtp in _field_types(tp).items():
                assert sub not in index, f"duplicate config field name {sub}"
                index[sub] = (name, subtp)
        else:
            index[name] = (None, tp)
    return index


def overrides_from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """Flat {field: value} (from the CLI) -> nested override dict."""
    index = flag_index()
    nested: dict[str, Any] = {}
    for key, value in flags.items():
        if key not in index:
            raise ConfigError(f"{key}: unknown key")
        section, _ = index[key]
        if section is None:
            nested[key] = value
        else:
            nested.setdefault(section, {})[key] = value
    return nested


def resolve(
    preset: str | None = None,
    file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """defaults < preset < file < overrides -> a validated TrainConfig."""
    values: dict[str, Any] = {}
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"preset: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        values = merge(values, PRESETS[preset])
    if file:
        values = merge(values, load_file(file))
    if overrides:
        values = merge(values, overrides)
    return build(TrainConfig, values)
