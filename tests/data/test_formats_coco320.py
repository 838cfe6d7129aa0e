"""coco320 (../shared/data: 316 COCO photos, 2,671 instances in COCO's own JSON) through the COCO reader:
masks pixel for pixel as pycocotools' annToMask draws them, polygons traced back within IoU 0.99, and
`unetkit train --data annotations.json` training on it with COCO's class names."""

import json

import numpy as np
import pytest

from conftest import shared_dataset
from unetkit.cli import main
from unetkit.data.formats import read_labels
from unetkit.data.formats.geometry import Polygons, trace
from unetkit.data.formats.labelset import render

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def coco320():
    return shared_dataset("coco320") / "annotations.json"


def test_instances_and_masks_equal_pycocotools(coco320):
    from pycocotools.coco import COCO

    labels = read_labels(coco320)
    assert len(labels.images) == 316 and labels.num_instances + 28 == 2671 and len(labels.classes) == 81
    ref = COCO(str(coco320))
    for item, image_id in ((labels.images[0], 9), (labels.images[100], None)):
        image_id = image_id or int(item.entry.split()[-1])
        anns = ref.loadAnns(ref.getAnnIds(imgIds=[image_id]))
        for k, ann in enumerate(anns):  # instances in file order, one per annotation
            assert np.array_equal(item.instances[k].shape.mask(*item.size), ref.annToMask(ann).astype(bool))
        assert np.array_equal(render(item, "instances", target=0) == 1, ref.annToMask(anns[0]).astype(bool))
    by_id = {}
    for a in ref.dataset["annotations"]:
        by_id.setdefault(a["image_id"], []).append(a)
    differ = [
        (item.entry, k)
        for item in labels.images
        for k, ann in enumerate(by_id.get(int(item.entry.split()[-1]), []))
        if not ann["iscrowd"] and not np.array_equal(item.instances[k].shape.mask(*item.size), ref.annToMask(ann) > 0)
    ]
    assert not differ, f"{len(differ)} objects differ from annToMask, e.g. {differ[:3]}"


def test_polygons_traced_from_coco320_masks_keep_iou_099(coco320):
    labels = read_labels(coco320)
    ious = []
    for item in labels.images[::4]:  # a quarter of the images: ~670 objects, a few seconds
        for inst in item.instances:
            m = inst.shape.mask(*item.size)
            if inst.crowd or not m.any():
                continue
            back = Polygons(tuple(map(tuple, trace(m)))).mask(*item.size)  # the default tolerance, 0.5 px
            ious.append((m & back).sum() / (m | back).sum())
    assert len(ious) > 500 and min(ious) >= 0.99, (len(ious), min(ious))


def test_train_a_few_steps_on_the_coco_file(coco320, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(coco320), "--out", str(out), "--max-steps", "2", "--widths", "4,8",
            "--size", "32,32", "--batch-size", "4"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "coco labels in" in text or "classes: background, person, bicycle" in text
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["root"] == str(coco320)
    from unetkit.infer.checkpoint import load_model

    _, meta = load_model(out / "checkpoints" / "best.pt")
    assert meta.classes[:3] == ("background", "person", "bicycle") and len(meta.classes) == 81
