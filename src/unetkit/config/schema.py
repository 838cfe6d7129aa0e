"""Typed, frozen, validated configuration schemas of training (evaluation and prediction: inference.py).

Each field carries a one-line help text (`opt(default, help)`), from which the CLI's flags and
their --help are generated (io.py). Precedence: dataclass defaults < preset < config file
(TOML or JSON) < command-line flags. Unknown keys and bad values raise ``ConfigError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from unetkit.config.clicks import ClickConfig
from unetkit.config.fields import opt, require, section
from unetkit.errors import ConfigError


def parse_duration(text: str) -> float:
    """'90s', '10m', '1h30m', '45' (seconds) -> seconds; '' -> 0 (no limit)."""
    if not text:
        return 0.0
    m = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not m or not any(m.groups()):
        raise ConfigError(f"time_limit: cannot read duration {text!r}; use e.g. 90s, 10m, 1h30m")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def parse_bytes(text: str) -> int:
    """'2G', '500M', '1024' (bytes) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*", text)
    if not m:
        raise ConfigError(f"cache_memory: cannot read size {text!r}; use auto, e.g. 4G or 500M, or 0")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


@dataclass(frozen=True)
class DataConfig:
    """Where the images and masks are and how to read them."""

    root: str | None = opt(None, "folder with images/ + masks/ (or train/ val/ test/); none = demo data")
    csv: str | None = opt(None, "CSV file of image,mask[,split] paths instead of a folder")
    mask_suffix: str = opt("", "mask stem = image stem + suffix, e.g. _mask")
    mask_mode: str = opt("auto", "mask encoding: auto | binary (0/255) | index (class ids) | rgb (colours)")
    mask_threshold: int = opt(0, "binary masks: values >= T are foreground (e.g. 128 for soft edges); 0 = exact")
    classes: tuple[str, ...] = opt((), "class names, comma-separated; empty = derived from the masks")
    colors: tuple[tuple[int, int, int], ...] = opt((), "rgb masks: one r,g,b per class, separated by ;")
    ignore_value: int | None = opt(None, "mask value left out of loss and metrics (e.g. 128, 11)")
    in_channels: int = opt(3, "image channels the model takes: 1, 3 or 4")
    split: tuple[float, float, float] = opt((0.7, 0.15, 0.15), "train,val,test fractions without split folders")
    split_seed: int = opt(0, "seed of that split")
    resize: str = opt("resize", "resize: squash images to size; crop: random crops of size at native scale")
    size: tuple[int, int] = opt((256, 256), "training input height,width")
    cache: str = opt("memory", "decoded-sample cache: memory (spills to RUN/cache past its budget) | disk | none")
    cache_memory: str = opt("auto", "memory cache budget: auto (25% of available RAM) or e.g. 4G, 500M")
    workers: str = opt("auto", "decoding worker processes: auto (0 on <= 2 cores) or a number")
    skip_bad: bool = opt(False, "skip pairs that fail the data check instead of refusing to train")
    labels: str = opt("auto", "label files: semantic | binary | instances | auto (instances for clicks)")
    overlap: str = opt("area", "label files, overlapping objects: area (smaller on top) | order (file's z-order)")
    images: str | None = opt(None, "label files: folder of their images (default: where each tool puts them)")
    annotator: str = opt("latest", "Label Studio: whose annotation of a task: latest | a user id or email")

    def __post_init__(self) -> None:
        require(self.mask_mode in ("auto", "binary", "index", "rgb"), "mask_mode", "use auto|binary|index|rgb")
        require(0 <= self.mask_threshold <= 65535, "mask_threshold", "must be 0 (off) or a mask value 1..65535")
        require(not self.mask_threshold or self.mask_mode in ("auto", "binary"), "mask_threshold",
                "applies to binary masks; drop it or use --mask-mode binary")  # fmt: skip
        require(self.in_channels in (1, 3, 4), "in_channels", f"must be 1, 3 or 4, got {self.in_channels}")
        require(len(self.split) == 3, "split", "give three fractions: train,val,test")
        require(
            all(f >= 0 for f in self.split) and abs(sum(self.split) - 1) < 1e-6,
            "split",
            "fractions must be >= 0 and sum to 1",
        )
        require(self.split[0] > 0, "split", "the train fraction must be > 0")
        require(self.resize in ("resize", "crop"), "resize", "use resize|crop")
        require(len(self.size) == 2 and min(self.size) >= 8, "size", f"need height,width >= 8, got {self.size}")
        require(self.cache in ("memory", "disk", "none"), "cache", "use memory|disk|none")
        if self.cache_memory != "auto":
            parse_bytes(self.cache_memory)
        require(self.workers == "auto" or (self.workers.isdigit() and int(self.workers) <= 64), "workers",
                f"use auto or a number 0..64, got {self.workers!r}")  # fmt: skip
        require(self.ignore_value is None or 0 <= self.ignore_value <= 65535, "ignore_value", "must be 0..65535")
        require(not (self.root and self.csv), "csv", "give either root or csv, not both")
        for name, allowed in (("labels", ("auto", "semantic", "binary", "instances")), ("overlap", ("area", "order"))):
            require(getattr(self, name) in allowed, name, "use " + "|".join(allowed))
        if self.mask_mode == "rgb":
            require(len(self.colors) >= 2, "colors", "rgb masks need a colour per class (at least 2)")
        for c in self.colors:
            require(len(c) == 3 and all(0 <= v <= 255 for v in c), "colors", f"bad colour {c}")
        if self.colors and self.classes:
            require(len(self.colors) == len(self.classes), "colors", "need exactly one colour per class")


