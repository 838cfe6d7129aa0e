"""Joint image+mask augmentation on batched tensors, driven by an explicit torch.Generator.

Geometric transforms move image and mask together (image bilinear, mask nearest, IGNORE where
the mask has no source pixel), so masks keep exactly their label set. Photometric transforms touch
the image only. Images are float (N, C, H, W) in [0, 1]; masks are long (N, H, W).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unetkit.config import AugmentConfig
from unetkit.data.imageio import IGNORE


def _uniform(n: int, low: float, high: float, g: torch.Generator, device=None) -> torch.Tensor:
    """Per-sample parameters come from the CPU generator `g` (same draws on any device), then move."""
    return (torch.rand(n, generator=g) * (high - low) + low).to(device)


def _chosen(n: int, p: float, g: torch.Generator, device=None) -> torch.Tensor:
    return (torch.rand(n, generator=g) < p).to(device)


def flip(images, masks, p: float, dim: int, g: torch.Generator):
    sel = _chosen(images.shape[0], p, g, images.device)
    if sel.any():
        images, masks = images.clone(), masks.clone()
        images[sel] = images[sel].flip(dim)
        masks[sel] = masks[sel].flip(dim)
    return images, masks


def rot90(images, masks, p: float, g: torch.Generator):
    """Rotate by a random multiple of 90 degrees; only for square batches (shape must not change)."""
    if images.shape[-1] != images.shape[-2]:
        return images, masks
    sel = _chosen(images.shape[0], p, g)
    ks = torch.randint(1, 4, (images.shape[0],), generator=g)
    if sel.any():
        images, masks = images.clone(), masks.clone()
        for i in torch.nonzero(sel).flatten().tolist():
            k = int(ks[i])
            images[i] = torch.rot90(images[i], k, (-2, -1))
            masks[i] = torch.rot90(masks[i], k, (-2, -1))
    return images, masks


def _sample_grid(images, masks, grid):
    """Resample images (bilinear, zeros outside) and masks (nearest, IGNORE outside) on `grid`."""
    out_img = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Shift labels by one so that 0 marks "outside the source", then map it to IGNORE.
    shifted = (masks + 1).unsqueeze(1).to(images.dtype)
    m = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    m = m.squeeze(1).round().long() - 1
    return out_img, torch.where(m < 0, torch.full_like(m, IGNORE), m)


def affine_grid(n, h, w, p, scale_range, rotate_deg, g, elastic_p=0.0, elastic_alpha=0.04, device=None):
    """Per-sample random scale, rotation and translation (and optional elastic) sampling grid."""
    sel = _chosen(n, p, g)
    scale = torch.exp(_uniform(n, math.log(scale_range[0]), math.log(scale_range[1]), g))
    angle = _uniform(n, -rotate_deg, rotate_deg, g) * math.pi / 180
    # Translation by up to the slack that zooming in leaves, so the crop stays mostly inside.
    slack = (1 - 1 / scale).clamp_min(0)
    tx, ty = _uniform(n, -1, 1, g) * slack, _uniform(n, -1, 1, g) * slack
    scale = torch.where(sel, scale, torch.ones_like(scale))
    angle = torch.where(sel, angle, torch.zeros_like(angle))
    tx, ty = torch.where(sel, tx, 0 * tx), torch.where(sel, ty, 0 * ty)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    aspect = w / h
    theta = torch.stack(
        [
            torch.stack([cos, -sin / aspect, tx], 1),
            torch.stack([sin * aspect, cos, ty], 1),
        ],
        1,
    )  # (N, 2, 3) maps output coords to input coords
    grid = F.affine_grid(theta.to(device), (n, 1, h, w), align_corners=False)
    esel = _chosen(n, elastic_p, g)
    if esel.any():
        coarse = (torch.randn(n, 2, 5, 5, generator=g) * elastic_alpha).to(device)
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
        field = field * esel.to(device).view(n, 1, 1, 1)
        grid = grid + field.permute(0, 2, 3, 1)
    return grid, (sel | esel).to(device)


def geometric(images, masks, cfg: AugmentConfig, g: torch.Generator):
    images, masks = flip(images, masks, cfg.hflip, -1, g)
    images, masks = flip(images, masks, cfg.vflip, -2, g)
    images, masks = rot90(images, masks, cfg.rot90, g)
    if cfg.affine > 0 or cfg.elastic > 0:
        n, _, h, w = images.shape
        grid, sel = affine_grid(
            n, h, w, cfg.affine, cfg.scale_range, cfg.rotate_deg, g, cfg.elastic, device=images.device
        )
        if sel.any():
            new_img, new_mask = _sample_grid(images[sel], masks[sel], grid[sel])
            images, masks = images.clone(), masks.clone()
            images[sel], masks[sel] = new_img, new_mask
    return images, masks


def _gray(images):
    if images.shape[1] < 3:
        return images
    r, gch, b = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    return 0.299 * r + 0.587 * gch + 0.114 * b


def adjust_hue(images, shift):
    """Rotate hue by `shift` (fraction of a turn, per sample) in YIQ space."""
    if images.shape[1] < 3:
        return images
    rgb = images[:, :3]
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = torch.linalg.inv(to_yiq)
    yiq = torch.einsum("ij,njhw->nihw", to_yiq.to(images), rgb)
    a = shift * 2 * math.pi
    cos, sin = torch.cos(a).view(-1, 1, 1), torch.sin(a).view(-1, 1, 1)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], 1)
    out = images.clone()
    out[:, :3] = torch.einsum("ij,njhw->nihw", from_yiq.to(images), yiq)
    return out


def gaussian_blur(images, sigma: float):
    radius = max(1, int(math.ceil(2 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    c = images.shape[1]
    pad = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(pad, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def photometric(images, cfg: AugmentConfig, g: torch.Generator):
    n = images.shape[0]
    dev = images.device
    view = (n, 1, 1, 1)
    if cfg.brightness:
        images = images + _uniform(n, -cfg.brightness, cfg.brightness, g, dev).view(view)
    if cfg.contrast:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, g, dev).view(view) + mean
    if cfg.saturation and images.shape[1] >= 3:
        gray = _gray(images)
        f = _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, g, dev).view(view)
        images = torch.cat([(images[:, :3] - gray) * f + gray, images[:, 3:]], 1)
    if cfg.hue:
        images = adjust_hue(images, _uniform(n, -cfg.hue, cfg.hue, g, dev))
    images = images.clamp(0, 1)
    if cfg.gamma:
        gamma = torch.exp(_uniform(n, -cfg.gamma, cfg.gamma, g, dev)).view(view)
        images = images.clamp_min(1e-6) ** gamma
    if cfg.blur:
        sel = _chosen(n, cfg.blur, g)
        sigmas = _uniform(n, 0.3, 1.5, g)
        for i in torch.nonzero(sel).flatten().tolist():
            images[i : i + 1] = gaussian_blur(images[i : i + 1], float(sigmas[i]))
    if cfg.noise:
        std = _uniform(n, 0, cfg.noise, g, dev).view(view)
        noise_gen = torch.Generator(device=dev).manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
        images = images + torch.randn(images.shape, generator=noise_gen, device=dev) * std
    return images.clamp(0, 1)


def augment(images: torch.Tensor, masks: torch.Tensor, cfg: AugmentConfig, g: torch.Generator):
    """images float (N, C, H, W) in [0, 1], masks long (N, H, W) -> both augmented, same shapes."""
    images, masks = geometric(images, masks, cfg, g)
    return photometric(images, cfg, g), masks


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> zero-mean unit-variance per channel, with the dataset's statistics."""
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - m) / s
