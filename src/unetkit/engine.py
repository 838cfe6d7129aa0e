"""The one training loop: prepare data, train_one_epoch, evaluate, fit. Every command calls it."""

from __future__ import annotations

import csv
import dataclasses
import gc
import json
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from unetkit import checkpoint, plots
from unetkit.config import ConfigError, TrainConfig, build, merge, parse_duration, to_dict
from unetkit.data import (
    Pair,
    RandomCropDataset,
    SampleCache,
    SegmentationDataset,
    channel_stats,
    check_dataset,
    class_names,
    class_pixel_counts,
    read_splits,
    write_splits,
)
from unetkit.demo import write_demo
from unetkit.imageio import DataError, MaskSpec
from unetkit.inference import InferenceSpec, inference_spec_from, logits_to_pred, predict_logits, tta_flips_for
from unetkit.losses import make_loss, median_frequency_weights
from unetkit.metrics import confusion_matrix, headline, scores
from unetkit.model import UNet
from unetkit.runtime import Runtime, setup, step_seed
from unetkit.transforms import augment, normalize


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the message says where and what to try."""


class Log:
    """Prints a line and appends it to the run's log file (rank 0 only)."""

    def __init__(self, path: Path | None, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        tqdm.write(msg, file=sys.stdout)
        if self.path:
            with self.path.open("a") as f:
                f.write(msg + "\n")


# ----------------------------------------------------------------------------------------------
# Data


@dataclass
class Prepared:
    config: TrainConfig  # with data.root filled in for demo runs
    splits: dict[str, list[Pair]]
    spec: MaskSpec
    classes: tuple[str, ...]
    train: torch.utils.data.Dataset
    val: SegmentationDataset
    mean: list[float]
    std: list[float]
    skipped: list[str] = field(default_factory=list)


def demo_config(config: TrainConfig, run_dir: Path) -> TrainConfig:
    """No data given: generate the demo set inside the run folder (once) and point the config at it."""
    root = run_dir / "demo_data"
    if not (root / "train").is_dir():
        write_demo(root, seed=config.seed)
    return dataclasses.replace(config, data=dataclasses.replace(config.data, root=str(root)))


def prepare_data(config: TrainConfig, run_dir: Path, log: Log, splits_file: Path | None = None) -> Prepared:
    """Check every pair (refusing bad data unless skip_bad), fix the splits, build cached datasets."""
    dc = config.data
    report, splits, spec = check_dataset(dc)
    skipped: list[str] = []
    if report.problems:
        if not dc.skip_bad:
            raise DataError(
                "the data check found problems; fix them or pass --skip_bad true to train without "
                "those pairs:\n" + "\n".join(f"  {p}" for p in report.problems)
            )
        skipped = sorted(report.bad_pairs)
        splits = {s: [p for p in ps if str(p.image) not in report.bad_pairs] for s, ps in splits.items()}
        log(f"skipping {len(skipped)} bad pair(s): " + ", ".join(Path(s).name for s in skipped))
    if splits_file is not None and splits_file.is_file():
        splits = read_splits(splits_file)  # a resumed run keeps its original split
    classes = class_names(dc, spec)
    cache_dir = run_dir / "cache" if dc.cache == "disk" else None
    cache = SampleCache(dc.cache, cache_dir)
    size = tuple(dc.size)
    train_base = SegmentationDataset(
        splits["train"], spec, dc.in_channels, size if dc.resize == "resize" else None, cache
    )
    train = train_base if dc.resize == "resize" else RandomCropDataset(train_base, size, config.seed)
    val = SegmentationDataset(splits["val"], spec, dc.in_channels, None, cache)
    mean, std = channel_stats(train_base)
    config = with_class_weights(config, train_base, len(classes), log)
    config = resolve_norm(config, len(splits["train"]))
    return Prepared(config, splits, spec, classes, train, val, mean, std, skipped)


def with_class_weights(config: TrainConfig, train: SegmentationDataset, num_classes: int, log: Log) -> TrainConfig:
    """Fill loss.class_weights from the training masks when class_balance asks for it; the weights
    then live in config.json and the checkpoint, so a resumed run uses the same ones."""
    lc = config.loss
    balance = lc.class_balance
    if balance == "auto":
        balance = "median_freq" if num_classes > 2 else "none"
    if lc.class_weights or balance == "none":
        return config
    weights = median_frequency_weights(*class_pixel_counts(train, num_classes))
    rounded = tuple(round(float(w), 4) for w in weights)
    log("class weights (median frequency): " + ", ".join(f"{w:.2f}" for w in rounded))
    return dataclasses.replace(config, loss=dataclasses.replace(lc, class_weights=rounded))


def batches_for_epoch(
    n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1, drop_last: bool = True
) -> list[list[int]]:
    """The epoch's shuffled batches for this rank; the order depends only on (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 7919 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    per_rank = n // world if drop_last else math.ceil(n / world)
    mine = order[rank::world][:per_rank]
    if drop_last and len(mine) >= batch_size:
        mine = mine[: len(mine) - len(mine) % batch_size]
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]


# ----------------------------------------------------------------------------------------------
# Model, optimiser, schedule


SMALL_DATASET = 100  # training images below which norm "auto" means GroupNorm


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
    # "auto" is resolved from the data in prepare_data; without data (timing) it builds BatchNorm.
    return UNet(in_channels, out, m.widths, m.upsampling, "batch" if m.norm == "auto" else m.norm, m.dropout)


def build_training(config: TrainConfig, rt: Runtime, num_classes: int):
    """(model on the device, optimizer, grad scaler, loss function) for a config: what every
    training entry point (fit, autoconfig's timing, benchmarks) builds the same way."""
    model = build_model(config, config.data.in_channels, num_classes).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, model)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.precision == "fp16")
    return model, optimizer, scaler, make_loss(config.loss, num_classes)


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = config.optim
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if o.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=True)
    if o.optimizer == "adam":
        return torch.optim.Adam(groups, lr=o.lr)
    return torch.optim.AdamW(groups, lr=o.lr)