NORMS = ("auto", "batch", "group", "instance", "none")
UPSAMPLING = ("transpose", "bilinear")
# The networks' contracting paths: the seed's own, or a pretrained family (model/encoders.py registers
# each; a test keeps the two lists equal).
ENCODER_NAMES = ("unet", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
ENCODER_WEIGHTS = ("auto", "imagenet", "none")


def check_net(
    widths: tuple[int, ...],
    upsampling: str,
    norm: str,
    dropout: float,
    norms: tuple[str, ...] = NORMS,
    encoder: str = "unet",
):
    """The network-shape rules, shared by NetConfig (what a user sets) and model.ModelConfig (what a
    checkpoint stores, where norm is resolved: no "auto")."""
    require(len(widths) >= 1 and all(w >= 1 for w in widths), "widths", f"need positive ints, got {widths}")
    require(upsampling in UPSAMPLING, "upsampling", "use " + "|".join(UPSAMPLING))
    require(encoder in ENCODER_NAMES, "encoder", "use " + " | ".join(ENCODER_NAMES))
    require(
        encoder == "unet" or len(widths) == 4,
        "widths",
        f"the {encoder} decoder takes 4 widths (its levels at strides 2, 4, 8, 16), got {len(widths)}",
    )
    require(norm in norms, "norm", "use " + "|".join(norms))
    require(0 <= dropout < 1, "dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class NetConfig:
    """Network shape; in_channels and num_classes come from the data."""

    widths: tuple[int, ...] = opt((32, 64, 128, 256), "channels per level, comma-separated (seed: 64,128,256,512)")
    upsampling: str = opt("transpose", "transpose (2x2 stride-2 conv, the seed's) | bilinear")
    norm: str = opt("auto", "batch | group | instance | none | auto (group under 100 training images)")
    dropout: float = opt(0.0, "Dropout2d probability after each block")
    encoder: str = opt(
        "unet", "contracting path: unet (the seed's own) | efficientnet-lite0 | -lite1 | -lite2 (widths: the decoder's)"
    )
    encoder_weights: str = opt("auto", "imagenet | none | auto (imagenet for a pretrained family, none for unet)")

    def __post_init__(self) -> None:
        check_net(self.widths, self.upsampling, self.norm, self.dropout, encoder=self.encoder)
        require(self.encoder_weights in ENCODER_WEIGHTS, "encoder_weights", "use " + "|".join(ENCODER_WEIGHTS))
        require(
            not (self.encoder == "unet" and self.encoder_weights == "imagenet"),
            "encoder_weights",
            "the unet encoder has no ImageNet weights; use --encoder efficientnet-lite0 or --encoder-weights none",
        )

    @property
    def imagenet(self) -> bool:
        """Whether the encoder starts from its ImageNet weights (unless the run starts from a model)."""
        return self.encoder != "unet" and self.encoder_weights != "none"


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and strengths of the joint image+mask augmentations (0 disables one).

    Defaults are deliberately light: in the minutes-to-an-hour budgets this tool targets, stronger
    photometric/rotation augmentation lost validation quality (benchmarks/RESULTS.md, ablations)."""

    hflip: float = opt(0.5, "probability of a horizontal flip")
    vflip: float = opt(0.0, "probability of a vertical flip")
    rot90: float = opt(0.0, "probability of a 90-degree rotation")
    affine: float = opt(0.5, "probability of a random scale/rotate/translate")
    scale_range: tuple[float, float] = opt((0.8, 1.25), "affine scale low,high")
    rotate_deg: float = opt(0.0, "affine rotation range in degrees (+-)")
    elastic: float = opt(0.0, "probability of an elastic deformation")
    brightness: float = opt(0.1, "brightness jitter strength")
    contrast: float = opt(0.1, "contrast jitter strength")
    gamma: float = opt(0.0, "gamma jitter strength")
    saturation: float = opt(0.0, "saturation jitter strength")
    hue: float = opt(0.0, "hue jitter strength")
    noise: float = opt(0.02, "Gaussian noise standard deviation")
    blur: float = opt(0.0, "probability of a Gaussian blur")

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip", "rot90", "affine", "elastic", "blur"):
            require(0 <= getattr(self, name) <= 1, name, "is a probability in [0, 1]")
        for name in ("brightness", "contrast", "gamma", "saturation", "hue", "noise", "rotate_deg"):
            require(getattr(self, name) >= 0, name, "must be >= 0")
        require(0 < self.scale_range[0] <= self.scale_range[1], "scale_range", "need 0 < low <= high")


@dataclass(frozen=True)
class OptimConfig:
    """For the seed network SGD (Nesterov) with poly decay is the default: on CamVid it beat AdamW by
    ~0.1 mIoU at the same steps, and it was as good or better on the other benchmark sets
    (benchmarks/RESULTS.md). A pretrained encoder gets AdamW at 1e-3: from ImageNet on duts3k, 0.879 val
    Dice after 3 CPU minutes against SGD's 0.536 (issue 21's note). `auto` is settled by
    training.steps.resolve_optimizer once the network is known."""

    optimizer: str = opt("auto", "auto (sgd for the seed network, adamw for a pretrained encoder) | sgd | adamw | adam")
    lr: float | None = opt(None, "peak learning rate; none = 0.05 for sgd, 1e-3 for adam and adamw")
    weight_decay: float = opt(1e-4, "weight decay (not on norms and biases)")
    momentum: float = opt(0.9, "SGD momentum")
    schedule: str = opt("poly", "learning-rate decay: poly | cosine | constant")
    warmup_epochs: float = opt(1.0, "epochs of linear warmup")
    grad_clip: float = opt(1.0, "max gradient norm; 0 disables")

    def __post_init__(self) -> None:
        require(self.optimizer in ("auto", "adamw", "adam", "sgd"), "optimizer", "use auto|adamw|adam|sgd")
        require(self.lr is None or self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(self.schedule in ("cosine", "poly", "constant"), "schedule", "use cosine|poly|constant")
        require(self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0")
        require(self.grad_clip >= 0, "grad_clip", "must be >= 0")


@dataclass(frozen=True)
class LossConfig:
    """The training loss; pixels with the ignore value count in none of them."""

    loss: str = opt("dice+ce", "ce | dice | focal | dice+ce | dice+focal")
    dice_weight: float = opt(1.0, "weight of the Dice term")
    ce_weight: float = opt(1.0, "weight of the cross-entropy/focal term")
    focal_gamma: float = opt(2.0, "focal loss gamma")
    class_weights: tuple[float, ...] = opt((), "one weight per class for ce/focal; empty = from class_balance")
    class_balance: str = opt("auto", "none | median_freq | auto (median_freq for 3+ classes)")

    def __post_init__(self) -> None:
        require(
            self.loss in ("ce", "dice", "focal", "dice+ce", "dice+focal"),
            "loss",
            "use ce|dice|focal|dice+ce|dice+focal",
        )
        require(self.dice_weight >= 0 and self.ce_weight >= 0, "dice_weight", "weights must be >= 0")
        require(all(w >= 0 for w in self.class_weights), "class_weights", "must be >= 0")
        require(self.class_balance in ("none", "median_freq", "auto"), "class_balance", "use none|median_freq|auto")


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"


def check_runtime(device: str, precision: str) -> None:
    require(precision in PRECISIONS, "precision", "use auto|fp32|bf16|fp16")
    require(re.fullmatch(DEVICE_PATTERN, device) is not None, "device", "use auto|cpu|cuda|cuda:N")


@dataclass(frozen=True)
class FinetuneConfig:
    """Start from a trained model instead of random weights (finetune.py): the tensors whose name and
    shape match are loaded, the rest (a head for another class count, new input channels) start fresh."""

    init: str = opt(
        "auto",
        "auto (a shipped model that fits, or the ImageNet encoder) | none | imagenet | CKPT | builtin:NAME",
    )
    encoder_lr_scale: float | None = opt(
        None,
        "learning rate of the encoder (down path, bottleneck) relative to --lr; none = 1, or 0.1 when "
        "--time-budget finds the starting model already does the task (>= 0.5 IoU on val as it is)",
    )
    freeze_encoder_epochs: int = opt(0, "keep the encoder's weights fixed for the first N epochs")

    def __post_init__(self) -> None:
        require(bool(self.init), "init", "use auto, none, a checkpoint path or builtin:NAME")
        scale = self.encoder_lr_scale
        require(scale is None or 0 <= scale <= 10, "encoder_lr_scale", "must be in [0, 10], or none")
        require(self.freeze_encoder_epochs >= 0, "freeze_encoder_epochs", "must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Every field can be set from a file or a flag of the same name."""

    data: DataConfig = section(DataConfig, "data")
    model: NetConfig = section(NetConfig, "model")
    augment: AugmentConfig = section(AugmentConfig, "augment")
    optim: OptimConfig = section(OptimConfig, "optim")
    loss: LossConfig = section(LossConfig, "loss")
    clicks: ClickConfig = section(ClickConfig, "clicks")
    finetune: FinetuneConfig = section(FinetuneConfig, "finetune")
    epochs: int = opt(40, "training epochs (0: only validate and save the starting point, e.g. an --init model)")
    batch_size: int = opt(8, "images per step (per process under torchrun)")
    max_steps: int = opt(0, "stop after this many steps; 0 = no limit")
    time_limit: str = opt("", "stop training after this long, e.g. 10m, 1h30m; empty = no limit")
    fill_time_limit: bool = opt(False, "re-measure epoch time and set epochs so the schedule ends at time_limit")
    patience: int = opt(0, "early stopping after N epochs without improvement; 0 = off")
    seed: int = opt(0, "random seed of weights, batches and augmentation")
    precision: str = opt("auto", "auto | fp32 | bf16 | fp16 (fp16 needs CUDA)")
    channels_last: bool = opt(True, "channels-last memory format where faster (fp32 CPU training may time it vs NCHW)")
    compile: bool = opt(False, "torch.compile the model")
    deterministic: bool = opt(False, "deterministic algorithms (slower; exact resume)")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    threshold: float = opt(0.5, "binary decision threshold on the foreground probability")
    val_every: int = opt(1, "validate, log and checkpoint every N epochs (and at the end)")
    sample_every: int = opt(5, "epochs between prediction grids in RUN/samples; 0 = none")
    checkpoint_every: int = opt(0, "also save last.pt every N steps; 0 = once per validated epoch")
    sync_bn: bool = opt(False, "torchrun: SyncBatchNorm (batch statistics over all ranks)")
    tensorboard: bool = opt(False, "also log to RUN/tensorboard (needs the tensorboard extra)")

    def __post_init__(self) -> None:
        require(self.epochs >= 0, "epochs", f"must be >= 0, got {self.epochs}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.max_steps >= 0, "max_steps", "must be >= 0")
        require(self.patience >= 0, "patience", "must be >= 0")
        check_runtime(self.device, self.precision)
        require(0 < self.threshold < 1, "threshold", "must be in (0, 1)")
        require(self.sample_every >= 0 and self.checkpoint_every >= 0, "sample_every", "must be >= 0")
        require(self.val_every >= 1, "val_every", f"must be >= 1, got {self.val_every}")
        parse_duration(self.time_limit)  # raises ConfigError on a bad value
        require(not self.fill_time_limit or bool(self.time_limit), "fill_time_limit", "needs a time_limit, e.g. 30m")
