"""Weight-space interpolation between a fine-tuned model and the model it started from (WiSE-FT,
Wortsman et al. 2022): w = keep * w_base + (1 - keep) * w_tuned. A retrain on a few dozen masks of the
objects labelled so far gains on those and forgets the rest; halfway back to the base forgets less and
gains less (annotate_sim, benchmarks/RESULTS.md annotate-sim: a mixed folder +4.8% clicks instead of
+14.7% against learning off; ISBI cells 13% fewer, where keep 0 with the model before had 32%)."""

from __future__ import annotations

from pathlib import Path

import torch

from unetkit.deploy.export import export_safetensors
from unetkit.errors import CheckpointError
from unetkit.infer.checkpoint import load_model


def interpolate(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], keep: float) -> dict:
    """keep * base + (1 - keep) * tuned for every float tensor (BatchNorm's running statistics too);
    integer tensors (BatchNorm's step counts) and values that would not be finite (a variance that was
    infinite in both, as fp16 storage once made it) are the tuned model's."""
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep={keep}: give a share of the base model between 0 and 1")
    if base.keys() != tuned.keys():
        missing = sorted(base.keys() ^ tuned.keys())[:3]
        raise CheckpointError(f"the two models differ in their weights ({', '.join(missing)}, ...)")
    out = {}
    for name, t in tuned.items():
        b = base[name]
        if b.shape != t.shape:
            raise CheckpointError(f"{name}: shape {tuple(b.shape)} in the base model, {tuple(t.shape)} tuned")
        if not t.is_floating_point():
            out[name] = t.clone()
            continue
        mixed = torch.lerp(t, b.to(t.dtype), keep)
        out[name] = torch.where(torch.isfinite(mixed), mixed, t)  # inf - inf would be NaN: the tuned value
    return out


def interpolate_checkpoints(base: str, tuned: str, keep: float, out: Path) -> Path:
    """The interpolated model as a .safetensors file with the tuned model's metadata (its recorded
    click recipe, size and threshold)."""
    base_model, _ = load_model(base)
    model, meta = load_model(tuned)
    model.load_state_dict(interpolate(base_model.state_dict(), model.state_dict(), keep))
    return export_safetensors(model, meta, out)
