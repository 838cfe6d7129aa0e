"""Config values from files and flags: coercion, merging, TOML/JSON files, and CLI flags
generated from the schemas in config.py (with their help text and defaults)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from unetkit.config import TrainConfig
from unetkit.config.presets import PRESETS
from unetkit.errors import ConfigError

FLAG_PREFIX = "cfg__"


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
        return _coerce_tuple(value, args, key)
    try:
        return _coerce_scalar(value, tp)
    except ValueError:
        raise ConfigError(f"{key}: expected {getattr(tp, '__name__', tp)}, got {value!r}") from None


def _coerce_tuple(value: Any, args: tuple, key: str) -> tuple:
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


def _coerce_scalar(value: Any, tp: Any) -> Any:
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
    raise ValueError(value)


def build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a nested dict; unknown keys are errors naming the key."""
    hints = typing.get_type_hints(cls)
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
    """Nested dict merge: `override` wins, sections merge key by key."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready nested dict (tuples become lists)."""

    def plain(v: Any) -> Any:
        return [plain(x) for x in v] if isinstance(v, tuple | list) else v

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
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"config file {path}: cannot parse ({e})") from None


def resolve(
    preset: str | None = None, file: str | Path | None = None, overrides: dict[str, Any] | None = None
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


# ----------------------------------------------------------------------------------------------
# Flags generated from the schemas


def flag_index(cls: type = TrainConfig) -> dict[str, tuple[str | None, dataclasses.Field, Any]]:
    """Flag name -> (section or None, field, type) for every leaf field of `cls`."""
    index: dict[str, tuple[str | None, dataclasses.Field, Any]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sub_hints = typing.get_type_hints(tp)
            for sub in dataclasses.fields(tp):
                if sub.name in index:
                    raise AssertionError(f"duplicate config field name {sub.name}")
                index[sub.name] = (f.name, sub, sub_hints[sub.name])
        else:
            index[f.name] = (None, f, tp)
    return index


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        inner = ";" if value and isinstance(value[0], tuple) else ","
        return inner.join(_show(v) for v in value) if value else "none"
    if value is None or value == "":
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    skip: tuple[str, ...] = (),
    title: str = "options",
    only: tuple[str, ...] | None = None,
    groups: dict[str, argparse._ArgumentGroup] | None = None,
) -> None:
    """One --flag (and its --under_score form) per leaf field, grouped by section, with help and default.
    `groups` (section name -> argument group) lets a command put its own flags in the same sections."""
    groups = dict(groups or {})
    for name, (sect, f, tp) in flag_index(cls).items():
        if name in skip or (only is not None and name not in only):
            continue
        group_name = sect or title
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(group_name)
        opts = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
        is_bool = tp is bool
        groups[group_name].add_argument(
            *opts,
            dest=FLAG_PREFIX + name,
            default=None,
            metavar="BOOL" if is_bool else "V",
            nargs="?" if is_bool else None,
            const="true" if is_bool else None,
            help=f"{f.metadata.get('help', name)} (default: {_show(_default(f))})".replace("%", "%%"),
        )


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The flags the user gave (flat {field: string})."""
    return {k[len(FLAG_PREFIX) :]: v for k, v in vars(args).items() if k.startswith(FLAG_PREFIX) and v is not None}


def overrides_from_flags(flags: dict[str, Any], cls: type = TrainConfig) -> dict[str, Any]:
    """Flat {field: value} (from the CLI) -> nested override dict for `cls`."""
    index = flag_index(cls)
    nested: dict[str, Any] = {}
    for key, value in flags.items():
        if key not in index:
            raise ConfigError(f"{key}: unknown key")
        sect = index[key][0]
        if sect is None:
            nested[key] = value
        else:
            nested.setdefault(sect, {})[key] = value
    return nested
