"""Click-guided training on the user's own masks (RITM's scheme), plugged into `fit` as a Task.

Each sample becomes one object: all of the foreground, or one connected region of one class. Some
samples are cropped around their object at a random scale, so small objects are seen at a useful
resolution. Initial clicks are sampled inside the object (and sometimes outside); then 0..click_iters
corrective clicks are placed on the model's own current errors, computed without gradients, with the
previous prediction fed back. A share of samples get no clicks at all: the automatic prediction."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from unetkit.config import ClickConfig, TrainConfig
from unetkit.data.imageio import IGNORE
from unetkit.data.transforms import augment, normalize
from unetkit.infer.inference import decode, foreground
from unetkit.interactive.clicks import Click, View, click_maps, sample_click
from unetkit.interactive.composites import paste_objects
from unetkit.interactive.evaluate import object_and_ignore, simulate
from unetkit.interactive.predictor import ClickPredictor
from unetkit.runtime import Runtime

MIN_OBJECT_PIXELS = 16
NEGATIVE_BAND = 40  # px: initial negative clicks land this close to the object
ERROR_THRESHOLD = 0.5  # training's corrective clicks go where the model's probability is wrong by this rule


def pick_object(mask: np.ndarray, rng: np.random.Generator, whole_share: float) -> np.ndarray | None:
    """(h, w) class indices (IGNORE = unknown) -> one object's boolean mask, or None if there is none."""
    from scipy import ndimage  # here, not at the top: only the commands that need it pay its import

    classes = [c for c in np.unique(mask) if c not in (0, IGNORE)]
    if not classes:
        return None
    region = mask == classes[rng.integers(len(classes))]
    if len(classes) == 1 and rng.random() < whole_share:
        return region
    labels, n = ndimage.label(region)
    sizes = np.bincount(labels.ravel())[1:]
    big = np.nonzero(sizes >= MIN_OBJECT_PIXELS)[0]
    if len(big) == 0:
        return region
    k = big[rng.choice(len(big), p=sizes[big] / sizes[big].sum())]
    return labels == k + 1


