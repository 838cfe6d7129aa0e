"""Per-picture routing between the starting click model and the retrained one (serve/learning.py,
`--retrain-route`): a retrain on the objects labelled so far gains on pictures like them and can lose
on other kinds (annotate_sim's mixed folder, one model served for all: +4.5% clicks over the second
half against learning off, the loss on COCO objects; benchmarks/RESULTS.md). Both models stay
loaded; each retrain scores both on its held-out masks, and a picture is served by the one that needed
fewer clicks on the held-out pictures that look most like it.

"Look like" is a signature of the picture alone (hue, saturation, brightness and edge-strength
histograms), not of the network: it works with every engine and needs no forward pass."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SIDE = 64  # the signature's picture: a 64x64 thumbnail
NEIGHBOURS = 3  # held-out pictures that decide for a picture: a retrain holds out at most 12, of several kinds
# ... and each must look this much like it (cosine of signatures): the slices of one ISBI stack and the
# frames of one CamVid video are >= 0.98 alike; a black-and-white COCO photo against ISBI's grey cells
# 0.958, GrabCut's photos against both below 0.94 (tests/serve/test_routing.py, on ../shared/data)
SIMILAR = 0.97


def signature(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """A unit vector describing how a picture looks, from an (H, W, C) array (uint8, or float in [0, 1]
    as uploads are decoded) or a (C, H, W) float tensor (the click routes' cached image); grey pictures
    have no hue and low saturation, street scenes and photos differ in their edges and colours."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().permute(1, 2, 0).cpu().numpy()
    image = np.asarray(image)
    step = max(1, min(image.shape[:2]) // (4 * SIDE))  # a view: a large picture is not converted whole
    image = image[::step, ::step]
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    image = np.repeat(image[..., :1], 3, axis=2) if image.shape[2] < 3 else image[..., :3]
    thumb = Image.fromarray(np.ascontiguousarray(image)).resize((SIDE, SIDE), Image.BILINEAR)
    hsv = np.asarray(thumb.convert("HSV"), dtype=np.float32) / 255
    grey = np.asarray(thumb, dtype=np.float32).mean(2) / 255
    gy, gx = np.gradient(grey)
    n = SIDE * SIDE
    parts = [
        np.histogram(hsv[..., 0], 12, (0, 1), weights=hsv[..., 1])[0] / n,  # hue, weighted by saturation
        np.histogram(hsv[..., 1], 8, (0, 1))[0] / n,
        np.histogram(grey, 8, (0, 1))[0] / n,
        np.histogram(np.hypot(gx, gy), 8, (0, 0.3))[0] / n,
    ]
    v = np.sqrt(np.concatenate(parts))  # Hellinger: small bins count
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def image_score(noc90: float, ious: list[float] | np.ndarray) -> float:
    """What one held-out mask cost (lower is better): its clicks to IoU 0.90, less the mean IoU over the
    clicks, so two models that both hit the click cap are told apart by how close they came."""
    return float(noc90) - float(np.mean(ious))


@dataclass(frozen=True)
class Row:
    """One held-out mask: its picture's signature and what it cost the base and the tuned model."""

    image: str
    signature: np.ndarray
    base: float
    tuned: float

    def to_dict(self) -> dict:
        return {"image": self.image, "signature": [round(float(x), 5) for x in self.signature],
                "base": round(self.base, 4), "tuned": round(self.tuned, 4)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> Row:
        return cls(d["image"], np.asarray(d["signature"], dtype=np.float32), float(d["base"]), float(d["tuned"]))


def use_tuned(sig: np.ndarray, rows: list[Row], k: int = NEIGHBOURS, similar: float = SIMILAR) -> bool:
    """The tuned model for this picture only if each of its k most similar held-out pictures looks much
    like it (`similar`) and cost fewer clicks with the tuned model than with the base; anything less
    keeps the base, which is what learning off serves. Unanimity, not a sum: one held-out picture the
    tuned model did much better on must not outvote the others. The likeness bound: on annotate_sim's
    mixed folder a black-and-white COCO photo went to a model tuned on grey ISBI cells (20 clicks, 5
    with the base; benchmarks/annotate_sim.jsonl.gz)."""
    if not rows:
        return False
    sims = np.array([float(sig @ r.signature) for r in rows])
    near = np.argsort(-sims, kind="stable")[: max(1, min(k, len(rows)))]
    return all(sims[i] >= similar and rows[i].tuned < rows[i].base for i in near)


def left_out_choices(rows: list[Row], k: int = NEIGHBOURS) -> list[bool]:
    """For each held-out mask, the routing decided by the others (leave one out): what routing would
    have served on a picture it had not seen, so a candidate is judged on it honestly."""
    return [use_tuned(r.signature, rows[:i] + rows[i + 1 :], k) for i, r in enumerate(rows)]


class Router:
    """The base model and the table the latest accepted retrain left: `pick(image, tuned)` is the model
    that serves a picture. Read-only once made (a new retrain makes a new one), so requests need no lock."""

    def __init__(self, base, rows: list[Row], k: int = NEIGHBOURS) -> None:
        self.base, self.rows, self.k = base, rows, k

    def pick(self, image: np.ndarray | torch.Tensor, tuned):
        return tuned if use_tuned(signature(image), self.rows, self.k) else self.base


def read_rows(base_rows: list[dict], tuned_rows: list[dict]) -> list[Row]:
    """The held-out masks as rows, from the two models' per_image.csv rows (evaluate on the same csv: one
    row per mask, in the csv's order in both), each picture's signature read from its file once."""
    if [r["image"] for r in base_rows] != [r["image"] for r in tuned_rows]:
        raise ValueError("the two scorings list other masks")
    sigs: dict[str, np.ndarray] = {}
    rows = []
    for b, t in zip(base_rows, tuned_rows, strict=True):
        if b["image"] not in sigs:
            with Image.open(b["image"]) as im:
                sigs[b["image"]] = signature(np.asarray(im.convert("RGB")))
        rows.append(Row(b["image"], sigs[b["image"]], image_score(*_noc_ious(b)), image_score(*_noc_ious(t))))
    return rows


def _read(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _noc_ious(r: dict) -> tuple[float, list[float]]:
    return float(r["noc90"]), [float(r[k]) for k in r if k.startswith("iou_")]


def write_routed(base_csv: Path, tuned_csv: Path, out: Path, k: int = NEIGHBOURS) -> tuple[list[Row], list[bool]]:
    """per_image.csv of the routed pair at `out` (each held-out mask scored by the model routing picks for
    it from the other masks: left_out_choices), so the promotion rule judges what routing would serve;
    returns the table it serves with once accepted, and which masks it gave the tuned model."""
    base_rows, tuned_rows = _read(base_csv), _read(tuned_csv)
    try:
        rows = read_rows(base_rows, tuned_rows)
    except ValueError as e:
        raise ValueError(f"{e} ({base_csv} against {tuned_csv})") from None
    tuned = left_out_choices(rows, k)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(base_rows[0]) if base_rows else ["image", "noc90"])
        w.writeheader()
        w.writerows(t if use else b for b, t, use in zip(base_rows, tuned_rows, tuned, strict=True))
    return rows, tuned


def route_setter(served, load_base: Callable[[], object]) -> Callable[[list[dict] | None], None]:
    """What a Learner calls when a retrain is accepted (or at a restart with a saved table): from now on
    `served.pick` routes each picture; the base model is loaded on the first call and kept."""
    base: list = []

    def set_route(rows: list[dict] | None) -> None:
        if rows is None:
            served.route = None
            return
        if not base:
            base.append(load_base())
        served.route = Router(base[0], [Row.from_dict(r) for r in rows])

    return set_route
