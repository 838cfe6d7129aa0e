"""The three helpers every config schema is written with: a field with its help text (the CLI's flags
and --help are generated from it, io.py), a nested section, and a check that raises ConfigError."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from unetkit.errors import ConfigError


def opt(default: Any, help: str) -> Any:
    """A dataclass field with its help text (shown by `--help`)."""
    return field(default=default, metadata={"help": help})


def section(cls: type, help: str) -> Any:
    return field(default_factory=cls, metadata={"help": help})


def require(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")
