"""Write the fixed, seeded benchmark splits (benchmarks/splits/*.csv) for datasets without one.

python benchmarks/make_splits.py   # grabcut 35/15, isbi2012_em 24/6 (seed 0), duts3k, coco320, clicks_mix

duts3k.csv is the shipped models' photo data: duts2k cut as `--data duts2k` cuts it (70/15/15, seed 0,
so `unetkit evaluate ... --data duts2k --split test` scores the same 300 held-out pairs) plus all 1,000
pairs of duts_extra in train: 2,400 train, 300 val, 300 test.

coco320_instances.csv is each object of coco320 (COCO's JSON, read as instances: one row per object, named
`annotations.json#ENTRY` as a run's splits.json names it), its pictures cut 75/5/20 (seed 0) so all
objects of one picture share a split: the test share is the held-out set click models are scored on,
never trained on (train and val keep objects of >= 100 px). clicks_mix.csv is duts3k + coco320_instances:
the click models' training data.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE.parent.parent / "shared" / "data"
REL = Path("../../../shared/data")
MIN_AREA = 100  # px: smaller COCO objects (a few pixels' blob) are no click-training samples; all are in test
SPLITS = {"grabcut": ("images", "masks", 35), "isbi2012_em": ("train/images", "train/masks", 24)}


def seeded(name: str, images: str, masks: str, n_train: int) -> list[str]:
    files = sorted((DATA / name / images).iterdir())
    random.Random(0).shuffle(files)
    rel = REL / name
    return [
        f"{rel / images / f.name},{rel / masks / (f.stem + '.png')},{'train' if i < n_train else 'test'}"
        for i, f in enumerate(files)
    ]


def duts3k() -> list[str]:
    sys.path.insert(0, str(HERE.parent / "src"))
    from unetkit import DataConfig
    from unetkit.api import find_pairs, split_pairs

    def rel(p: Path) -> Path:
        return REL / p.resolve().relative_to(DATA.resolve())

    pairs, _ = find_pairs(DataConfig(root=str(DATA / "duts2k")))
    lines = [f"{rel(p.image)},{rel(p.mask)},{s}" for s, ps in split_pairs(pairs).items() for p in ps]
    extra, _ = find_pairs(DataConfig(root=str(DATA / "duts_extra")))
    return lines + [f"{rel(p.image)},{rel(p.mask)},train" for p in sorted(extra, key=lambda p: str(p.image))]


def coco320() -> list[str]:
    sys.path.insert(0, str(HERE.parent / "src"))
    from unetkit import DataConfig
    from unetkit.api import find_pairs, split_pairs

    pairs, _ = find_pairs(DataConfig(root=str(DATA / "coco320" / "annotations.json"), labels="instances"))
    rel = REL / "coco320" / "annotations.json"

    def area(p) -> float:
        return p.mask.labels.images[p.mask.index].instances[p.mask.target].area

    splits = split_pairs(pairs, (0.75, 0.05, 0.2))
    return [
        f",{rel}#{p.mask.fragment},{s}" for s, ps in splits.items() for p in ps if s == "test" or area(p) >= MIN_AREA
    ]


def main() -> None:
    out = HERE / "splits"
    out.mkdir(exist_ok=True)
    tables = {name: seeded(name, *spec) for name, spec in SPLITS.items()}
    tables["duts3k"] = duts3k()
    tables["coco320_instances"] = coco320()
    tables["clicks_mix"] = tables["duts3k"] + tables["coco320_instances"]
    for name, lines in tables.items():
        (out / f"{name}.csv").write_text("\n".join(["image,mask,split", *lines]) + "\n")
        counts = {s: sum(line.endswith("," + s) for line in lines) for s in ("train", "val", "test")}
        print(f"{name}: {counts} -> {out / f'{name}.csv'}")


if __name__ == "__main__":
    main()
