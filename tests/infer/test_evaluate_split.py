"""evaluate scores exactly what it claims: the run's own recorded test split on its own data, whatever
the current folder, symlinks, CSV data or where the checkpoint now lives; every pair of other data."""

import csv
import json
import math
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from unetkit.cli import main
from unetkit.config import EvaluateConfig
from unetkit.data.splits import read_splits
from unetkit.infer.evaluation import evaluate_checkpoint, rank_worst
from unetkit.training.loop import fit


def scored(summary_dir) -> set[str]:
    with (summary_dir / "per_image.csv").open() as f:
        return {os.path.realpath(r["image"]) for r in csv.DictReader(f)}


def recorded(run, split="test") -> set[str]:
    record = read_splits(run / "splits.json")
    return {os.path.realpath(p.image) for p in record.pairs(split)}


@pytest.fixture(scope="module")
def flat_run(tmp_path_factory):
    """A run on a folder without split folders (so the split is a seeded cut), data copied so the
    tests may change it."""
    base = tmp_path_factory.mktemp("flat")
    data = base / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(data / "images" / f"p{i:02d}.png")
        mask = np.zeros((24, 24), np.uint8)
        mask[4 : 8 + i % 10, 4:12] = 255
        Image.fromarray(mask).save(data / "masks" / f"p{i:02d}.png")
    run = base / "run"
    fit(tiny_config(data={"root": str(data), "size": (24, 24)}, epochs=1, sample_every=0), out=run)
    return data, run


def test_own_data_scores_the_recorded_split_from_anywhere(flat_run, tmp_path, monkeypatch):
    data, run = flat_run
    moved = tmp_path / "elsewhere" / "model.pt"  # no splits.json beside it
    moved.parent.mkdir()
    shutil.copy(run / "checkpoints" / "best.pt", moved)
    link = tmp_path / "link"
    link.symlink_to(data)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report"
    assert main(["evaluate", str(moved), "--data", "link", "--out", str(out), "--json"]) == 0
    assert scored(out) == recorded(run) and len(recorded(run)) == 3
    assert not scored(out) & (recorded(run, "train") | recorded(run, "val"))


def test_changed_data_is_reported_and_never_resplit(flat_run, tmp_path, capsys):
    data, run = flat_run
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)  # a moved copy of the same data is still recognised
    test_images = sorted(read_splits(run / "splits.json").splits["test"])
    gone = copy / test_images[0][0]
    gone.unlink()
    (copy / "masks" / gone.name).unlink()
    shutil.copy(copy / "images" / "p00.png", copy / "images" / "new.png")
    shutil.copy(copy / "masks" / "p00.png", copy / "masks" / "new.png")
    ckpt = run / "checkpoints" / "best.pt"
    summary = evaluate_checkpoint(EvaluateConfig(checkpoint=str(ckpt), data=str(copy), out=str(tmp_path / "r")), False)
    assert summary["own_data"] and summary["num_images"] == 2
    notes = " ".join(summary["notes"])
    assert "1 recorded test pair(s) are gone" in notes and "1 pair(s) were added since training (e.g. new.png)" in notes
    names = {os.path.basename(p) for p in scored(tmp_path / "r")}
    assert names == {os.path.basename(i) for i, _ in test_images[1:]}
    assert main(["evaluate", str(ckpt), "--data", str(copy), "--out", str(tmp_path / "r2")]) == 0
    assert "note: 1 pair(s) were added since training" in capsys.readouterr().err


def test_csv_data_scores_its_recorded_split(flat_run, tmp_path):
    data, _ = flat_run
    rows = ["image,mask"] + [f"{data}/images/p{i:02d}.png,{data}/masks/p{i:02d}.png" for i in range(20)]
    (tmp_path / "list.csv").write_text("\n".join(rows))
    run = tmp_path / "run"
    fit(tiny_config(data={"csv": str(tmp_path / "list.csv"), "size": (24, 24)}, epochs=1, sample_every=0), out=run)
    config = EvaluateConfig(checkpoint=str(run / "checkpoints" / "best.pt"), data=str(tmp_path / "list.csv"))
    summary = evaluate_checkpoint(config, progress=False)
    assert summary["split"] == "test" and summary["own_data"]
    assert scored(run / "eval-test") == recorded(run)


