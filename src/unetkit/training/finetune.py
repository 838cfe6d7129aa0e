"""Starting a run from a trained model (`--init CKPT|builtin:NAME`, or a shipped one picked
automatically): which source, which network it implies, and how its weights move into the new model.

Every tensor whose name and shape match is loaded. The first convolution is adapted when the input
channels differ: the image channels the two share are copied (a grey-image model from an RGB one sums
the RGB kernels, so a grey image seen as R=G=B gives the same response), new channels (e.g. click maps)
start at zero, so the new model first behaves exactly like its source. Everything else that differs
(the head for another class count) keeps its fresh initialisation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from unetkit.config import FinetuneConfig, NetConfig, TrainConfig
from unetkit.data.datasets import SegmentationDataset
from unetkit.errors import ConfigError
from unetkit.infer import builtin
from unetkit.infer.checkpoint import ModelMeta, build_model, load_model
from unetkit.infer.evaluation import evaluate
from unetkit.infer.predict import Segmenter
from unetkit.runtime import setup

ENCODER_PREFIXES = ("down.", "bottleneck.", "encoder.")  # the seed's contracting path; a registered encoder
CLICK_CHANNELS = 3
IMAGENET = "imagenet"  # --init imagenet: the pretrained encoder, no trained model
IMAGENET_ENCODER = "efficientnet-lite0"
IMAGENET_WIDTHS = (16, 32, 64, 128)  # the shipped models' decoder
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class Source:
    ref: str  # as the user gave it: a path or builtin:NAME
    meta: ModelMeta
    state: dict[str, torch.Tensor]

    @property
    def image_channels(self) -> int:
        return self.meta.in_channels

    @property
    def extra_channels(self) -> int:
        return CLICK_CHANNELS if self.meta.interactive else 0


@dataclass
class Transfer:
    """What moved from the source into the new model; `summary()` is the line training prints."""

    ref: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    params_loaded: int = 0
    params_total: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        n = len(self.loaded) + len(self.adapted) + len(self.fresh)
        text = (
            f"init: loaded {len(self.loaded) + len(self.adapted)} of {n} tensors "
            f"({self.params_loaded:,} of {self.params_total:,} parameters) from {self.ref}"
        )
        if self.fresh:
            text += "; re-initialised: " + ", ".join(self.fresh)
        return text + "".join(f"; {note}" for note in self.notes)


def is_encoder(name: str) -> bool:
    """The contracting path and bottleneck (the part a lower learning rate or freezing applies to)."""
    return name.startswith(ENCODER_PREFIXES)


def encoder_scale(ft: FinetuneConfig) -> float:
    """The encoder's lr multiplier; none (not planned by --time-budget) means 1."""
    return 1.0 if ft.encoder_lr_scale is None else ft.encoder_lr_scale


def lr_scale(encoder: bool, ft: FinetuneConfig, epoch: int) -> float:
    """Multiplier of the scheduled learning rate for a parameter group in an epoch."""
    if not encoder:
        return 1.0
    return 0.0 if epoch < ft.freeze_encoder_epochs else encoder_scale(ft)


def load_source(ref: str) -> Source:
    """The source model's metadata and weights (weights-only loading): builtin:NAME, a checkpoint or
    safetensors file, or a run folder (its best.pt)."""
    path = ref
    if not builtin.is_ref(ref):
        path = Path(ref) / "checkpoints" / "best.pt" if Path(ref).is_dir() else Path(ref)
        if not path.is_file():
            known = ", ".join(b.ref for b in builtin.available())
            raise ConfigError(
                f"init: {ref} is not a checkpoint; give a .pt or .safetensors file, a run folder, imagenet, "
                f"builtin:NAME ({known or 'none installed'}), or none"
            )
    model, meta = load_model(path)
    return Source(ref, meta, {k: v.detach().clone() for k, v in model.state_dict().items()})


def is_grey(modes: dict[str, int]) -> bool:
    """Most image files hold one channel (ISBI's EM slices read as RGB, say): not the colour photos the
    shipped segmentation models learnt from, and benchmarks/finetune.py measured scratch ahead there."""
    grey = sum(n for mode, n in modes.items() if mode in GREY_MODES)
    return grey * 2 > sum(modes.values())


def grey_segmentation(config: TrainConfig, modes: dict[str, int] | None) -> bool:
    """A segmentation run on grey images: auto starts it from scratch (click models keep theirs)."""
    return bool(modes) and is_grey(modes) and not config.clicks.interactive


def choose_init(config: TrainConfig, num_classes: int, modes: dict[str, int] | None = None) -> str:
    """The init reference a run uses: `config.finetune.init`, or for "auto" a shipped model that fits
    (same image channels, same kind of model, colour images unless it is a click model, and the user
    did not ask for another network). `modes`: the data check's count of image file modes."""
    ref = config.finetune.init
    if ref != "auto":
        return ref
    if config.data.root is None and config.data.csv is None:
        return "none"  # demo data
    if grey_segmentation(config, modes):
        return "none"
    net, default = config.model, NetConfig()
    asked = (net.widths, net.upsampling, net.dropout, net.encoder)
    if asked != (default.widths, default.upsampling, default.dropout, default.encoder):
        return "none"
    for b in builtin.available():
        if b.fits(config.data.in_channels, config.clicks.interactive, num_classes):
            return b.ref
    return "none"