def lr_at(step: int, total: int, warmup: int, base: float, schedule: str) -> float:
    """Learning rate for a global step: linear warmup, then cosine / poly(0.9) decay or constant."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return base
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * t))
    return base * (1 - t) ** 0.9


# ----------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class EvalResult:
    cm: torch.Tensor
    loss: float
    per_image: list[dict]
    scores: dict


def _size_groups(dataset: SegmentationDataset, indices: list[int], batch_size: int) -> list[list[int]]:
    by_size: dict[tuple, list[int]] = {}
    for i in indices:
        by_size.setdefault(tuple(dataset[i][1].shape), []).append(i)
    return [ids[j : j + batch_size] for ids in by_size.values() for j in range(0, len(ids), batch_size)]


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: SegmentationDataset,
    spec: InferenceSpec,
    rt: Runtime,
    classes: tuple[str, ...],
    loss_fn=None,
    batch_size: int = 4,
    tta: bool = False,
    per_image: bool = False,
    on_batch=None,
    postprocess=None,
) -> EvalResult:
    """Metrics at each mask's original resolution, from one confusion matrix over the whole set.

    `postprocess` maps one predicted label map (numpy) to another, so evaluation scores what
    `predict --largest-component/--fill-holes` writes. Under torchrun each rank evaluates its
    share and the counts are summed, so the result equals a single process on the same data."""
    model.eval()
    k = len(classes)
    cm = torch.zeros(k, k, dtype=torch.int64)
    loss_sum, loss_n = 0.0, 0
    rows = []
    indices = list(range(rt.rank, len(dataset), rt.world_size))
    for group in _size_groups(dataset, indices, batch_size):
        items = [dataset[i] for i in group]
        images = torch.stack([im for im, _ in items]).float()
        masks = torch.stack([m for _, m in items]).long()
        logits = predict_logits(model, images, spec, rt, tta)
        target = masks.to(logits.device)
        if loss_fn is not None:
            loss_sum += float(loss_fn(logits, target)) * len(group)
            loss_n += len(group)
        pred = logits_to_pred(logits, spec.binary, spec.threshold)
        if postprocess is not None:
            pred = torch.stack([torch.from_numpy(postprocess(p.cpu().numpy())) for p in pred]).to(pred.device)
        for j, i in enumerate(group):
            one = confusion_matrix(pred[j], target[j], k)
            cm += one
            if per_image:
                s = scores(one, classes)
                rows.append(
                    {
                        "index": i,
                        "image": str(dataset.pairs[i].image),
                        "mean_iou": s["mean_iou"],
                        "mean_dice": s["mean_dice"],
                        "fg_dice": s["mean_dice_fg"],
                        "pixel_accuracy": s["pixel_accuracy"],
                    }
                )
        if on_batch:
            on_batch(len(group))
    if rt.distributed:
        import torch.distributed as dist

        t = torch.tensor([loss_sum, float(loss_n)], dtype=torch.float64)
        cm_d = cm.to(rt.device) if rt.device.type == "cuda" else cm
        t_d = t.to(rt.device) if rt.device.type == "cuda" else t
        dist.all_reduce(cm_d)
        dist.all_reduce(t_d)
        cm, (loss_sum, loss_n) = cm_d.cpu(), t_d.cpu().tolist()
    return EvalResult(cm, loss_sum / max(1, loss_n), rows, scores(cm, classes))


# ----------------------------------------------------------------------------------------------
# Checkpoint payloads


def inference_meta(prep: Prepared, config: TrainConfig, model: UNet) -> dict:
    spec = prep.spec
    return {
        "model_config": model.config.to_dict(),
        "classes": list(prep.classes),
        "mask_spec": {
            "mode": spec.mode,
            "num_classes": spec.num_classes,
            "ignore_value": spec.ignore_value,
            "colors": [list(c) for c in spec.colors],
        },
        "normalization": {"mean": prep.mean, "std": prep.std},
        "input": {
            "resize": config.data.resize,
            "size": list(config.data.size),
            "in_channels": config.data.in_channels,
        },
        "threshold": config.threshold,
        "tta_flips": list(tta_flips_for(config.augment.hflip, config.augment.vflip, config.augment.rot90)),
        "versions": checkpoint.versions(),
    }


def _unwrap(model: torch.nn.Module) -> UNet:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


# ----------------------------------------------------------------------------------------------
# fit


@dataclass
class FitResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_score: float
    epochs_done: int
    steps: int
    stopped: str  # completed | early_stopping | max_steps | time_limit | interrupted
    history: list[dict]
    model: torch.nn.Module | None = field(default=None, repr=False)  # the trained network (this rank's)


METRIC_FIELDS = [
    "epoch",
    "step",
    "train_loss",
    "val_loss",
    "val_dice",
    "val_iou",
    "val_accuracy",
    "lr",
    "seconds",
    "images_per_s",
    "data_fraction",
    "val_seconds",
]


def default_run_dir() -> Path:
    return Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")


def fit(
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    overrides: dict | None = None,
) -> FitResult:
    """Train a U-Net. `resume` continues a run folder from its last checkpoint (its saved config,
    with `overrides` on top, e.g. more epochs)."""
    start_time = time.monotonic()
    state_payload = None
    if resume is not None:
        run_dir = Path(resume)
        last = run_dir / "checkpoints" / "last.pt"
        state_payload = checkpoint.load(last)
        config = build(TrainConfig, merge(state_payload["train_config"], overrides or {}))
    else:
        config = config or TrainConfig()
        run_dir = Path(out) if out else default_run_dir()
    rt = setup(config.device, config.precision, config.channels_last, config.deterministic)
    if rt.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "checkpoints").mkdir(exist_ok=True)
    log = Log(run_dir / "train.log" if rt.is_main else None, rt.is_main)
    if config.data.root is None and config.data.csv is None:
        if rt.distributed:
            _barrier_after_main(rt, lambda: demo_config(config, run_dir))
        config = demo_config(config, run_dir)
    prep = prepare_data(config, run_dir, log, run_dir / "splits.json" if resume else None)
    config = prep.config
    if rt.is_main:
        write_splits(prep.splits, run_dir / "splits.json")
        write_config(config, rt, run_dir)
    num_classes = len(prep.classes)
    binary = num_classes == 2
    torch.manual_seed(config.seed)
    model, optimizer, scaler, loss_fn = build_training(config, rt, num_classes)
    meta = inference_meta(prep, config, model)
    ispec = inference_spec_from(meta)

    epoch, batch_in_epoch, step, best, bad_epochs, history = 0, 0, 0, -math.inf, 0, []
    if state_payload is not None:
        model.load_state_dict(state_payload["state_dict"])
        optimizer.load_state_dict(state_payload["optimizer"])
        if state_payload.get("scaler"):
            scaler.load_state_dict(state_payload["scaler"])
        t = state_payload["train_state"]
        epoch, batch_in_epoch, step = t["epoch"], t["batch_in_epoch"], t["step"]
        best, bad_epochs, history = t["best_score"], t["bad_epochs"], t["history"]
        log(f"resuming {run_dir} at epoch {epoch + 1}, batch {batch_in_epoch}, step {step}")

    train_model: torch.nn.Module = model
    if rt.distributed:
        if config.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None
        )
    if config.compile:
        train_model = torch.compile(train_model)

    n_train = len(prep.train)
    steps_per_epoch = len(batches_for_epoch(n_train, config.batch_size, config.seed, 0, rt.rank, rt.world_size))
    if steps_per_epoch == 0:
        raise DataError(
            f"{n_train} training pairs are fewer than one batch of {config.batch_size}; lower --batch_size or add data"
        )
    total_steps = schedule_steps(config, steps_per_epoch)
    warmup = int(config.optim.warmup_epochs * steps_per_epoch)
    time_limit = parse_duration(config.time_limit)

    log(f"run folder: {run_dir}")
    log(
        f"data: {config.data.root or config.data.csv}: train {len(prep.splits['train'])}, "
        f"val {len(prep.splits['val'])}, test {len(prep.splits['test'])} pairs; classes: {', '.join(prep.classes)}"
    )
    log(
        f"model: widths {list(config.model.widths)}, {sum(p.numel() for p in model.parameters()):,} parameters; "
        f"{rt.describe()}; {steps_per_epoch} steps/epoch, {total_steps} steps"
    )

    board = open_tensorboard(run_dir) if config.tensorboard and rt.is_main else None
    stop_reason = ""
    lr = lr_at(step, total_steps, warmup, config.optim.lr, config.optim.schedule)
    interrupted = {"flag": False}

    def on_sigint(signum, frame):
        if interrupted["flag"]:
            raise KeyboardInterrupt
        interrupted["flag"] = True
        log("interrupt: finishing the current step, then saving (press Ctrl-C again to abort)")

    old_handler = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None

    def save_last(ep: int, batch: int) -> None:
        if not rt.is_main:
            return
        payload = {
            **meta,
            "state_dict": _unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "train_config": to_dict(config),
            "train_state": {
                "epoch": ep,
                "batch_in_epoch": batch,
                "step": step,
                "best_score": best,
                "bad_epochs": bad_epochs,
                "history": history,
            },
            "rng": {"torch": torch.get_rng_state()},
        }
        checkpoint.save(payload, run_dir / "checkpoints" / "last.pt")

    # fill_time_limit: the end of epoch 1 (which also fills caches) starts the clock; the next
    # val_every epochs (one validation among them) give the wall time per epoch.
    replan = config.fill_time_limit and bool(time_limit) and state_payload is None
    epoch1_end = 0.0
    try:
        while epoch < config.epochs and not stop_reason:
            if replan and epoch == 1:
                epoch1_end = time.monotonic()
            elif replan and epoch == 1 + config.val_every:
                replan = False
                now = time.monotonic()
                per_epoch = (now - epoch1_end) / config.val_every
                epochs = _min_over_ranks(rt, epochs_to_fill(time_limit, now - start_time, epoch, per_epoch))
                if epochs != config.epochs:
                    log(
                        f"time limit: epochs take {per_epoch:.1f}s; {config.epochs} -> {epochs} epochs so the "
                        f"schedule ends by the {time_limit:.0f}s limit"
                    )
                    config = dataclasses.replace(config, epochs=epochs)
                    total_steps = schedule_steps(config, steps_per_epoch)
                    if rt.is_main:
                        write_config(config, rt, run_dir)
            if isinstance(prep.train, RandomCropDataset):
                prep.train.set_epoch(epoch)
            batches = batches_for_epoch(n_train, config.batch_size, config.seed, epoch, rt.rank, rt.world_size)
            t0 = time.monotonic()
            loss_sum, loss_n, images_seen, data_time = 0.0, 0, 0, 0.0
            train_model.train()
            bar = tqdm(
                total=len(batches),
                initial=batch_in_epoch,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                disable=not rt.is_main or not sys.stdout.isatty(),
                leave=False,
                dynamic_ncols=True,
            )
            plain_every = max(1, len(batches) // 4)
            for b in range(batch_in_epoch, len(batches)):
                lr = lr_at(step, total_steps, warmup, config.optim.lr, config.optim.schedule)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                seed = step_seed(config.seed, epoch, b)
                t_data = time.perf_counter()
                x, target = load_batch(prep.train, batches[b], config, rt, prep.mean, prep.std, seed)
                data_time += time.perf_counter() - t_data
                loss = optimize(train_model, x, target, config, rt, optimizer, scaler, loss_fn, seed)
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss} at epoch {epoch + 1}, step {step + 1}; training stopped so it "
                        "does not go on with garbage. Lower --lr, set --grad_clip 1, or try --precision fp32"
                    )
                step += 1
                batch_in_epoch = b + 1
                loss_sum += loss
                loss_n += 1
                images_seen += len(batches[b]) * rt.world_size
                elapsed = time.monotonic() - t0
                bar.set_postfix(loss=f"{loss_sum / loss_n:.4f}", img_s=f"{images_seen / max(elapsed, 1e-9):.1f}")
                bar.update(1)
                if bar.disable and rt.is_main and (b + 1) % plain_every == 0 and b + 1 < len(batches):
                    log(
                        f"  epoch {epoch + 1} step {b + 1}/{len(batches)} loss {loss_sum / loss_n:.4f} "
                        f"{images_seen / max(elapsed, 1e-9):.1f} img/s"
                    )
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    save_last(epoch, batch_in_epoch)
                if interrupted["flag"]:
                    stop_reason = "interrupted"
                elif config.max_steps and step >= config.max_steps:
                    stop_reason = "max_steps"
                elif time_limit and time.monotonic() - start_time >= time_limit:
                    stop_reason = "time_limit"
                if _any_rank(rt, bool(stop_reason)):
                    stop_reason = stop_reason or "peer"
                    break
            bar.close()
            train_time = time.monotonic() - t0
            sync_buffers(model, rt)
            if stop_reason == "interrupted" and batch_in_epoch < len(batches):
                save_last(epoch, batch_in_epoch)
                break
            # The epoch is over (or a limit cut it short): validate, record, checkpoint; with
            # val_every > 1 only every val_every-th epoch (and the last) does, to save time on tiny epochs.
            last_epoch = bool(stop_reason) or epoch + 1 >= config.epochs
            if not last_epoch and (epoch + 1) % config.val_every:
                epoch += 1
                batch_in_epoch = 0
                continue
            row = {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": loss_sum / max(1, loss_n),
                "lr": lr,
                "seconds": round(train_time, 2),
                "images_per_s": round(images_seen / max(train_time, 1e-9), 2),
                "data_fraction": round(data_time / max(train_time, 1e-9), 4),
            }
            t_val = time.monotonic()
            if len(prep.val):
                ev = evaluate(model, prep.val, ispec, rt, prep.classes, loss_fn, batch_size=config.batch_size)
                s = ev.scores
                row.update(
                    val_loss=ev.loss,
                    val_dice=s["mean_dice_fg"] if binary else s["mean_dice"],
                    val_iou=s["mean_iou_fg"] if binary else s["mean_iou"],
                    val_accuracy=s["pixel_accuracy"],
                )
                score = headline(s, binary)
            else:
                row.update(
                    val_loss=float("nan"),
                    val_dice=float("nan"),
                    val_iou=float("nan"),
                    val_accuracy=float("nan"),
                )
                score = -row["train_loss"]
            row["val_seconds"] = round(time.monotonic() - t_val, 2)
            history.append(row)
            improved = score > best
            if improved:
                best, bad_epochs = score, 0
            else:
                bad_epochs += 1
            epoch += 1
            batch_in_epoch = 0
            if rt.is_main:
                log(
                    f"epoch {row['epoch']}/{config.epochs}  train_loss {row['train_loss']:.4f}  "
                    f"val_loss {row['val_loss']:.4f}  dice {row['val_dice']:.4f}  iou {row['val_iou']:.4f}  "
                    f"lr {lr:.2e}  {train_time:.1f}s  {row['images_per_s']:.1f} img/s  data {row['data_fraction']:.0%}"
                    + ("  *" if improved else "")
                )
                save_last(epoch, 0)  # first, so a kill in what follows loses nothing
                if board is not None:
                    for key in ("train_loss", "val_loss", "val_dice", "val_iou", "val_accuracy", "lr", "images_per_s"):
                        board.add_scalar(key, row[key], epoch)
                    board.flush()
                write_metrics(history, run_dir / "metrics.csv")
                plots.curves(history, run_dir / "curves.png")
                if config.sample_every and len(prep.val) and (epoch % config.sample_every == 0 or epoch == 1):
                    sample_grid(model, prep, ispec, rt, run_dir / "samples" / f"epoch_{epoch:03d}.png")
                if improved:
                    checkpoint.save(
                        {
                            **meta,
                            "state_dict": _unwrap(model).state_dict(),
                            "train_config": to_dict(config),
                            "train_state": {"epoch": epoch, "step": step, "best_score": best},
                        },
                        run_dir / "checkpoints" / "best.pt",
                    )
            if config.patience and bad_epochs >= config.patience and not stop_reason:
                stop_reason = "early_stopping"
                log(f"early stopping: no improvement for {config.patience} epochs")
    finally:
        if board is not None:
            board.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    stop_reason = stop_reason or "completed"
    if stop_reason == "interrupted" and rt.is_main:
        log(
            f"interrupted; saved {run_dir / 'checkpoints' / 'last.pt'}. Resume with:\n"
            f"  unetkit train --resume {run_dir}"
        )
    result = FitResult(
        run_dir,
        run_dir / "checkpoints" / "best.pt",
        run_dir / "checkpoints" / "last.pt",
        best,
        epoch,
        step,
        stop_reason,
        history,
        _unwrap(model),
    )
    if rt.distributed:
        import torch.distributed as dist

        # Free the DDP wrapper now: its reducer holds the process group and gloo work objects, and
        # left to a later garbage collection (a library's cached traceback can keep this frame alive)
        # it may be torn down at interpreter exit, where gloo aborts the process.
        del train_model
        gc.collect()
        dist.barrier()  # rank 0 has written its checkpoints before anyone returns
    if rt.is_main and stop_reason != "interrupted":
        log(f"done ({stop_reason}) in {time.monotonic() - start_time:.0f}s; best val score {best:.4f}")
        log(f"best checkpoint: {result.best_checkpoint}\nplots: {run_dir / 'curves.png'}, {run_dir / 'samples'}")
    return result


def open_tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "tensorboard: the tensorboard package is not installed; pip install 'unetkit[tensorboard]' "
            "or leave --tensorboard off"
        ) from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def load_batch(dataset, batch: list[int], config: TrainConfig, rt: Runtime, mean, std, seed: int):
    """Cached samples -> augmented, normalised (x, target) on the device; seeded by the step."""
    items = [dataset[i] for i in batch]
    # Stack on the CPU, move the compact (half / uint8) tensors, then augment on the device.
    images = torch.stack([im for im, _ in items]).to(rt.device, non_blocking=True).float()  # (N, C, H, W)
    masks = torch.stack([m for _, m in items]).to(rt.device, non_blocking=True).long()  # (N, H, W)
    images, masks = augment(images, masks, config.augment, torch.Generator().manual_seed(seed))
    x = normalize(images, mean, std)
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, masks


def optimize(model, x, target, config: TrainConfig, rt: Runtime, optimizer, scaler, loss_fn, seed: int) -> float:
    """One optimisation step; dropout seeded by the step's position so resumed runs replay it."""
    torch.manual_seed(seed)
    with rt.autocast():
        logits = model(x)  # (N, K, H, W)
    loss = loss_fn(logits, target)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if config.optim.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


