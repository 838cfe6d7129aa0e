"""The checkpoint contract, owned here: one frozen `ModelMeta` that says how a model sees images and
what its outputs mean; `save` (atomic), and every reader: `load` (a .pt payload, weights only),
`read_safetensors` (an export or a shipped model: tensors and JSON) and `load_model(path) -> (model, meta)`
over all of them."""

from __future__ import annotations

import json
import os
import pickletools
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from unetkit._version import __version__
from unetkit.data.imageio import MaskSpec
from unetkit.errors import CheckpointError
from unetkit.infer import builtin
from unetkit.infer.inference import InferenceSpec
from unetkit.infer.quantize import dequantize_state
from unetkit.model import ModelConfig, UNet, build

FORMAT_VERSION = 1
CLICK_THRESHOLD = 0.49  # RITM's threshold on the clicked object's probability
META_KEYS = ("model_config", "classes", "mask_spec", "normalization", "input", "threshold")


def versions() -> dict[str, str]:
    return {"unetkit": __version__, "torch": str(torch.__version__)}


@dataclass(frozen=True)
class ModelMeta:
    """Everything besides the weights that inference needs; stored in every checkpoint."""

    model: ModelConfig
    classes: tuple[str, ...]
    mask_spec: MaskSpec
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str  # resize: the model runs at `size`; crop: at native resolution
    size: tuple[int, int]
    in_channels: int
    threshold: float = 0.5
    tta_flips: tuple[int, ...] = (-1,)
    versions: dict = field(default_factory=versions)
    train_config: dict = field(default_factory=dict)  # the resolved TrainConfig, as a dict
    split: dict | None = None  # data.SplitRecord.to_dict() of the run
    # click models: {"radius": px, "threshold": p[, "view_size": px, "first_zoom": share]}; 3 more channels
    clicks: dict | None = None

    @property
    def interactive(self) -> bool:
        return self.clicks is not None

    @property
    def kind(self) -> str:
        """What the model does, the key of every add-on registry: segmentation | interactive."""
        return "interactive" if self.interactive else "segmentation"

    @property
    def click_threshold(self) -> float:
        """Click models: the probability above which a pixel is the clicked object (RITM's 0.49 for
        checkpoints that do not record it)."""
        return float((self.clicks or {}).get("threshold", CLICK_THRESHOLD))

    @property
    def click_view_size(self) -> int:
        """Crop-mode click models: the longer side the image or zoom box is scaled to; 0 (older
        checkpoints): the whole image at its own size, a zoom box at the training size."""
        return int((self.clicks or {}).get("view_size", 0))

    @property
    def click_first_zoom(self) -> float:
        """Click models: after the 1st click, an object smaller than this share of the image's longer side
        is predicted again in a box around it (predictor.first_box); 0 (older checkpoints): never."""
        return float((self.clicks or {}).get("first_zoom", 0.0))

    @property
    def binary(self) -> bool:
        """One logit (sigmoid) models: the one place this is decided."""
        return self.model.num_classes == 1

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def inference_spec(self) -> InferenceSpec:
        return InferenceSpec(
            self.mean, self.std, self.resize, self.size, self.binary, threshold=self.threshold,
            tta_flips=self.tta_flips, extra_channels=3 if self.interactive else 0,
        )  # fmt: skip

    def to_payload(self) -> dict[str, Any]:
        return {
            "model_config": self.model.to_dict(),
            "classes": list(self.classes),
            "mask_spec": self.mask_spec.to_dict(),
            "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "input": {"resize": self.resize, "size": list(self.size), "in_channels": self.in_channels},
            "threshold": self.threshold,
            "tta_flips": list(self.tta_flips),
            "versions": self.versions,
            "train_config": self.train_config,
            "split": self.split,
            "clicks": self.clicks,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], path: str | Path = "checkpoint") -> ModelMeta:
        missing = [k for k in META_KEYS if k not in payload]
        if missing:
            raise CheckpointError(
                f"{path}: checkpoint lacks the metadata key {missing[0]!r}; it was edited or written by another "
                "program: use a checkpoints/best.pt or last.pt written by `unetkit train`"
            )
        try:
            return cls(
                model=ModelConfig(**payload["model_config"]),
                classes=tuple(payload["classes"]),
                mask_spec=MaskSpec.from_dict(payload["mask_spec"]),
                mean=tuple(payload["normalization"]["mean"]),
                std=tuple(payload["normalization"]["std"]),
                resize=payload["input"]["resize"],
                size=tuple(payload["input"]["size"]),
                in_channels=int(payload["input"]["in_channels"]),
                threshold=float(payload["threshold"]),
                tta_flips=tuple(payload.get("tta_flips", (-1,))),
                versions=dict(payload.get("versions", {})),
                train_config=dict(payload.get("train_config") or {}),
                split=payload.get("split"),
                clicks=payload.get("clicks"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: checkpoint metadata is malformed ({type(e).__name__}: {e})") from None


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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a torn or foreign file can fail anywhere inside the unpickler
        raise CheckpointError(_unreadable(path, e)) from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a unetkit checkpoint (no format_version); use a file `unetkit train` wrote")
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this unetkit "
            f"understands ({FORMAT_VERSION}); upgrade unetkit"
        )
    return payload


def _pickled_global(path: Path) -> str | None:
    """The first function or class a plain (non-zip) pickle would import, read with pickletools (which
    runs nothing): what torch's weights-only loader leaves unnamed when it stops at a protocol-4 frame."""
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL":
                    return str(arg).replace(" ", ".")
                if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    return f"{strings[-2]}.{strings[-1]}"
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # not a pickle, or a damaged one: nothing to name
        return None
    return None


def _unreadable(path: Path, e: Exception) -> str:
    blocked = re.search(r"GLOBAL ([\w.]+)", str(e))
    name = blocked.group(1) if blocked else _pickled_global(path)
    if name:
        return (
            f"{path}: refused: the file asks to run Python code ({name}), which a unetkit checkpoint "
            "never holds; it is not a unetkit checkpoint, and nothing from it was run"
        )
    text = str(e).strip()
    first = text.splitlines()[0][:160] if text else type(e).__name__
    if first.startswith("Weights only load failed"):  # torch's long advice to load it unsafely: not ours to give
        first = "pickled objects that a weights-only load does not read"
    return (
        f"{path}: not a readable unetkit checkpoint ({first}); it may be truncated or from another "
        "program: use a checkpoints/best.pt or last.pt written by `unetkit train`"
    )


def build_model(meta: ModelMeta, state_dict: dict, path: str | Path = "checkpoint") -> UNet:
    model = build(meta.model)
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:200]
        raise CheckpointError(
            f"{path}: the weights do not fit the model the checkpoint describes ({first}); "
            "the file was edited or comes from another model size: use the checkpoint its run wrote"
        ) from None
    return model


def read_safetensors(path: str | Path) -> tuple[UNet, ModelMeta]:
    """(model, meta) from a .safetensors file unetkit wrote: tensors and JSON only, nothing executed."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            state = dequantize_state({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118 (no items())
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if "unetkit" not in header:
        raise CheckpointError(f"{path}: a safetensors file without unetkit's metadata; export it with unetkit export")
    meta = ModelMeta.from_payload(json.loads(header["unetkit"]), path)
    return build_model(meta, state, path).eval(), meta


def load_model(path: str | Path) -> tuple[UNet, ModelMeta]:
    """(model on the CPU in eval mode, its metadata) from a checkpoint, a .safetensors export, or a
    shipped model named builtin:NAME."""
    if builtin.is_ref(path):
        path = builtin.get(str(path)).path
    if Path(path).suffix == ".safetensors":
        return read_safetensors(path)
    payload = load(path)
    meta = ModelMeta.from_payload(payload, path)
    if "state_dict" not in payload:
        raise CheckpointError(f"{path}: checkpoint lacks the key 'state_dict' (the weights)")
    return build_model(meta, payload["state_dict"], path).eval(), meta