def start_from(
    config: TrainConfig, num_classes: int, log, modes: dict[str, int] | None = None
) -> tuple[TrainConfig, Source | None]:
    """(config with the init made concrete and the source's network, the source or None)."""
    ref = choose_init(config, num_classes, modes)
    picked = config.finetune.init == "auto"
    ft = dataclasses.replace(config.finetune, init=ref, encoder_lr_scale=encoder_scale(config.finetune))
    config = dataclasses.replace(config, finetune=ft)
    if ref == "none":
        if picked and grey_segmentation(config, modes):
            log(
                "init: from scratch (grey images: the shipped models learnt colour photos and started worse than "
                "scratch on grey data in benchmarks/finetune.py; --init builtin:objects tries one anyway)"
            )
        return config, None
    if ref == IMAGENET:
        return from_imagenet(config, picked, log), None
    source = load_source(ref)
    m = source.meta.model
    net = dataclasses.replace(
        config.model, widths=m.widths, upsampling=m.upsampling, norm=m.norm, dropout=m.dropout, encoder=m.encoder
    )
    why = " (picked for this data; --init none trains from scratch)" if picked else ""
    ft = config.finetune
    encoder = f"; encoder lr x{ft.encoder_lr_scale:g}" if ft.encoder_lr_scale != 1 else ""
    if ft.freeze_encoder_epochs:
        encoder += f"; encoder frozen for the first {ft.freeze_encoder_epochs} epoch(s)"
    net_text = f"{m.encoder} encoder, decoder widths" if m.encoder != "unet" else "network widths"
    log(f"init: starting from {ref}{why}: {net_text} {list(m.widths)}, {m.upsampling} up, {m.norm} norm{encoder}")
    return dataclasses.replace(config, model=net), source


def from_imagenet(config: TrainConfig, picked: bool, log) -> TrainConfig:
    """`--init imagenet`: no trained model, but the ImageNet EfficientNet-Lite0 encoder under a small
    decoder (the shipped models' widths unless --widths was given); its first kernels adapt to the
    data's channels as a source's do."""
    net, default = config.model, NetConfig()
    widths = IMAGENET_WIDTHS if net.widths == default.widths else net.widths
    model = dataclasses.replace(net, encoder=IMAGENET_ENCODER, encoder_weights="imagenet", widths=widths)
    why = " (picked for this data: it trained better than the shipped models here; --init none: from scratch)"
    log(f"init: starting from the ImageNet {IMAGENET_ENCODER} encoder{why if picked else ''}: decoder widths "
        f"{list(widths)}, random decoder")  # fmt: skip
    return dataclasses.replace(config, model=model)


def adapt_first_conv(weight: torch.Tensor, source: Source, image: int, extra: int) -> tuple[torch.Tensor, str]:
    """The source's first kernel (out, src_image + src_extra, k, k) for `image` + `extra` input channels."""
    si, se = source.image_channels, source.extra_channels
    out = torch.zeros(weight.shape[0], image + extra, *weight.shape[2:], dtype=weight.dtype)
    src_image, src_extra = weight[:, :si], weight[:, si:]
    if image == si:
        out[:, :image] = src_image
        note = f"{image} image channels copied"
    elif image == 1:
        out[:, :1] = src_image.sum(1, keepdim=True)
        note = f"1 image channel from the sum of the source's {si}"
    else:
        n = min(si, image)
        out[:, :n] = src_image[:, :n]
        note = f"{n} of {image} image channels copied" + (f", {image - n} new at zero" if image > n else "")
    if extra and se == extra:
        out[:, image:] = src_extra
        note += f", {extra} click channels copied"
    elif extra:
        note += f", {extra} click channels new at zero"
    elif se:
        note += f", the source's {se} click channels dropped"
    return out, "first conv: " + note


def transfer(model: torch.nn.Module, source: Source, image_channels: int, extra_channels: int = 0) -> Transfer:
    """Load what fits of `source` into `model` in place; return what was loaded and what was not."""
    target = model.state_dict()
    params = dict(model.named_parameters())
    first = next(name for name, p in params.items() if p.ndim == 4)
    report = Transfer(source.ref, params_total=sum(p.numel() for p in params.values()))
    new = {}
    for name, t in target.items():
        s = source.state.get(name)
        if s is not None and s.shape == t.shape:
            new[name] = s
            report.loaded.append(name)
        elif name == first and s is not None and s.shape[0] == t.shape[0] and s.shape[2:] == t.shape[2:]:
            new[name], note = adapt_first_conv(s, source, image_channels, extra_channels)
            report.adapted.append(name)
            report.notes.append(note)
        else:
            report.fresh.append(name if s is None else f"{name} ({_shape(s)} -> {_shape(t)})")
            continue
        if name in params:
            report.params_loaded += t.numel()
    model.load_state_dict({**target, **new})
    return report


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape)


def zero_shot(source: Source, config: TrainConfig, checked, max_images: int = 32) -> float | None:
    """The source's score on this data's validation split as it is (binary: foreground IoU, else
    mean IoU; at most `max_images`), or None when it cannot be scored as it is: other input channels,
    other classes, or a click model. `checked` is datacheck.check_dataset's (report, splits, spec).
    Planning uses it to tell the source's own task (keep its scale) from a new one."""
    report, splits, spec = checked
    same_io = source.image_channels == config.data.in_channels and not source.meta.interactive
    if not same_io or len(source.meta.classes) != spec.num_classes:
        return None
    pairs = [p for p in splits.get("val", []) if str(p.image) not in report.bad_pairs][:max_images]
    if not pairs:
        return None
    model = build_model(source.meta, source.state, source.ref).eval()
    seg = Segmenter(model, source.meta, setup("cpu", "fp32", channels_last=False))
    s = evaluate(seg, SegmentationDataset(pairs, spec, config.data.in_channels, None, dtype=torch.float32)).scores
    return s["classes"][1]["iou"] if spec.num_classes == 2 else s["mean_iou"]