def zoom_box(obj: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box around the object, 1.4x to 3x its extent (square-ish, at least 32 px), inside the image."""
    h, w = obj.shape
    ys, xs = np.nonzero(obj)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    scale = rng.uniform(1.4, 3.0)
    side = max(32.0, (ys.max() - ys.min() + 1) * scale, (xs.max() - xs.min() + 1) * scale)
    bh, bw = min(h, side), min(w, side)
    y0 = int(np.clip(cy - bh / 2 + rng.uniform(-0.1, 0.1) * bh, 0, h - bh))
    x0 = int(np.clip(cx - bw / 2 + rng.uniform(-0.1, 0.1) * bw, 0, w - bw))
    return y0, x0, y0 + int(bh), x0 + int(bw)


def crop_resize(image: torch.Tensor, target: torch.Tensor, box) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut the box out of image (C, h, w) and target (h, w) and resize both back to (h, w)."""
    h, w = target.shape
    y0, x0, y1, x1 = box
    img = F.interpolate(image[None, :, y0:y1, x0:x1], size=(h, w), mode="bilinear", align_corners=False)[0]
    tgt = F.interpolate(target[None, None, y0:y1, x0:x1].float(), size=(h, w), mode="nearest")[0, 0]
    return img, tgt.long()


def initial_clicks(obj: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> list[Click]:
    """One positive click well inside the object, sometimes a second, sometimes a negative nearby."""
    from scipy import ndimage  # here, not at the top: only the commands that need it pay its import

    clicks = [sample_click(obj, rng, True)]
    if rng.random() < 0.3:
        clicks.append(sample_click(obj, rng, True))
    if rng.random() < 0.3:
        near = ndimage.distance_transform_edt(~obj) <= NEGATIVE_BAND
        band = near & ~obj & valid
        if band.any():
            clicks.append(sample_click(band, rng, False))
    return [c for c in clicks if c is not None]


def make_sample(image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator, cc: ClickConfig):
    """One training sample -> (image, binary target with IGNORE, clicks, automatic?)."""
    m = mask.numpy()
    valid = m != IGNORE
    obj = None if rng.random() < cc.auto_share else pick_object(m, rng, cc.whole_share)
    if obj is None:  # the automatic prediction: everything that is not background, no clicks
        target = torch.from_numpy(((m > 0) & valid).astype(np.int64))
        target[~torch.from_numpy(valid)] = IGNORE
        return image, target, [], True
    target = torch.from_numpy(obj.astype(np.int64))
    target[~torch.from_numpy(valid)] = IGNORE
    if rng.random() < cc.zoom_share:
        image, target = crop_resize(image, target, zoom_box(obj, rng))
        obj, valid = (target == 1).numpy(), (target != IGNORE).numpy()
        if not obj.any():
            return image, target, [], True
    return image, target, initial_clicks(obj, valid, rng), False


def corrective_click(probs: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> Click | None:
    """A click on the larger of the current false-negative and false-positive regions."""
    from scipy import ndimage  # here, not at the top: only the commands that need it pay its import

    gt, valid = target == 1, target != IGNORE
    pred = foreground(probs, ERROR_THRESHOLD)
    fn, fp = gt & ~pred & valid, ~gt & pred & valid
    if not fn.any() and not fp.any():
        return None
    fn_max = ndimage.distance_transform_edt(np.pad(fn, 1)).max()
    fp_max = ndimage.distance_transform_edt(np.pad(fp, 1)).max()
    return sample_click(fn, rng, True) if fn_max > fp_max else sample_click(fp, rng, False)


def assemble(x_img: torch.Tensor, clicks: list[list[Click]], prev: torch.Tensor, radius: float) -> torch.Tensor:
    """Normalised images (N, C, h, w) + click disks + previous mask -> the network's (N, C+3, h, w)."""
    h, w = x_img.shape[-2:]
    view = View.whole(h, w)
    maps = torch.stack([click_maps(c, view, radius) for c in clicks]).to(x_img.device)
    return torch.cat([x_img, maps, prev.to(x_img.device)], 1)


@torch.no_grad()
def model_probs(model, x: torch.Tensor, rt: Runtime) -> torch.Tensor:
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with rt.autocast():
        return decode(model(x).float(), True)[0]


def click_batch_fn(config: TrainConfig, rt: Runtime, mean, std):
    """The Task's batch preparation: augment, one object per sample, clicks, RITM's iterative clicks."""
    cc = config.clicks

    def prepare(images: torch.Tensor, masks: torch.Tensor, seed: int, model=None):
        g, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
        images, masks = augment(images.float(), masks.long(), config.augment, g)
        images, masks = paste_objects(images, masks, rng, cc.composites, cc.composite_objects)
        samples = [make_sample(im, m, rng, cc) for im, m in zip(images, masks, strict=True)]
        x_img = normalize(torch.stack([s[0] for s in samples]).to(rt.device), mean, std)
        targets = torch.stack([s[1] for s in samples])
        clicks = [s[2] for s in samples]
        prev = torch.zeros(len(samples), 1, *x_img.shape[-2:])
        iters = int(rng.integers(0, cc.click_iters + 1)) if model is not None else 0
        if iters:
            was_training = model.training
            model.eval()
            for _ in range(iters):
                probs = model_probs(model, assemble(x_img, clicks, prev, cc.click_radius), rt).cpu()
                for i, (s, p) in enumerate(zip(samples, probs, strict=True)):
                    click = None if s[3] else corrective_click(p[0].numpy(), targets[i].numpy(), rng)
                    if click is not None:
                        clicks[i] = [*clicks[i], click]
                if cc.prev_mask:
                    prev = probs * torch.tensor([0.0 if s[3] else 1.0 for s in samples]).view(-1, 1, 1, 1)
            model.train(was_training)
        x = assemble(x_img, clicks, prev, cc.click_radius)
        if rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, targets.to(rt.device)

    return prepare


def click_validate(seg, val, loss_fn, config: TrainConfig) -> tuple[dict, float]:
    """Mean IoU over the first `val_clicks` clicks of the evaluation protocol, on the validation
    images' whole foreground (the best checkpoint is the one that gets there in fewest clicks)."""
    predictor = ClickPredictor(seg)
    k = config.clicks.val_clicks
    per_click = np.zeros(k)
    n = 0
    for i in range(len(val)):
        image, mask = val[i]
        gt, ignore = object_and_ignore(mask)
        if not gt.any():
            continue
        ious, _ = simulate(predictor, image, gt, ignore, k)
        per_click += ious
        n += 1
    if n == 0:
        return {}, -math.inf
    per_click /= n
    return {"val_iou": float(per_click.mean())}, float(per_click.mean())