def write_metrics(history: list[dict], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        w.writeheader()
        for row in history:
            w.writerow({k: row.get(k) for k in METRIC_FIELDS})
    tmp.replace(path)


def sample_grid(model, prep: Prepared, ispec: InferenceSpec, rt: Runtime, path: Path, n: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(min(n, len(prep.val))):
        image, mask = prep.val[i]
        logits = predict_logits(model, image[None].float(), ispec, rt)
        pred = logits_to_pred(logits, ispec.binary, ispec.threshold)[0].cpu()
        samples.append((plots.to_rgb_uint8(image), mask.numpy(), pred.numpy()))
    plots.grid(samples, len(prep.classes), path)


def sync_buffers(model: torch.nn.Module, rt: Runtime) -> None:
    """Give every rank rank 0's BatchNorm running statistics, so all ranks evaluate and save the
    same model (DDP syncs gradients, and buffers only at the start of each forward)."""
    if not rt.distributed:
        return
    import torch.distributed as dist

    for buf in model.buffers():
        dist.broadcast(buf.data, 0)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def schedule_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Steps the LR schedule spans: all epochs, or max_steps when that comes first."""
    total = steps_per_epoch * config.epochs
    return min(total, config.max_steps) if config.max_steps else total


def epochs_to_fill(limit_s: float, elapsed_s: float, epochs_done: int, epoch_s: float, share: float = 0.97) -> int:
    """Total epochs that end by `share` of the time limit, given the seconds one epoch takes
    (the rest of the limit is slack for the last save). At least one more epoch."""
    left = share * limit_s - elapsed_s
    return epochs_done + max(1, int(left // max(epoch_s, 1e-9)))


def write_config(config: TrainConfig, rt: Runtime, run_dir: Path) -> None:
    """RUN/config.json: the resolved config a run trains with, plus where it ran."""
    resolved = to_dict(config)
    resolved["runtime"] = {
        "device": str(rt.device),
        "precision": rt.precision,
        "channels_last": rt.channels_last,
        "world_size": rt.world_size,
    }
    (run_dir / "config.json").write_text(json.dumps(resolved, indent=2))


def _min_over_ranks(rt: Runtime, value: int) -> int:
    """The smallest of every rank's `value`, so all ranks agree on a decision made from timings."""
    if not rt.distributed:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], device=rt.device if rt.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def _any_rank(rt: Runtime, flag: bool) -> bool:
    """True if any rank wants to stop, so all ranks leave the loop at the same step."""
    if not rt.distributed:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=rt.device if rt.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return bool(t.item() > 0)


def _barrier_after_main(rt: Runtime, fn) -> None:
    import torch.distributed as dist

    if rt.is_main:
        fn()
    dist.barrier()
