"""One training step and what it needs: model, optimiser, loss, and the batch preparation.

This is the public surface that fit, autoconfig's timing and the benchmarks all use, so a
benchmark measures exactly the step that training runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from unetkit.config import TrainConfig
from unetkit.data.transforms import augment, normalize
from unetkit.model import ModelConfig, UNet, build
from unetkit.runtime import Runtime
from unetkit.training.finetune import encoder_scale, is_encoder
from unetkit.training.losses import make_loss

SMALL_DATASET = 100  # training images below which norm "auto" means GroupNorm

# (images (N, C, H, W) float on the CPU, masks (N, H, W) uint8, step seed, the model) -> (x, target)
# on the device. The default augments and normalises; click-guided training adds click channels.
BatchFn = Callable[[torch.Tensor, torch.Tensor, int, torch.nn.Module], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Training:
    model: UNet
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def resolve_norm(config: TrainConfig, num_train: int) -> TrainConfig:
    """norm "auto" -> GroupNorm for small training sets (batch statistics of a few images' crops
    are a poor estimate of the population ones; measured on GrabCut and DRIVE), BatchNorm otherwise."""
    if config.model.norm != "auto":
        return config
    norm = "group" if num_train < SMALL_DATASET else "batch"
    return dataclasses.replace(config, model=dataclasses.replace(config.model, norm=norm))


def build_model(config: TrainConfig, in_channels: int, num_classes: int) -> UNet:
    m = config.model
    out = 1 if num_classes == 2 else num_classes
    # "auto" is resolved from the data before training; without data (timing) it builds BatchNorm.
    norm = "batch" if m.norm == "auto" else m.norm
    return build(ModelConfig(in_channels, out, m.widths, m.upsampling, norm, m.dropout, m.encoder))


def resolve_optimizer(config: TrainConfig) -> TrainConfig:
    """`--optimizer auto` and an unset `--lr` made concrete for the network the run trains: SGD at 0.05
    for the seed's own encoder, AdamW at 1e-3 for a pretrained one (config.schema.OptimConfig says why)."""
    o = config.optim
    name = o.optimizer if o.optimizer != "auto" else ("sgd" if config.model.encoder == "unet" else "adamw")
    lr = o.lr if o.lr is not None else (0.05 if name == "sgd" else 1e-3)
    return dataclasses.replace(config, optim=dataclasses.replace(o, optimizer=name, lr=lr))


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Weight decay on kernels only; the encoder gets groups of its own (marked "encoder") when
    fine-tuning gives it another learning rate or freezes it (finetune.lr_scale)."""
    o, ft = resolve_optimizer(config).optim, config.finetune
    split = encoder_scale(ft) != 1 or ft.freeze_encoder_epochs > 0
    by_key: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        by_key.setdefault((split and is_encoder(name), p.ndim > 1), []).append(p)
    groups = [
        {"params": ps, "weight_decay": o.weight_decay if decay else 0.0, "encoder": encoder}
        for (encoder, decay), ps in by_key.items()
    ]
    if o.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=True)
    if o.optimizer == "adam":
        return torch.optim.Adam(groups, lr=o.lr)
    return torch.optim.AdamW(groups, lr=o.lr)


def training_runtime(rt: Runtime, config: TrainConfig) -> Runtime:
    """The layout a training step runs in: channels_last, except for a plain U-Net with GroupNorm
    trained in fp32 on a CPU. There GroupNorm takes several times longer channels_last (widths 16-128,
    128 px, batch 4, AVX2 EPYC: 51-67 ms of a step's operator time against 5-9 ms NCHW in six
    runs; benchmarks/profile_train.py --networks width16gn) while the convolutions run about level, so NCHW
    steps are faster (1.33x, bench_train.py --networks width16gn --rounds 5) and ISBI's 34 s
    --time-budget run made 90-125 steps instead of 75-85 (4 seeds). Where bf16 runs, channels_last
    convolutions gain more and the rule is not applied (not measured there)."""
    if fp32_cpu_unet(rt, config) and config.model.norm == "group":
        return dataclasses.replace(rt, channels_last=False)
    return rt


def fp32_cpu_unet(rt: Runtime, config: TrainConfig) -> bool:
    """A plain U-Net (no pretrained encoder) trained in fp32 on a CPU: where the memory format is in question."""
    return rt.device.type == "cpu" and rt.precision == "fp32" and config.model.encoder == "unet"


def build_training(config: TrainConfig, rt: Runtime, num_classes: int, in_channels: int | None = None) -> Training:
    """Model on the device, optimiser, grad scaler and loss for a config, built the same way everywhere."""
    model = build_model(config, in_channels or config.data.in_channels, num_classes).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.precision == "fp16")
    return Training(model, build_optimizer(config, model), scaler, make_loss(config.loss, num_classes))


def standard_batch_fn(config: TrainConfig, rt: Runtime, mean, std) -> BatchFn:
    """The default batch preparation: move, augment on the device (seeded by the step), normalise."""

    def prepare(images: torch.Tensor, masks: torch.Tensor, seed: int, model=None):
        images = images.to(rt.device, non_blocking=True).float()  # (N, C, H, W)
        masks = masks.to(rt.device, non_blocking=True).long()  # (N, H, W)
        images, masks = augment(images, masks, config.augment, torch.Generator().manual_seed(seed))
        x = normalize(images, mean, std)
        if rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, masks

    return prepare


def stack(dataset, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples -> (images (N, C, H, W), masks (N, H, W)) on the CPU."""
    items = [dataset[i] for i in indices]
    return torch.stack([im for im, _ in items]), torch.stack([m for _, m in items])


def load_batch(dataset, indices: list[int], config: TrainConfig, rt: Runtime, mean, std, seed: int):
    """Cached samples -> augmented, normalised (x, target) on the device; seeded by the step."""
    return standard_batch_fn(config, rt, mean, std)(*stack(dataset, indices), seed)


def train_step(model, x, target, config: TrainConfig, rt: Runtime, training: Training, seed: int) -> float:
    """One optimisation step; dropout seeded by the step's position so resumed runs replay it."""
    torch.manual_seed(seed)
    with rt.autocast():
        logits = model(x)  # (N, K, H, W)
    loss = training.loss_fn(logits, target)
    opt, scaler = training.optimizer, training.scaler
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if config.optim.grad_clip:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
    scaler.step(opt)
    scaler.update()
    return float(loss.detach())
