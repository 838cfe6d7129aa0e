"""Finding image/mask pairs and deciding which split each belongs to; the split a run trained
with is recorded (resolved paths and a hash) so evaluation scores exactly that run's test pairs."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from unetkit.config import DataConfig
from unetkit.data.csv_pairs import read_csv_pairs
from unetkit.data.formats.pairs import label_pairs
from unetkit.data.formats.source import label_mode, label_source
from unetkit.data.imageio import IMAGE_EXTENSIONS, DataError, MaskSource
from unetkit.data.records import SPLITS, Pair, Problem


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def pair_folder(images_dir: Path, masks_dir: Path, mask_suffix: str = "", split: str | None = None):
    """Match images and masks by stem (extensions may differ); returns (pairs, problems)."""
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: images folder not found; expected DIR/images and DIR/masks")
    if not masks_dir.is_dir():
        raise DataError(f"{masks_dir}: masks folder not found; expected DIR/images and DIR/masks")
    problems: list[Problem] = []
    masks: dict[str, Path] = {}
    for m in _images_in(masks_dir):
        stem = m.stem
        if mask_suffix:
            if not stem.endswith(mask_suffix):
                problems.append(Problem(str(m), f"mask name lacks the suffix {mask_suffix!r}", "rename it"))
                continue
            stem = stem[: -len(mask_suffix)]
        if stem in masks:
            problems.append(Problem(str(m), f"two masks for {stem!r} ({masks[stem].name})", "remove one"))
            continue
        masks[stem] = m
    pairs, seen = [], {}
    for img in _images_in(images_dir):
        if img.stem in seen:
            problems.append(Problem(str(img), f"two images named {img.stem!r} ({seen[img.stem].name})", "remove one"))
            continue
        seen[img.stem] = img
        mask = masks.pop(img.stem, None)
        if mask is None:
            fix = f"add {masks_dir}/{img.stem}{mask_suffix}.png or remove it"
            problems.append(Problem(str(img), "image has no mask", fix))
        else:
            pairs.append(Pair(img, mask, split))
    for stem, m in sorted(masks.items()):
        problems.append(Problem(str(m), f"mask has no image {stem!r}", f"add the image to {images_dir} or remove it"))
    return pairs, problems


def data_source(cfg: DataConfig) -> Path:
    return Path(cfg.csv) if cfg.csv else Path(cfg.root or "")


def find_pairs(cfg: DataConfig):
    """All pairs of a dataset with their split if the layout defines one; returns (pairs, problems)."""
    if cfg.csv:
        return read_csv_pairs(Path(cfg.csv))
    labels = label_source(cfg)
    if labels is not None:
        return label_pairs(labels, label_mode(cfg), cfg.overlap), []
    root = Path(cfg.root or "")
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found; give --data DIR with images/ and masks/ inside")
    split_dirs = [s for s in SPLITS if (root / s / "images").is_dir()]
    if split_dirs:
        pairs, problems = [], []
        for s in split_dirs:
            p, q = pair_folder(root / s / "images", root / s / "masks", cfg.mask_suffix, s)
            pairs += p
            problems += q
        return pairs, problems
    if not (root / "images").is_dir():
        raise DataError(
            f"{root}: no images/ folder (nor train/images); put images in {root}/images and masks in {root}/masks"
        )
    return pair_folder(root / "images", root / "masks", cfg.mask_suffix)


def split_pairs(pairs: list[Pair], fractions=(0.7, 0.15, 0.15), seed: int = 0) -> dict[str, list[Pair]]:
    """Pairs keep the split their layout gives; splits the layout lacks are cut, seeded, from the rest.

    No layout splits: all pairs are cut by `fractions`. Only train (+ test) folders: val (and test)
    are cut from train with their fractions, so evaluation never looks at training pairs."""
    out: dict[str, list[Pair]] = {s: [] for s in SPLITS}
    free = []
    for p in pairs:
        (out[p.split] if p.split else free).append(p)
    present = {s for s in SPLITS if out[s]}
    if present:
        fractions = tuple(0.0 if s in present and s != "train" else f for s, f in zip(SPLITS, fractions, strict=True))
        free += out["train"]
        out["train"] = []
    if free:
        total = sum(fractions)
        fractions = tuple(f / total for f in fractions)
        groups = _by_image(free)
        random.Random(seed).shuffle(groups)
        n = len(groups)
        n_val = round(n * fractions[1])
        n_test = round(n * fractions[2])
        if n >= 3 and fractions[1] > 0 and n_val == 0:
            n_val = 1
        n_train = n - n_val - n_test
        if n_train < 1:
            raise DataError(f"only {n} pairs: too few to split {fractions}; add data or change --split")
        for split, part in (("train", groups[:n_train]), ("val", groups[n_train : n_train + n_val]),
                            ("test", groups[n_train + n_val :])):  # fmt: skip
            out[split] += [p for g in part for p in g]
    if not out["train"]:
        raise DataError("no training pairs found; check the data folder layout")
    return {s: [Pair(p.image, p.mask, s) for p in ps] for s, ps in out.items()}


def _by_image(pairs: list[Pair]) -> list[list[Pair]]:
    """Pairs grouped by image, in image order: one picture's objects (a label file's instances, a click
    CSV's masks) go to one split together, never trained on in one and scored in another."""
    groups: dict[str, list[Pair]] = {}
    for p in sorted(pairs, key=lambda p: str(p.image)):
        groups.setdefault(str(p.image), []).append(p)
    return list(groups.values())


