"""Compact weight storage: int8 convolution kernels with one scale per output channel, everything
else (biases, BatchNorm) as fp16 where it fits (a tensor with a value past fp16's 65,504 stays fp32).
Four times smaller than fp32, half of fp16, which is what lets three pretrained models ship inside
the package; the weights are dequantised to fp32 on load, so inference and fine-tuning run as usual.
A kernel's error is at most half a step: scale / 2, with scale = max |w| of its output channel / 127.

Each quantised tensor NAME is stored as NAME (int8) and NAME + SCALE_SUFFIX (fp32, one per output
channel); a file needs no other marker, and a file without such pairs loads unchanged."""

from __future__ import annotations

import torch

SCALE_SUFFIX = ".int8_scale"
STORAGE = ("fp32", "fp16", "int8")


FP16_MAX = torch.finfo(torch.float16).max


def _fits_fp16(t: torch.Tensor) -> bool:
    """A BatchNorm running variance can pass fp16's range: the shipped clicks model's reached 90,181, and
    fp16 storage made 9 of its channels infinite (their outputs stuck at the bias, and inf - inf = NaN
    when a retrain averaged that model with its fine-tuned copy)."""
    return bool(t.abs().max() <= FP16_MAX) if t.numel() else True


def _quantizable(t: torch.Tensor) -> bool:
    return t.is_floating_point() and t.dim() == 4 and t.numel() >= 256  # conv kernels, not the tiny ones


def quantize_state(state: dict[str, torch.Tensor], storage: str = "int8") -> dict[str, torch.Tensor]:
    """A state dict ready for safetensors in `storage` (fp32 | fp16 | int8); integers stay as they are."""
    if storage not in STORAGE:
        raise ValueError(f"storage {storage!r}: use one of {', '.join(STORAGE)}")
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        t = t.detach().cpu()
        if not t.is_floating_point() or storage == "fp32":
            out[name] = t.float().contiguous() if t.is_floating_point() else t.contiguous()
        elif storage == "int8" and _quantizable(t):
            w = t.float()
            scale = w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / 127
            out[name] = torch.round(w / scale.view(-1, 1, 1, 1)).clamp(-127, 127).to(torch.int8).contiguous()
            out[name + SCALE_SUFFIX] = scale.contiguous()
        elif _fits_fp16(t):
            out[name] = t.half().contiguous()
        else:
            out[name] = t.float().contiguous()
    return out


def dequantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp32 tensors from what quantize_state wrote (any storage); integer buffers stay integers."""
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = state.get(name + SCALE_SUFFIX)
        if scale is not None:
            out[name] = t.float() * scale.float().view(-1, *([1] * (t.dim() - 1)))
        else:
            out[name] = t.float() if t.is_floating_point() else t
    return out


def storage_of(state: dict[str, torch.Tensor]) -> str:
    """Which storage a state dict read from a file uses (for cards and messages)."""
    if any(k.endswith(SCALE_SUFFIX) for k in state):
        return "int8"
    floats = {t.dtype for t in state.values() if t.is_floating_point()}
    return "fp16" if torch.float16 in floats else "fp32"  # an fp16 file keeps what passes fp16's range in fp32
