"""run_split: the one answer to "which split did this run use", with its fallbacks for older runs."""

import json

from unetkit.config import DataConfig
from unetkit.data.demo import write_demo
from unetkit.data.splits import SplitRecord, find_pairs, record_splits, run_split, split_pairs


def test_run_split_prefers_the_record_then_splits_json_then_the_recomputed_seeded_split(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    demo = write_demo(tmp_path / "demo", num_images=10, size=(16, 16), seed=0)
    (root / "images").symlink_to(demo / "train" / "images")
    (root / "masks").symlink_to(demo / "train" / "masks")
    cfg = DataConfig(root=str(root))
    found, _ = find_pairs(cfg)
    record = record_splits(cfg, split_pairs(found, cfg.split, cfg.split_seed))

    got, notes = run_split(record.to_dict(), None)
    assert got == record and notes == []

    run = tmp_path / "run"
    run.mkdir()
    (run / "splits.json").write_text(json.dumps(record.to_dict()))
    got, notes = run_split(None, run)
    assert got.hash == record.hash and "splits.json" in notes[0]

    got, notes = run_split(None, tmp_path / "no-run", cfg, str(root))
    assert got.hash == record.hash and "recomputed" in notes[0]
    assert run_split(None, tmp_path / "no-run", cfg, str(tmp_path / "elsewhere")) == (None, [])
    assert run_split(None, None) == (None, [])
    assert isinstance(got, SplitRecord) and sum(len(got.splits[s]) for s in ("train", "val", "test")) == len(found)