# ----------------------------------------------------------------------------------------------
# The recorded split: resolved paths, relative to the data source, and a hash


@dataclass(frozen=True)
class SplitRecord:
    """Which pair went to which split in a run. `source` is the resolved data folder (or CSV);
    paths are relative to its folder, so a moved copy of the same data is still recognised."""

    source: str
    splits: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    @property
    def base(self) -> Path:
        src = Path(self.source)
        return src.parent if src.suffix.lower() == ".csv" else src

    @property
    def hash(self) -> str:
        text = json.dumps({s: list(map(list, self.splits.get(s, ()))) for s in SPLITS}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def pairs(self, split: str, base: Path | None = None) -> list[Pair]:
        base = base or self.base
        return [Pair(base / i, base / m, split) for i, m in self.splits.get(split, ())]

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "hash": self.hash,
            **{s: [list(p) for p in self.splits.get(s, ())] for s in SPLITS},
        }

    @classmethod
    def from_dict(cls, d: dict) -> SplitRecord:
        return cls(d["source"], {s: tuple((i, m) for i, m in d.get(s, [])) for s in SPLITS})


def record_splits(cfg: DataConfig, splits: dict[str, list[Pair]]) -> SplitRecord:
    source = data_source(cfg).resolve()
    base = source.parent if cfg.csv else source

    def rel(p: Path | MaskSource) -> str:
        if isinstance(p, MaskSource):  # a label file's entry: the file's path, then #entry
            return f"{rel(p.path)}#{p.fragment}"
        p = p.resolve()
        try:
            return str(p.relative_to(base))
        except ValueError:
            return str(p)  # outside the data folder (a CSV may point anywhere): keep it absolute

    return SplitRecord(str(source), {s: tuple((rel(p.image), rel(p.mask)) for p in ps) for s, ps in splits.items()})


def write_splits(record: SplitRecord, path: Path) -> None:
    path.write_text(json.dumps(record.to_dict(), indent=1))


def read_splits(path: Path) -> SplitRecord:
    d = json.loads(Path(path).read_text())
    if "source" in d:
        return SplitRecord.from_dict(d)

    # Older runs saved the paths as given (relative ones to the folder training ran in, taken here
    # as the current one): made absolute, under the source "/".
    def absolute(e: dict) -> tuple[str, str]:
        return str(Path(e["image"]).resolve()), str(Path(e["mask"]).resolve())

    return SplitRecord("/", {s: tuple(absolute(e) for e in d.get(s, [])) for s in SPLITS})


def run_split(
    recorded: dict | None, run_dir: Path | None, data: DataConfig | None = None, trained_on: str | None = None
) -> tuple[SplitRecord | None, list[str]]:
    """Which split a run used, the one answer for resume, evaluate and export: the record its checkpoint
    embeds; else (runs of older versions) RUN/splits.json; else, when `data` is the data the run trained
    on (`trained_on`, its root or CSV), the seeded split recomputed. (None, []) when nothing says.
    The notes say which fallback answered."""
    if recorded:
        return SplitRecord.from_dict(recorded), []
    if run_dir is not None and (Path(run_dir) / "splits.json").is_file():
        note = "older checkpoint: its split comes from the run's splits.json"
        return read_splits(Path(run_dir) / "splits.json"), [note]
    if data is not None and trained_on and Path(trained_on).resolve() == data_source(data).resolve():
        found, _ = find_pairs(data)
        record = record_splits(data, split_pairs(found, data.split, data.split_seed))
        return record, ["older checkpoint without a recorded split: the run's seeded split was recomputed"]
    return None, []


