import json

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit.cli import main
from unetkit.config import DataConfig
from unetkit.data.check import check_dataset
from unetkit.data.datasets import SampleCache, SegmentationDataset
from unetkit.data.demo import make_sample, write_demo
from unetkit.data.imageio import IGNORE, DataError, MaskSpec, read_image, read_mask_raw, resize_mask
from unetkit.data.splits import Pair, find_pairs, read_splits, record_splits, split_pairs, write_splits


def make_folder(root, n=6, size=(20, 30), mask_ext=".png", image_ext=".jpg", suffix="", values=(0, 255)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"img{i}{image_ext}")
        mask = rng.choice(np.array(values, dtype=np.uint8), size=size)
        Image.fromarray(mask).save(root / "masks" / f"img{i}{suffix}{mask_ext}")
    return root


def test_pairs_match_by_stem_across_extensions_and_suffix(tmp_path):
    make_folder(tmp_path / "d", suffix="_mask", image_ext=".jpg", mask_ext=".png")
    pairs, problems = find_pairs(DataConfig(root=str(tmp_path / "d"), mask_suffix="_mask"))
    assert not problems
    assert len(pairs) == 6
    for p in pairs:
        assert p.mask.stem == p.image.stem + "_mask"


def test_seeded_split_is_deterministic_and_disjoint(tmp_path):
    pairs = [Pair(tmp_path / f"{i}.png", tmp_path / f"m{i}.png") for i in range(40)]
    a = split_pairs(pairs, (0.7, 0.15, 0.15), seed=3)
    b = split_pairs(list(reversed(pairs)), (0.7, 0.15, 0.15), seed=3)  # listing order does not matter
    assert {k: [p.image for p in v] for k, v in a.items()} == {k: [p.image for p in v] for k, v in b.items()}
    assert [len(a[s]) for s in ("train", "val", "test")] == [28, 6, 6]
    train, val, test = ({p.image for p in a[s]} for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    record = record_splits(DataConfig(root=str(tmp_path)), a)
    write_splits(record, tmp_path / "splits.json")
    saved = json.loads((tmp_path / "splits.json").read_text())
    assert len(saved["test"]) == 6 and saved["source"] == str(tmp_path.resolve())
    assert saved["test"][0][0] == a["test"][0].image.name  # relative to the data folder
    assert read_splits(tmp_path / "splits.json").hash == record.hash == saved["hash"]


def test_split_folders_are_used_and_val_cut_from_train_when_missing(tmp_path):
    for split, n in (("train", 10), ("test", 4)):
        make_folder(tmp_path / "d" / split, n=n)
    pairs, _ = find_pairs(DataConfig(root=str(tmp_path / "d")))
    splits = split_pairs(pairs, (0.7, 0.15, 0.15), 0)
    assert len(splits["test"]) == 4 and all("test" in str(p.image) for p in splits["test"])
    assert len(splits["val"]) >= 1 and all("/train/" in str(p.image) for p in splits["val"])
    assert len(splits["train"]) + len(splits["val"]) == 10


def test_csv_layout(tmp_path):
    make_folder(tmp_path / "d", n=4)
    lines = ["image,mask,split"] + [
        f"d/images/img{i}.jpg,d/masks/img{i}.png,{'train' if i < 3 else 'test'}" for i in range(4)
    ]
    (tmp_path / "list.csv").write_text("\n".join(lines))
    pairs, problems = find_pairs(DataConfig(csv=str(tmp_path / "list.csv")))
    assert not problems and len(pairs) == 4
    assert [p.split for p in pairs] == ["train"] * 3 + ["test"]


@pytest.mark.parametrize(
    "values,mode,expected",
    [((0, 255), "auto", {0, 1}), ((0, 1), "auto", {0, 1}), ((0, 1, 2, 3), "auto", {0, 1, 2, 3})],
)
def test_mask_encodings_gray(tmp_path, values, mode, expected):
    make_folder(tmp_path / "d", values=values)
    report, splits, spec = check_dataset(DataConfig(root=str(tmp_path / "d"), mask_mode=mode))
    assert report.ok
    ds = SegmentationDataset(splits["train"], spec)
    assert set(torch.cat([ds[i][1].flatten() for i in range(len(ds))]).unique().tolist()) == expected


def test_palette_and_rgb_masks(tmp_path):
    labels = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    pal = Image.fromarray(labels, mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.save(tmp_path / "p.png")
    assert (read_mask_raw(tmp_path / "p.png") == labels).all()
    colors = ((0, 0, 0), (255, 0, 0), (0, 255, 0))
    rgb = np.array(colors, dtype=np.uint8)[labels]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    spec = MaskSpec("rgb", 3, None, colors)
    assert (spec.encode(read_mask_raw(tmp_path / "rgb.png")) == labels).all()
    rgb[0, 0] = (1, 2, 3)
    with pytest.raises(DataError, match=r"colours \[\[1, 2, 3\]\] are not in the class colour table"):
        spec.encode(rgb, "rgb.png")


def test_ignore_value_maps_to_ignore_and_unknown_values_are_errors():
    raw = np.array([[0, 128, 255]], dtype=np.uint8)
    assert MaskSpec("binary", 2, 128).encode(raw).tolist() == [[0, IGNORE, 1]]
    with pytest.raises(DataError, match=r"m.png: 3 distinct values \(0, 128, 255\), expected \{0, 255\}"):
        MaskSpec("binary", 2, None).encode(raw, "m.png")
    assert MaskSpec("binary", 2, None, threshold=128).encode(raw).tolist() == [[0, 1, 1]]
    assert MaskSpec("index", 11, 11).encode(np.array([[0, 10, 11]])).tolist() == [[0, 10, IGNORE]]


def test_image_modes_bit_depths_and_exif(tmp_path):
    gray16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    t = read_image(tmp_path / "g16.png", 3)
    assert t.shape == (3, 3, 4)
    assert torch.allclose(t[0], torch.from_numpy(gray16 / 65535.0).float(), atol=1e-6)
    Image.fromarray(np.full((5, 6, 4), 200, np.uint8), "RGBA").save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png", 3).shape == (3, 5, 6)
    Image.fromarray(np.zeros((5, 6), np.uint8)).convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png", 3).shape == (3, 5, 6)
    # EXIF orientation 6 (rotate 90 degrees clockwise on display): 5x6 stored -> 6x5 read.
    img = Image.fromarray(np.zeros((5, 6, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert read_image(tmp_path / "rot.jpg", 3).shape == (3, 6, 5)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(DataError, match="has 3 channel"):
        read_image(tmp_path / "c.png", 1)


def test_masks_resize_nearest_only():
    mask = torch.tensor(np.random.default_rng(0).choice([0, 3, 7, IGNORE], size=(37, 41)).astype(np.uint8))
    for size in ((16, 16), (90, 70)):
        out = resize_mask(mask, size)
        assert out.shape == size
        assert set(out.unique().tolist()) <= {0, 3, 7, IGNORE}


def test_demo_is_deterministic_and_exact(tmp_path):
    a = make_sample(np.random.default_rng(5), (64, 64))
    b = make_sample(np.random.default_rng(5), (64, 64))
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert set(np.unique(a[1]).tolist()) <= {0, 255}
    out = write_demo(tmp_path / "demo", num_images=10, size=(32, 32), multiclass=True)
    report, splits, spec = check_dataset(DataConfig(root=str(out)))
    assert report.ok and spec.mode == "index" and spec.num_classes == 4
    assert sum(len(v) for v in splits.values()) == 10


def test_disk_cache_is_invalidated_when_a_file_changes(tmp_path):
    make_folder(tmp_path / "d", n=1, size=(8, 8))
    pairs, _ = find_pairs(DataConfig(root=str(tmp_path / "d")))
    spec = MaskSpec("binary", 2)
    ds = SegmentationDataset(pairs, spec, cache=SampleCache("disk", tmp_path / "cache"))
    first = ds[0][1].clone()
    assert len(list((tmp_path / "cache").glob("*.sample"))) == 1
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(pairs[0].mask)
    ds2 = SegmentationDataset(pairs, spec, cache=SampleCache("disk", tmp_path / "cache"))
    assert ds2[0][1].min() == 1 and not torch.equal(first, ds2[0][1])


def _bad_dataset(root):
    make_folder(root, n=8, size=(20, 30))
    (root / "images" / "img0.jpg").unlink()  # mask without image
    (root / "masks" / "img1.png").unlink()  # image without mask
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "img2.png")  # size mismatch
    (root / "images" / "img3.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # unreadable
    Image.fromarray(np.full((20, 30), 77, np.uint8)).save(root / "masks" / "img4.png")  # unknown value
    return root


def test_data_check_lists_each_problem_with_file_and_fix(tmp_path, capsys):
    root = _bad_dataset(tmp_path / "bad")
    code = main(["data", "check", str(root), "--mask-mode", "binary"])
    out = capsys.readouterr().out
    assert code == 1
    assert "img0.png: mask has no image" in out
    assert "img1.jpg: image has no mask" in out
    assert "img2.png: mask is 10x10 but its image is 30x20" in out
    assert "img3.jpg: cannot read image" in out
    assert "img4.png: 1 distinct value (77), expected {0, 255}" in out
    assert "fix:" in out


def test_data_check_wrong_channel_count(tmp_path, capsys):
    make_folder(tmp_path / "d", n=3)
    assert main(["data", "check", str(tmp_path / "d"), "--in-channels", "1"]) == 1
    assert "has 3 channel(s) but the model expects 1" in capsys.readouterr().out


def test_data_check_clean_dataset_summary(demo_dir, capsys):
    assert main(["data", "check", str(demo_dir)]) == 0
    out = capsys.readouterr().out
    assert "pairs per split: train" in out and "mask values found: 0, 255" in out
    assert "class pixel frequencies: background" in out and "no problems found" in out


def test_missing_data_folder_message(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nope")]) == 2
    assert "data folder not found" in capsys.readouterr().err


def test_older_splits_json_with_relative_paths_is_read_from_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "splits.json").write_text(json.dumps({"test": [{"image": "d/images/a.png", "mask": "d/masks/a.png"}]}))
    monkeypatch.chdir(tmp_path)
    record = read_splits(tmp_path / "splits.json")
    assert record.source == "/" and record.pairs("test")[0].image == tmp_path.resolve() / "d" / "images" / "a.png"
