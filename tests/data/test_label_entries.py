"""A CSV may mix mask files with a label file's entries (FILE#ENTRY, as a run's splits.json names them):
how click training mixes DUTS masks with COCO instances (issue 45). Each kind of mask is read by its
own rule in one dataset, bad entries are named problems, and a resumed run finds the entries again."""

import json

import numpy as np
import pytest
from PIL import Image

from unetkit.config import DataConfig
from unetkit.data.csv_pairs import read_csv_pairs
from unetkit.data.datasets import SegmentationDataset
from unetkit.data.formats.pairs import LabelMask
from unetkit.data.imageio import IGNORE, MaskSpec
from unetkit.data.splits import find_pairs, load_splits, record_splits, split_pairs


def write_data(tmp_path):
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "b.png")
    soft = np.zeros((8, 10), np.uint8)
    soft[2:5, 2:5] = 200  # a soft-edged DUTS-like mask: >= 128 is the object
    soft[5, 2:5] = 60
    Image.fromarray(soft).save(tmp_path / "b_mask.png")
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 8}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0,
                            "segmentation": [[0, 0, 4, 0, 4, 2, 0, 2]]},
                           {"id": 2, "image_id": 1, "category_id": 3, "iscrowd": 0,
                            "segmentation": [[6, 4, 10, 4, 10, 8, 6, 8]]}],
           "categories": [{"id": 3, "name": "car"}]}  # fmt: skip
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    rows = ["image,mask,split", "b.png,b_mask.png,train", ",ann.json#imageid1/instances/1,train",
            "a.png,ann.json#imageid1/instances/0,val"]  # fmt: skip
    (tmp_path / "mix.csv").write_text("\n".join(rows) + "\n")
    return DataConfig(csv=str(tmp_path / "mix.csv"), mask_threshold=128)


def test_a_csv_mixes_mask_files_and_label_entries_each_read_by_its_rule(tmp_path):
    cfg = write_data(tmp_path)
    pairs, problems = find_pairs(cfg)
    assert (pairs, problems) == read_csv_pairs(tmp_path / "mix.csv") and problems == []
    assert [p.split for p in pairs] == ["train", "train", "val"]
    assert isinstance(pairs[1].mask, LabelMask) and pairs[1].image == tmp_path / "a.png"
    ds = SegmentationDataset(pairs, MaskSpec("binary", 2, threshold=128))
    soft = ds[0][1].numpy()
    assert soft.sum() == 9 and soft[2:5, 2:5].all()  # 200 -> 1, 60 -> 0 by the threshold
    second = ds[1][1].numpy()  # instance 1 is 1 (not thresholded away), instance 0 is background
    expect = np.zeros((8, 10), np.uint8)
    expect[4:8, 6:10] = 1
    assert np.array_equal(second, expect)
    first = ds[2][1].numpy()
    assert first[0:2, 0:4].all() and first.sum() == 8 and not (first == IGNORE).any()


@pytest.mark.parametrize(
    "mask, message",
    [("ann.json#imageid1/instances/7", "no such entry"), ("nope.json#imageid1/instances/0", "label file not found"),
     ("ann.json#imageid1/other", "must end in"), ],
)  # fmt: skip
def test_a_bad_entry_is_a_named_problem(tmp_path, mask, message):
    cfg = write_data(tmp_path)
    (tmp_path / "mix.csv").write_text(f"image,mask,split\n,{mask},train\nb.png,ann.json#imageid1/instances/0,test\n")
    pairs, problems = find_pairs(cfg)
    assert len(problems) == 2 and message in problems[0].message and problems[0].path.endswith("mix.csv:2")
    assert "is not the image of" in problems[1].message  # the image column disagrees with the label file


def test_a_resumed_run_finds_its_recorded_entries_again(tmp_path):
    cfg = write_data(tmp_path)
    record = record_splits(cfg, split_pairs(find_pairs(cfg)[0]))
    assert [m for _, m in record.splits["train"]] == ["ann.json#imageid1/instances/1", "b_mask.png"]
    again = load_splits(cfg, record)
    restored = again["train"][0].mask
    assert isinstance(restored, LabelMask) and restored.target == 1
    assert restored.read()[4:8, 6:10].all()