def test_other_data_is_scored_whole(flat_run, demo_dir, tmp_path):
    data, run = flat_run
    ckpt = str(run / "checkpoints" / "best.pt")
    other = tmp_path / "other"  # a flat folder of other pairs: no split folders, nothing recorded
    shutil.copytree(demo_dir / "train", other)
    n_other = len(list((other / "images").iterdir()))
    summary = evaluate_checkpoint(EvaluateConfig(checkpoint=ckpt, data=str(other), out=str(tmp_path / "a")), False)
    assert summary["split"] == "all" and not summary["own_data"] and summary["num_images"] == n_other > 10
    # A folder with only test/: its test pairs, by default and by name; a split it lacks is an error.
    only_test = tmp_path / "only_test"
    shutil.copytree(demo_dir / "test", only_test / "test")
    n = len(list((only_test / "test" / "images").iterdir()))
    for split in ("auto", "test"):
        config = EvaluateConfig(checkpoint=ckpt, data=str(only_test), split=split, out=str(tmp_path / split))
        assert evaluate_checkpoint(config, progress=False)["num_images"] == n
    with pytest.raises(Exception, match="no val split here"):
        evaluate_checkpoint(EvaluateConfig(checkpoint=ckpt, data=str(only_test), split="val"), progress=False)


def test_worst_list_leaves_out_images_with_nothing_to_find_and_nothing_found():
    rows = [
        {"index": 0, "fg_dice": math.nan},  # empty truth, empty prediction: right, not worst
        {"index": 1, "fg_dice": 0.9},
        {"index": 2, "fg_dice": 0.0},
        {"index": 3, "fg_dice": 0.5},
    ]
    assert [r["index"] for r in rank_worst(rows, "fg_dice", 3)] == [2, 3, 1]


def test_older_checkpoint_without_a_recorded_split_uses_the_runs_splits_json(flat_run, tmp_path):
    import torch

    from unetkit.infer import checkpoint

    data, run = flat_run
    payload = checkpoint.load(run / "checkpoints" / "best.pt")
    del payload["split"]
    payload["mask_spec"].pop("threshold")
    old_run = tmp_path / "old"
    (old_run / "checkpoints").mkdir(parents=True)
    old = {
        s: [{"image": str(data / i), "mask": str(data / m)} for i, m in pairs]
        for s, pairs in read_splits(run / "splits.json").splits.items()
    }
    (old_run / "splits.json").write_text(json.dumps(old))  # the old absolute-path format
    checkpoint.save(payload, old_run / "checkpoints" / "best.pt")
    assert torch.load(old_run / "checkpoints" / "best.pt", weights_only=True).get("split") is None
    summary = evaluate_checkpoint(
        EvaluateConfig(checkpoint=str(old_run / "checkpoints" / "best.pt"), data=str(data)), False
    )
    assert summary["own_data"] and scored(old_run / "eval-test") == recorded(run)


def test_recorded_split_false_scores_the_csvs_own_split_column(flat_run, tmp_path):
    """What annotate's learning needs to score two models on the same held-out rows: the old model's
    recorded split (of the same images) must not replace the rows the CSV marks."""
    data, _ = flat_run
    pairs = [f"{data}/images/p{i:02d}.png,{data}/masks/p{i:02d}.png" for i in range(20)]
    (tmp_path / "first").mkdir()
    (tmp_path / "first" / "list.csv").write_text("\n".join(["image,mask", *pairs]))  # absolute paths, as annotate's
    run = tmp_path / "run"
    fit(tiny_config(data={"csv": str(tmp_path / "first" / "list.csv"), "size": (24, 24)}, epochs=1, sample_every=0),
        out=run)  # fmt: skip
    rows = ["image,mask,split"] + [f"{p},{'val' if i < 3 else 'train'}" for i, p in enumerate(pairs)]
    (tmp_path / "marked.csv").write_text("\n".join(rows))
    ckpt = str(run / "checkpoints" / "best.pt")
    own = evaluate_checkpoint(EvaluateConfig(checkpoint=ckpt, data=str(tmp_path / "marked.csv"), split="val",
                                             out=str(tmp_path / "own")), progress=False)  # fmt: skip
    assert own["own_data"] and scored(tmp_path / "own") == recorded(run, "val")  # the run's split, by default
    given = EvaluateConfig(checkpoint=ckpt, data=str(tmp_path / "marked.csv"), split="val", recorded_split=False,
                           out=str(tmp_path / "given"))  # fmt: skip
    summary = evaluate_checkpoint(given, progress=False)
    assert not summary["own_data"] and summary["num_images"] == 3
    assert scored(tmp_path / "given") == {os.path.realpath(data / "images" / f"p{i:02d}.png") for i in range(3)}
