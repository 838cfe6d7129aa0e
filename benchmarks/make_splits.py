"""Write the fixed, seeded benchmark splits (benchmarks/splits/*.csv) for datasets without one.

python benchmarks/make_splits.py   # grabcut 35/15 and isbi2012_em 24/6, seed 0
"""

from __future__ import annotations

import random
from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE.parent.parent / "shared" / "data"
SPLITS = {"grabcut": ("images", "masks", 35), "isbi2012_em": ("train/images", "train/masks", 24)}


def main() -> None:
    out = HERE / "splits"
    out.mkdir(exist_ok=True)
    for name, (images, masks, n_train) in SPLITS.items():
        files = sorted((DATA / name / images).iterdir())
        random.Random(0).shuffle(files)
        lines = ["image,mask,split"]
        for i, f in enumerate(files):
            split = "train" if i < n_train else "test"
            rel = Path("../../../shared/data") / name
            lines.append(f"{rel / images / f.name},{rel / masks / (f.stem + '.png')},{split}")
        (out / f"{name}.csv").write_text("\n".join(lines) + "\n")
        print(f"{name}: {n_train} train, {len(files) - n_train} test -> {out / f'{name}.csv'}")


if __name__ == "__main__":
    main()
