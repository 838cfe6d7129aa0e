"""The data check: one pass over every pair, a summary, and every problem with its fix.

It never gives up on a whole folder because of one file: unreadable files, stray mask values,
size mismatches and duplicates are each reported by name, and the mask encoding is inferred
from all masks (not a sample), so one odd mask cannot decide it."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.config import DataConfig
from unetkit.data.formats.pairs import label_classes, label_spec
from unetkit.data.imageio import IGNORE, DataError, MaskSource, MaskSpec, read_image, read_mask_raw
from unetkit.data.splits import SPLITS, Pair, Problem, data_source, find_pairs, label_mode, label_source, split_pairs

SOFT_SHARE = 0.25  # masks with in-between values above which a binary set is "soft-edged", not damaged
MAX_INDEX_CLASSES = 64


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    sizes: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    mask_values: Counter = field(default_factory=Counter)  # raw value -> pixel count
    empty_masks: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bad_pairs: set[str] = field(default_factory=set)  # image paths of pairs that failed
    spec: MaskSpec | None = None
    class_pixels: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, pair: Pair, problem: Problem) -> None:
        self.problems.append(problem)
        self.bad_pairs.add(str(pair.image))

    def format(self, classes: tuple[str, ...] = ()) -> str:
        lines = ["pairs per split: " + ", ".join(f"{k} {v}" for k, v in self.counts.items())]
        sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in self.sizes.most_common(8))
        more = f" and {len(self.sizes) - 8} more" if len(self.sizes) > 8 else ""
        lines.append(f"image sizes (WxH): {sizes}{more}")
        lines.append("image modes: " + ", ".join(f"{m} ({n})" for m, n in self.modes.most_common()))
        values = sorted(self.mask_values, key=str)
        if values:
            lines.append(
                "mask values found: " + ", ".join(map(str, values[:32])) + (" ..." if len(values) > 32 else "")
            )
        if self.spec:
            lines.append(_describe(self.spec))
        lines += self.notes
        lines += self._frequencies(classes)
        if self.empty_masks:
            shown = ", ".join(self.empty_masks[:5]) + (" ..." if len(self.empty_masks) > 5 else "")
            lines.append(f"images with empty masks (no foreground): {len(self.empty_masks)}: {shown}")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p}" for p in self.problems]
        else:
            lines.append("no problems found")
        return "\n".join(lines)

    def _frequencies(self, classes: tuple[str, ...]) -> list[str]:
        total = sum(self.class_pixels.values())
        if not total:
            return []

        def name(c):
            return "ignore" if c == IGNORE else (classes[c] if c < len(classes) else str(c))

        freq = ", ".join(f"{name(c)} {n / total:.1%}" for c, n in sorted(self.class_pixels.items()))
        return [f"class pixel frequencies: {freq}"]


def _describe(spec: MaskSpec) -> str:
    text = f"mask encoding: {spec.mode}, {spec.num_classes} classes"
    if spec.threshold:
        text += f", foreground = values >= {spec.threshold}"
    if spec.ignore_value is not None:
        text += f", ignore value {spec.ignore_value}"
    return text


# ----------------------------------------------------------------------------------------------
# The mask encoding, from every mask


def _binary_like(values: set[int]) -> bool:
    return values <= {0, 255} or values <= {0, 1}


def infer_spec(cfg: DataConfig, pairs: list[Pair], report: Report) -> MaskSpec:
    """The mask encoding: as configured, or inferred from the values of all masks. A label file's is
    known without reading a mask (formats/pairs.py), and so is a folder's with classes.txt (indices
    into its names, 255 ignored: what `unetkit data convert` writes)."""
    labels = label_source(cfg)
    if labels is not None:
        return label_spec(labels, label_mode(cfg))
    listed = listed_classes(cfg)
    if listed and cfg.mask_mode == "auto":
        ignore = IGNORE if cfg.ignore_value is None else cfg.ignore_value
        return MaskSpec("binary", 2, ignore) if len(listed) == 2 else MaskSpec("index", len(listed), ignore)
    n = len(cfg.classes) or None
    if cfg.mask_mode == "rgb":
        return MaskSpec("rgb", len(cfg.colors), cfg.ignore_value, cfg.colors)
    if cfg.mask_mode == "binary" or cfg.mask_threshold:
        return MaskSpec("binary", 2, cfg.ignore_value, threshold=cfg.mask_threshold)
    if cfg.mask_mode == "index" and n:
        return MaskSpec("index", n, cfg.ignore_value)
    per_mask = _mask_values(pairs, cfg.ignore_value)
    if not per_mask:
        return MaskSpec("binary", 2, cfg.ignore_value)  # nothing readable: the per-file problems say why
    union = set().union(*per_mask.values())
    if cfg.mask_mode == "index" or (max(union) < MAX_INDEX_CLASSES and not _binary_like(union)):
        return MaskSpec("index", max(n or 0, max(union) + 1, 2), cfg.ignore_value)
    if n not in (None, 2) and max(union) >= MAX_INDEX_CLASSES:
        return MaskSpec("index", n, cfg.ignore_value)  # the per-file encode reports the values out of range
    soft = sorted(m for m, v in per_mask.items() if not _binary_like(v))
    if len(soft) > SOFT_SHARE * len(per_mask):
        report.notes.append(
            f"soft-edged binary masks: {len(soft)} of {len(per_mask)} masks hold values between 0 and 255 along "
            "object edges (anti-aliased, as saliency and matting sets are)"
        )
        report.problems.append(
            Problem(
                str(data_source(cfg)),
                f"{len(soft)} masks are soft-edged (e.g. {Path(soft[0]).name})",
                "pass --mask-threshold 128 to use them as they are (values >= 128 = foreground)",
            )
        )
        report.bad_pairs |= {str(pairs_by_mask(pairs)[m].image) for m in soft}
    return MaskSpec("binary", 2, cfg.ignore_value)


def pairs_by_mask(pairs: list[Pair]) -> dict[str, Pair]:
    return {str(p.mask): p for p in pairs}


def _mask_values(pairs: list[Pair], ignore_value: int | None) -> dict[str, set[int]]:
    """mask path -> its distinct values (ignore value left out), for every readable grey mask."""
    out = {}
    for p in pairs:
        try:
            raw = read_mask_raw(p.mask)
        except DataError:
            continue  # check_pairs reports it
        if raw.ndim == 2:
            out[str(p.mask)] = set(np.unique(raw).tolist()) - {ignore_value}
    return out


# ----------------------------------------------------------------------------------------------
# Reading every pair


def check_pairs(pairs: list[Pair], cfg: DataConfig, spec: MaskSpec, report: Report | None = None) -> Report:
    """Read every pair once (header + pixels) and record what is there and what is wrong. A label file's
    entries: only their images' headers (the file was checked when read; masks are drawn when needed)."""
    report = report or Report()
    sizes: dict[Path, tuple] = {}
    for p in pairs:
        if str(p.image) in report.bad_pairs:
            continue
        if isinstance(p.mask, MaskSource):
            _check_header(p, sizes, report)
            continue
        raw = _read_pair(p, cfg, report)
        if raw is None:
            continue
        if raw.ndim == 2:
            vals, counts = np.unique(raw, return_counts=True)
            report.mask_values.update(dict(zip(vals.tolist(), counts.tolist(), strict=True)))
        else:
            cols, counts = np.unique(raw.reshape(-1, 3), axis=0, return_counts=True)
            report.mask_values.update({tuple(c): n for c, n in zip(cols.tolist(), counts.tolist(), strict=True)})
        try:
            mask = spec.encode(raw, p.mask)
        except DataError as e:
            report.fail(p, Problem(*_split_message(str(e))))
            continue
        labels, counts = np.unique(mask, return_counts=True)
        report.class_pixels.update(dict(zip(labels.tolist(), counts.tolist(), strict=True)))
        if not ((mask > 0) & (mask != IGNORE)).any():
            report.empty_masks.append(p.image.name)
    return report


