"""Label formats: each reader on a hand-made file of its documented format (masks checked pixel by pixel
against values worked out by hand), the mask rule, the errors, tracing, writers read back, and the
tools' own code where it installs (pycocotools, label-studio-sdk's brush converter)."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from unetkit.cli import main
from unetkit.config import DataConfig
from unetkit.data.check import check_dataset, class_names
from unetkit.data.convert import TARGETS
from unetkit.data.formats import READERS, WRITERS, coco, cvat, labelme, labelstudio, read_labels, voc, yolo
from unetkit.data.formats.geometry import Polygons, trace
from unetkit.data.formats.labelset import render
from unetkit.data.formats.labelstudio import mask_to_rle, rle_decode
from unetkit.data.formats.source import label_source
from unetkit.data.records import Pair
from unetkit.data.splits import find_pairs
from unetkit.errors import DataError


def image(path, h=8, w=10, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return path


def box(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def coco_file(tmp_path, anns, cats=((1, "cat"), (7, "dog"))):
    image(tmp_path / "images" / "a.png")
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 8}],
           "annotations": [{"id": i + 1, "image_id": 1, **a} for i, a in enumerate(anns)],
           "categories": [{"id": i, "name": n} for i, n in cats]}  # fmt: skip
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    return tmp_path / "ann.json"


def test_coco_polygons_rle_and_crowd_by_the_written_rule(tmp_path):
    crowd = np.zeros((8, 10), np.uint8, order="F")
    crowd[6:8, 0:10] = 1
    import pycocotools.mask as cm

    rle = cm.encode(np.asfortranarray(crowd))
    path = coco_file(tmp_path, [
        {"category_id": 7, "segmentation": [box(0, 0, 6, 4)], "iscrowd": 0},  # dog, 6x4 = 24 px
        {"category_id": 1, "segmentation": [box(4, 2, 8, 7)], "iscrowd": 0},  # cat, 4x5 = 20 px: on top
        {"category_id": 1, "segmentation": {"size": [8, 10], "counts": rle["counts"].decode()}, "iscrowd": 1},
    ])  # fmt: skip
    labels = read_labels(path)
    assert labels.format == "coco" and labels.classes == ("background", "cat", "dog")
    assert labels.category_ids == {1: 1, 7: 2}
    item = labels.images[0]
    sem = render(item, "semantic")
    expect = np.zeros((8, 10), np.uint8)
    expect[0:4, 0:6] = 2
    expect[2:7, 4:8] = 1  # the smaller object is drawn last
    expect[6:8][expect[6:8] == 0] = 255  # crowd: ignored where no object covers it
    assert np.array_equal(sem, expect)
    dog_on_top = render(item, "semantic", overlap="order")  # file order: the cat (later) still wins here
    assert np.array_equal(dog_on_top, expect)
    assert np.array_equal(render(item, "binary"), np.where(expect == 255, 255, expect > 0).astype(np.uint8))
    dog = render(item, "instances", target=0)
    assert dog[0:4, 0:6].all() and dog.sum() == 24 + 255 * 20  # its own 24 pixels, the 20 crowd pixels ignored
    cfg = DataConfig(root=str(path), labels="instances")
    pairs = find_pairs(cfg)[0]
    assert len(pairs) == 2 and all(isinstance(p, Pair) for p in pairs)  # one per object, none for the crowd
    assert class_names(cfg, check_dataset(cfg)[2]) == ("background", "object")


@pytest.mark.parametrize("bad,message", [
    ({"category_id": 3, "segmentation": [box(0, 0, 2, 2)]}, "annotation 1 has category_id 3, which is not under"),
    ({"category_id": 1, "segmentation": [[0, 0, 2, 2]]}, "annotation 1: a polygon with fewer than 3 points"),
    ({"category_id": 1, "segmentation": {"size": [4, 4], "counts": "0"}}, "its RLE is 4x4 but the image is 10x8"),
    ({"category_id": 1, "bbox": [0, 0, 2, 2]}, "annotation 1 has no polygon or RLE segmentation"),
])  # fmt: skip
def test_coco_errors_name_the_file_the_entry_and_the_fix(tmp_path, capsys, bad, message):
    path = coco_file(tmp_path, [bad])
    with pytest.raises(DataError, match=message):
        read_labels(path)
    assert main(["data", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and message in err and "Traceback" not in err


def test_every_format_module_is_behind_the_seam(tmp_path):
    modules = {r.module for r in READERS.values()}
    assert modules == {coco, cvat, labelme, labelstudio, voc, yolo}
    assert set(WRITERS.values()) <= modules and TARGETS == ("unetkit", "coco", "yolo", "labelme", "voc")
    assert label_source(DataConfig(root=str(image(tmp_path / "images" / "a.png").parent.parent))) is None


def test_a_json_of_no_known_format_says_what_was_tried(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(DataError, match="tried COCO JSON, Label Studio JSON, LabelMe JSON"):
        read_labels(tmp_path / "x.json")


def test_a_missing_image_is_a_problem_named_by_the_check(tmp_path):
    path = coco_file(tmp_path, [{"category_id": 1, "segmentation": [box(0, 0, 2, 2)]}])
    doc = json.loads(path.read_text())
    doc["images"].append({"id": 2, "file_name": "gone.png", "width": 10, "height": 8})
    path.write_text(json.dumps(doc))
    report = check_dataset(DataConfig(root=str(path), split=(0.5, 0.5, 0.0)))[0]
    assert [p.message for p in report.problems] == ["image file not found (named by ann.json)"]
    assert report.problems[0].path.endswith("gone.png")


def test_labelme_folder_shapes_groups_and_inline_image(tmp_path, monkeypatch):
    monkeypatch.setenv("UNETKIT_CACHE", str(tmp_path / "cache"))
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(buf, format="PNG")
    shapes = [
        {"label": "leaf", "points": [[0, 0], [4, 0], [4, 4], [0, 4]], "shape_type": "polygon", "group_id": 1},
        {"label": "leaf", "points": [[6, 0], [8, 2]], "shape_type": "rectangle", "group_id": 1},  # same object
        {"label": "stem", "points": [[1, 6], [9, 7]], "shape_type": "rectangle", "group_id": None},
        {"label": "stem", "points": [[0, 0], [3, 3]], "shape_type": "line", "group_id": None},  # no area
    ]  # fmt: skip
    doc = {"shapes": shapes, "imagePath": "nowhere.png", "imageData": base64.b64encode(buf.getvalue()).decode(),
           "imageHeight": 8, "imageWidth": 10}  # fmt: skip
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "one.json").write_text(json.dumps(doc))
    labels = read_labels(tmp_path / "lm")
    assert labels.format == "labelme" and labels.classes == ("background", "leaf", "stem")
    assert "1 line shapes have no area" in labels.summary()
    item = labels.images[0]
    assert item.image.parent == tmp_path / "cache" / "labelme" and len(item.instances) == 2
    sem = render(item, "semantic")
    assert (sem == 1).sum() == 16 + 4 and (sem == 2).sum() == 8 and sem[6, 1] == 2


def test_yolo_dataset_normalised_polygons_and_line_errors(tmp_path):
    image(tmp_path / "images" / "train" / "a.png")
    image(tmp_path / "images" / "val" / "b.png")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.0 0.0 0.5 0.0 0.5 0.5 0.0 0.5\n")  # 5x4 px
    (tmp_path / "labels" / "val" / "b.txt").write_text("0 0.5 0.5 0.2 0.25\n")  # a box: 2x2 px at (4, 3)
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: car, 1: bus}\n")
    labels = read_labels(tmp_path)
    assert labels.classes == ("background", "car", "bus") and [i.split for i in labels.images] == ["train", "val"]
    a, b = (render(i, "semantic") for i in labels.images)
    assert (a[:4, :5] == 2).all() and (a == 2).sum() == 20 and (b[3:5, 4:6] == 1).all() and (b > 0).sum() == 4
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.1 0.1 0.5 0.2 0.3\n")
    with pytest.raises(DataError, match=r"a\.txt:1: 5 coordinates; a polygon needs x y pairs"):
        read_labels(tmp_path / "data.yaml")
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.1 0.1 1.5 0.2 0.3 0.3\n")
    with pytest.raises(DataError, match=r"a\.txt:1: coordinates outside \[0, 1\]"):
        read_labels(tmp_path / "data.yaml")


def test_voc_palette_pngs_border_objects_and_splits(tmp_path):
    from unetkit.data.formats.voc import palette

    root = tmp_path / "VOCdevkit" / "VOC2012"
    image(root / "JPEGImages" / "x.jpg")
    cls, obj = np.zeros((8, 10), np.uint8), np.zeros((8, 10), np.uint8)
    cls[1:4, 1:4], obj[1:4, 1:4] = 15, 1  # a person
    cls[5:7, 5:9], obj[5:7, 5:9] = 7, 2  # a car
    cls[4, :], obj[4, :] = 255, 255  # VOC's border
    for arr, sub in ((cls, "SegmentationClass"), (obj, "SegmentationObject")):
        (root / sub).mkdir(parents=True)
        png = Image.fromarray(arr)
        png.putpalette(palette())
        png.save(root / sub / "x.png")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("x\n")
    labels = read_labels(tmp_path)
    assert labels.classes[15] == "person" and labels.images[0].split == "val"
    assert np.array_equal(render(labels.images[0], "semantic"), cls)  # 255 read back as ignore
    assert len(find_pairs(DataConfig(root=str(tmp_path), labels="instances"))[0]) == 2


def test_cvat_xml_polygon_box_and_mask_rle(tmp_path):
    image(tmp_path / "images" / "a.png")
    (tmp_path / "ann.xml").write_text("""<annotations><version>1.1</version>
      <meta><task><labels><label><name>road</name></label><label><name>sign</name></label></labels></task></meta>
      <image id="0" name="a.png" width="10" height="8">
        <polygon label="road" points="0,4;10,4;10,8;0,8" z_order="0"/>
        <box label="sign" xtl="0" ytl="0" xbr="2" ybr="2" z_order="1"/>
        <mask label="sign" rle="1,2,1,2" left="6" top="0" width="3" height="2" z_order="1"/>
      </image></annotations>""")
    labels = read_labels(tmp_path / "ann.xml")
    sem = render(labels.images[0], "semantic")
    expect = np.zeros((8, 10), np.uint8)
    expect[4:, :] = 1
    expect[0:2, 0:2] = 2
    expect[0:2, 7:9] = 2  # rle 1,2,1,2 in the 3x2 box at x=6, row by row: 0 1 1 / 0 1 1
    assert labels.classes == ("background", "road", "sign") and np.array_equal(sem, expect)


def ls_task(tid, annotations):
    return {"id": tid, "data": {"image": f"/data/upload/1/abcdef12-{tid}.png"}, "annotations": annotations}


def test_label_studio_brush_polygon_and_the_annotator_rule(tmp_path):
    image(tmp_path / "images" / "1.png")
    brush = np.zeros((8, 10), bool)
    brush[2:5, 3:7] = True
    result = [{"type": "brushlabels", "original_width": 10, "original_height": 8,
               "value": {"format": "rle", "rle": mask_to_rle(brush), "brushlabels": ["fish"]}}]  # fmt: skip
    poly = [{"type": "polygonlabels", "original_width": 10, "original_height": 8,
             "value": {"points": [[0, 0], [50, 0], [50, 50], [0, 50]], "polygonlabels": ["rock"]}}]  # fmt: skip
    task = ls_task(1, [
        {"id": 1, "completed_by": 5, "updated_at": "2026-01-02", "result": result},
        {"id": 2, "completed_by": {"id": 6, "email": "b@x"}, "updated_at": "2026-01-01", "result": poly},
    ])  # fmt: skip
    (tmp_path / "export.json").write_text(json.dumps([task]))
    latest = read_labels(tmp_path / "export.json")
    assert latest.images[0].image == tmp_path / "images" / "1.png"  # upload prefix dropped
    assert "1 tasks have several annotations: the latest's used" in latest.summary()
    assert np.array_equal(render(latest.images[0], "binary"), brush.astype(np.uint8))
    theirs = read_labels(tmp_path / "export.json", annotator="b@x")
    sem = render(theirs.images[0], "semantic")
    assert (sem == theirs.classes.index("rock")).sum() == 20 and sem[:4, :5].all()
    result[0]["original_height"] = 9  # the RLE now holds fewer values than the image needs
    (tmp_path / "export.json").write_text(json.dumps([task]))
    with pytest.raises(DataError, match="task 1 result 0 \\(brushlabels\\): its brush RLE does not decode"):
        render(read_labels(tmp_path / "export.json").images[0], "semantic")


def test_label_studio_rle_against_its_own_converter():
    brush = pytest.importorskip("label_studio_sdk.converter.brush")
    rng = np.random.default_rng(0)
    for _ in range(10):
        h, w = rng.integers(1, 40, 2)
        m = rng.random((h, w)) < 0.3
        theirs = brush.decode_rle(mask_to_rle(m)).reshape(h, w, 4)[..., 3]  # they decode ours
        assert np.array_equal(theirs > 0, m)
        ours = rle_decode(brush.mask2rle((m * 255).astype(np.uint8)), h * w * 4)  # we decode theirs
        assert np.array_equal(ours.reshape(h, w, 4)[..., 3] > 0, m)


def test_tracing_gives_back_the_pixels_holes_and_diagonals_included():
    rng = np.random.default_rng(1)
    from scipy import ndimage

    for _ in range(60):
        m = rng.random(tuple(rng.integers(3, 20, 2))) < 0.6
        labels, n = ndimage.label(m, np.ones((3, 3)))
        for k in range(1, n + 1):
            part = labels == k
            rings = trace(part, tolerance=0)  # pixel corners: exact
            assert np.array_equal(Polygons(tuple(map(tuple, rings))).mask(*m.shape), part)
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6], ring[3, 3] = True, False
    assert len(trace(ring, 0)) == 1  # one polygon, the hole joined in by a zero-width cut


@pytest.mark.parametrize("to", ["coco", "yolo", "labelme", "voc", "unetkit"])
def test_convert_writes_what_reads_back(tmp_path, to, capsys):
    src = tmp_path / "src"
    for i in range(3):
        image(src / "images" / f"p{i}.png", value=i * 40)
        mask = np.zeros((8, 10), np.uint8)
        mask[1:4, 1 + i : 5 + i], mask[5:8, 2:9] = 1, 2
        mask[6, 5] = 0  # a hole in class 2
        (src / "masks").mkdir(exist_ok=True)
        Image.fromarray(mask).save(src / "masks" / f"p{i}.png")
    out = tmp_path / "out"
    assert main(["data", "convert", str(src), str(out), "--to", to, "--classes", "bg,cell,wall"]) == 0
    assert f"wrote {out} ({to}): 3 images" in capsys.readouterr().out
    back = out if to != "coco" else out / "annotations.json"
    cfg = DataConfig(root=str(back), classes=("bg", "cell", "wall") if to == "unetkit" else ())
    report, splits, spec = check_dataset(cfg)
    assert report.ok and class_names(cfg, spec)[1:] == ("cell", "wall")
    from unetkit.data.imageio import read_mask_raw

    for p in (p for s in splits.values() for p in s):
        i = int(p.image.stem[1])
        expect = np.zeros((8, 10), np.uint8)
        expect[1:4, 1 + i : 5 + i], expect[5:8, 2:9] = 1, 2
        expect[6, 5] = 0
        assert np.array_equal(spec.encode(read_mask_raw(p.mask)), expect), (to, p.image.name)
    assert main(["data", "convert", str(src), str(out), "--to", to]) == 2  # never over an existing folder
    assert "exists and is not empty" in capsys.readouterr().err


def test_a_large_coco_file_is_indexed_without_drawing_a_mask(tmp_path, monkeypatch):
    """10,000 images: the data check (what training runs first) reads headers, never renders; the first
    batch renders only its own samples."""
    from unetkit.data.formats import labelset

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(10_000):
        Image.fromarray(np.full((4, 4), i % 251, np.uint8)).save(folder / f"{i}.png")
    doc = {"images": [{"id": i, "file_name": f"{i}.png", "width": 4, "height": 4} for i in range(10_000)],
           "annotations": [{"id": i, "image_id": i, "category_id": 1, "segmentation": [box(0, 0, 2, 2 + i % 2)]}
                           for i in range(10_000)], "categories": [{"id": 1, "name": "dot"}]}  # fmt: skip
    (tmp_path / "big.json").write_text(json.dumps(doc))
    drawn = []
    real = labelset.render
    monkeypatch.setattr(labelset, "render", lambda *a, **k: drawn.append(1) or real(*a, **k))
    from unetkit.data.formats import pairs

    monkeypatch.setattr(pairs, "render", labelset.render)
    cfg = DataConfig(root=str(tmp_path / "big.json"), labels="binary")
    report, splits, _ = check_dataset(cfg)
    assert report.counts["train"] == 7000 and drawn == []
    from unetkit.data.datasets import SegmentationDataset
    from unetkit.data.formats.pairs import label_spec

    ds = SegmentationDataset(splits["train"][:8], label_spec(splits["train"][0].mask.labels, "binary"))
    assert [int(ds[i][1].sum()) for i in range(8)] and len(drawn) == 8


def test_a_polygon_rasterised_in_its_box_equals_pycocotools_on_the_whole_image():
    """Polygons.mask draws a small object inside its box only; its pixels must be pycocotools' own, at
    coordinates on rounding ties (x.1, x.3, ...: 5x + 0.5 lands on an integer), outside the image,
    on its edges, in several rings, and for objects large enough to take the whole-image path."""
    from unetkit.data.formats.geometry import Polygons

    cm = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    h, w = 97, 131
    for trial in range(300):
        rings = []
        for _ in range(1 + trial % 3):
            cx, cy = rng.uniform(-10, w + 10), rng.uniform(-10, h + 10)
            r = rng.uniform(0.5, 12 if trial % 4 else 80)
            angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 12)))
            pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).ravel()
            rings.append(tuple(np.round(pts, 1 if trial % 2 else 2).tolist()))
        rles = cm.frPyObjects([list(r) for r in rings], h, w)
        want = cm.decode(cm.merge(rles)) > 0
        assert np.array_equal(Polygons(tuple(rings)).mask(h, w), want), f"trial {trial}: {rings}"
