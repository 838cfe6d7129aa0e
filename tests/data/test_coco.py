"""Labels out of annotate: COCO RLE equal to pycocotools' (and decoded back), one annotation per
connected component with hand-checked area and bbox, and the unetkit CSV with a recorded split."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from unetkit.cli import main
from unetkit.data.formats.geometry import CocoRle, rle_encode
from unetkit.data.labels import export_labels
from unetkit.errors import DataError


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own numpy 2 warning
def test_rle_round_trips_exactly_through_pycocotools():
    coco_mask = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = rng.integers(1, 50, 2)
        m = rng.random((h, w)) < rng.random()
        ours = rle_encode(m)
        assert ours["size"] == [h, w] and isinstance(ours["counts"], str)  # as COCO JSON holds it
        assert np.array_equal(coco_mask.decode({**ours, "counts": ours["counts"].encode()}), m)
        assert np.array_equal(CocoRle((h, w), ours["counts"]).mask(h, w), m)


def labelled(tmp_path, masks: dict[str, np.ndarray]):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    for stem, mask in masks.items():
        Image.fromarray(np.zeros((*mask.shape, 3), np.uint8)).save(tmp_path / "images" / f"{stem}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"{stem}.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / "unlabelled.png")
    return tmp_path


def test_coco_export_one_annotation_per_component(tmp_path, capsys):
    a = np.zeros((10, 12), np.uint8)
    a[1:3, 2:5] = 255  # 2x3 at x=2, y=1
    a[6:10, 8:9] = 255  # 4x1 at x=8, y=6
    folder = labelled(tmp_path / "d", {"a": a, "b": np.zeros((10, 12), np.uint8)})
    out = tmp_path / "coco.json"
    assert main(["annotate", str(folder), "--export", "coco", str(out), "--classes", "background,cell"]) == 0
    assert "2 images, 2 annotations, categories cell" in capsys.readouterr().out
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["a.png", "b.png"]  # the unlabelled image is not there
    assert coco["categories"] == [{"id": 1, "name": "cell", "supercategory": "object"}]
    anns = sorted(coco["annotations"], key=lambda x: x["bbox"])
    assert [(x["area"], x["bbox"], x["image_id"], x["category_id"]) for x in anns] == [
        (6, [2, 1, 3, 2], 1, 1), (4, [8, 6, 1, 4], 1, 1)]  # fmt: skip
    union = np.logical_or.reduce([CocoRle((10, 12), x["segmentation"]["counts"]).mask(10, 12) for x in anns])
    assert np.array_equal(union, a > 0)


def test_multiclass_coco_and_the_csv_split(tmp_path, capsys):
    m = np.zeros((6, 6), np.uint8)
    m[0:2, 0:2], m[4:6, 4:6] = 1, 2
    folder = labelled(tmp_path / "d", {f"x{i}": m for i in range(10)})
    export_labels(folder, "coco", tmp_path / "c.json")
    coco = json.loads((tmp_path / "c.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["class_1", "class_2"] and len(coco["annotations"]) == 20
    print(export_labels(folder, "unetkit", tmp_path / "split.csv"))
    rows = list(csv.DictReader((tmp_path / "split.csv").open()))
    assert len(rows) == 10 and {r["split"] for r in rows} <= {"train", "val", "test"}
    assert sum(r["split"] == "train" for r in rows) >= 6
    with pytest.raises(DataError, match="--classes names 2 classes but the masks hold 3"):
        export_labels(folder, "coco", tmp_path / "c.json", ["background", "cell"])
    with pytest.raises(DataError, match="no masks yet"):
        export_labels(labelled(tmp_path / "empty", {}), "coco", tmp_path / "e.json")
    assert main(["annotate", str(folder), "--export", "tiff", str(tmp_path / "y")]) == 2
    assert "--export tiff: use coco | unetkit | yolo | labelme | voc" in capsys.readouterr().err