def _read_pair(p: Pair, cfg: DataConfig, report: Report) -> np.ndarray | None:
    """The raw mask of a readable, size-matched pair (recording its image size and mode), else None."""
    try:
        with Image.open(p.image) as im:
            im.verify()
        with Image.open(p.image) as im:
            size, mode = im.size, im.mode
        image = read_image(p.image, cfg.in_channels)
        raw = read_mask_raw(p.mask)
    except DataError as e:
        report.fail(p, Problem(*_split_message(str(e))))
        return None
    except Exception as e:  # PIL's verify raises assorted types for truncated files
        report.fail(p, Problem(str(p.image), f"cannot read image ({e})", "re-export or remove the pair"))
        return None
    report.sizes[size] += 1
    report.modes[mode] += 1
    if raw.shape[:2] != tuple(image.shape[-2:]):
        h, w = raw.shape[:2]
        msg = f"mask is {w}x{h} but its image is {image.shape[2]}x{image.shape[1]}"
        report.fail(p, Problem(str(p.mask), msg, "resize the mask (nearest) to its image's size or fix the pairing"))
        return None
    return raw


def _check_header(p: Pair, sizes: dict, report: Report) -> None:
    """A label file's image: there, readable, and of the size its annotations declare."""
    if p.image not in sizes:
        try:
            with Image.open(p.image) as im:
                sizes[p.image] = (im.size, im.mode)
        except FileNotFoundError:
            sizes[p.image] = f"image file not found (named by {p.mask.path.name})"
        except Exception as e:  # PIL raises assorted types for damaged files
            sizes[p.image] = f"cannot read image ({e})"
    found = sizes[p.image]
    if isinstance(found, str):
        report.fail(p, Problem(str(p.image), found, "add the image, pass --images DIR, or remove its entry"))
        return
    (w, h), mode = found
    declared = p.mask.labels.images[p.mask.index].size
    if declared and declared != (h, w):
        msg = f"image is {w}x{h} but {p.mask.path.name} declares {declared[1]}x{declared[0]}"
        report.fail(p, Problem(str(p.image), msg, "re-export the labels for these images"))
        return
    report.sizes[(w, h)] += 1
    report.modes[mode] += 1