# ----------------------------------------------------------------------------------------------
# load_split: the one place that decides which pairs a split holds, for training and evaluation


@dataclass
class SplitChoice:
    pairs: list[Pair]
    split: str  # the split actually scored: train | val | test | all
    own_data: bool  # the run's own data (its recorded split was used)
    notes: list[str] = field(default_factory=list)


def _same_data(record: SplitRecord, cfg: DataConfig, found: list[Pair]) -> tuple[bool, Path, list[str]]:
    """Is `cfg` the data `record` was made from: the same resolved source, or a moved copy of it (at
    least half the recorded files found under the new folder by their relative paths)? Returns
    (same, base for the recorded paths, notes)."""
    source = data_source(cfg).resolve()
    if str(source) == record.source:
        return True, record.base, []
    base = Path("/") if record.source == "/" else (source.parent if cfg.csv else source)
    recorded = [i for s in SPLITS for i, _ in record.splits.get(s, ())]
    current = {p.image.resolve() for p in found}
    present = sum((base / i).resolve() in current for i in recorded)
    if recorded and present * 2 >= len(recorded):
        if record.source == "/":  # an older run's absolute paths: nothing moved
            return True, base, []
        note = (
            f"{source} holds {present} of the {len(recorded)} files the run was trained and tested on: "
            f"treated as a moved copy of {record.source}"
        )
        return True, base, [note]
    return False, base, []


def load_splits(cfg: DataConfig, record: SplitRecord | None = None) -> dict[str, list[Pair]]:
    """Training's splits: the recorded ones (a resumed run) or a fresh seeded split."""
    if record is not None:
        live = _live_masks(find_pairs(cfg)[0])
        return {s: [_live(p, live) for p in record.pairs(s)] for s in SPLITS}
    found, _ = find_pairs(cfg)
    return split_pairs(found, cfg.split, cfg.split_seed)


def _live_masks(found: list[Pair]) -> dict[str, MaskSource]:
    """A label source's masks by key: what a recorded split's `file#entry` paths stand for."""
    return {p.mask.key: p.mask for p in found if isinstance(p.mask, MaskSource)}


def _live(p: Pair, live: dict[str, MaskSource]) -> Pair:
    return Pair(p.image, live.get(str(p.mask.resolve()), p.mask), p.split) if live else p


def load_split(cfg: DataConfig, split: str, record: SplitRecord | None = None) -> SplitChoice:
    """The pairs to evaluate. On the run's own data (`record` matches): exactly its recorded split,
    with a note if pairs were added or removed since. On other data: `auto`/`all` is every pair,
    and train/val/test are the layout's split folders (or CSV column), never a random cut."""
    found, _ = find_pairs(cfg)
    if record is not None:
        same, base, notes = _same_data(record, cfg, found)
        if same:
            chosen = "test" if split == "auto" else split
            names = SPLITS if chosen == "all" else (chosen,)
            live = _live_masks(found)
            pairs = [_live(p, live) for s in names for p in record.pairs(s, base)]
            choice = SplitChoice(*_drop_missing(pairs, record, found, base, chosen))
            choice.notes = notes + choice.notes
            return choice
    chosen = "all" if split == "auto" else split
    if chosen == "all":
        return SplitChoice(found, "all", False)
    pairs = [p for p in found if p.split == chosen]
    if not pairs:
        raise DataError(
            f"{data_source(cfg)}: no {chosen} split here (no {chosen}/ folder or CSV split column) and it is not "
            "the data this checkpoint was trained on; use --split all to score every pair"
        )
    return SplitChoice(pairs, chosen, False)


def _drop_missing(pairs, record, found, base, chosen):
    have = {p.image.resolve() for p in found}
    kept = [p for p in pairs if p.image.resolve() in have]
    notes = []
    if len(kept) < len(pairs):
        notes.append(f"{len(pairs) - len(kept)} recorded {chosen} pair(s) are gone from the data and not scored")
    recorded = {(base / i).resolve() for s in SPLITS for i, _ in record.splits.get(s, ())}
    added = [p for p in found if p.image.resolve() not in recorded]
    if added:
        notes.append(
            f"{len(added)} pair(s) were added since training (e.g. {added[0].image.name}); they are in no recorded "
            "split and not scored (evaluate them on their own with a folder of them and --split all)"
        )
    return kept, chosen, True, notes
