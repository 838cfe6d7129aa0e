"""The checkpoint format: versioned, self-describing, written atomically, loaded weights-only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or not one of ours; the message says which and what to do."""


def save(payload: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`.

    A crash at any point leaves either the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True: no pickled code from the file ever runs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; give the path to a .pt file from a run")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a torn or foreign file can fail anywhere inside the unpickler
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable unetkit checkpoint ({first[:200]}); it may be truncated or from "
            "another program: use a checkpoints/best.pt or last.pt written by `unetkit train`"
        ) from None
    if not isinstance(payload, dict) or "format_version" not in payload or "model_config" not in payload:
        raise CheckpointError(f"{path}: not a unetkit checkpoint (no format_version/model_config)")
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this unetkit "
            f"understands ({FORMAT_VERSION}); upgrade unetkit"
        )
    return payload


def versions() -> dict[str, str]:
    from unetkit import __version__

    return {"unetkit": __version__, "torch": str(torch.__version__)}