def _split_message(text: str) -> tuple[str, str, str]:
    path, _, rest = text.partition(": ")
    msg, _, fix = rest.partition("; ")
    return path, msg, fix or "fix or remove the file"


def duplicate_problems(
    splits: dict[str, list[Pair]], repeats_ok: bool = False, objects_ok: bool = False
) -> tuple[list[Problem], list[str]]:
    """(problems, notes) for the same file twice, the same image content twice, or one stem in two
    splits: each would let an image be trained on and scored, or count twice. A CSV may list a file
    several times within one split on purpose (oversampling): with `repeats_ok` that is a note. Click
    data holds one object per mask, so with `objects_ok` one picture with other masks in the same split
    (its other objects) is a note too; across splits it stays a problem (trained on, then scored)."""
    problems: list[Problem] = []
    repeats = objects = 0
    first_path: dict[Path, Pair] = {}
    first_hash: dict[str, Pair] = {}
    first_stem: dict[str, Pair] = {}
    for s in SPLITS:
        for p in splits.get(s, []):
            resolved = p.image.resolve()
            digest = _file_hash(p.image)
            other = first_path.get(resolved) or first_hash.get(digest)
            if other is not None:
                if objects_ok and other.split == s and _file_hash(other.mask) != _file_hash(p.mask):
                    objects += 1
                elif repeats_ok and other.split == s:
                    repeats += 1
                else:
                    what = "listed twice" if other.image.resolve() == resolved else "same content as"
                    problems.append(Problem(str(p.image), f"{what} {other.image} ({other.split})", "keep one"))
            first_path.setdefault(resolved, p)
            if digest:
                first_hash.setdefault(digest, p)
            first = first_stem.setdefault(p.image.stem, p)
            if first.split != s:
                msg = f"name {p.image.stem!r} is in both {first.split} and {s} ({first.image})"
                problems.append(Problem(str(p.image), msg, "keep each image in one split"))
    notes = []
    if repeats:
        notes.append(f"{repeats} pair(s) repeat another in the same split (the CSV lists them again: oversampling)")
    if objects:
        notes.append(f"{objects} pair(s) share their picture with another pair of their split: its other objects")
    return problems, notes


def _file_hash(path: Path | MaskSource) -> str:
    if isinstance(path, MaskSource):
        return hashlib.sha1(path.key.encode()).hexdigest()
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def check_dataset(cfg: DataConfig, objects_ok: bool = False) -> tuple[Report, dict[str, list[Pair]], MaskSpec]:
    """Pairing + splitting + reading every pair: what `unetkit data check` and training both run.
    `objects_ok`: click data, where one picture may come with one mask per object."""
    pairs, problems = find_pairs(cfg)
    if not pairs:
        raise DataError(f"{cfg.root or cfg.csv}: no image/mask pairs found" + (f"; {problems[0]}" if problems else ""))
    splits = split_pairs(pairs, cfg.split, cfg.split_seed)
    report = Report(problems=list(problems))
    report.bad_pairs |= {p.path for p in problems}
    labels = label_source(cfg)  # its instances share their picture, as click data's objects do:
    objects_ok = objects_ok or (labels is not None and label_mode(cfg) == "instances")
    duplicates, report.notes = duplicate_problems(splits, repeats_ok=bool(cfg.csv), objects_ok=objects_ok)
    report.notes[:0] = [labels.summary() + f"; masks: {label_mode(cfg)}"] if labels is not None else []
    for problem in duplicates:
        report.problems.append(problem)
        report.bad_pairs.add(problem.path)
    spec = infer_spec(cfg, [p for s in SPLITS for p in splits[s]], report)
    report.spec = spec
    report.counts = {s: len(ps) for s, ps in splits.items()}
    for s in SPLITS:
        check_pairs(splits[s], cfg, spec, report)
    return report, splits, spec


def listed_classes(cfg: DataConfig) -> tuple[str, ...]:
    """The names in a unetkit folder's classes.txt (one per line, background first), if it has one."""
    path = Path(cfg.root or "") / "classes.txt"
    if cfg.csv or not cfg.root or not path.is_file():
        return ()
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def class_names(cfg: DataConfig, spec: MaskSpec) -> tuple[str, ...]:
    labels = label_source(cfg)
    if labels is not None and not cfg.classes:
        return label_classes(labels, label_mode(cfg))
    listed = listed_classes(cfg)
    if listed and not cfg.classes and len(listed) == spec.num_classes:
        return listed
    if cfg.classes:
        if len(cfg.classes) != spec.num_classes:
            raise DataError(
                f"classes: {len(cfg.classes)} names given but the masks have {spec.num_classes} classes; "
                "give one name per class"
            )
        return tuple(cfg.classes)
    if spec.mode == "binary":
        return ("background", "foreground")
    return tuple(f"class{i}" for i in range(spec.num_classes))
