"""The data check reports every problem by file and never gives up on a folder because of one;
the mask encoding comes from all masks; soft-edged binary sets are recognised and usable."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_dataset
from unetkit.cli import main
from unetkit.config import DataConfig
from unetkit.data.check import check_dataset, duplicate_problems
from unetkit.data.datasets import SegmentationDataset
from unetkit.data.splits import Pair


def write_pairs(root, masks: list[np.ndarray], split: str | None = None):
    base = root / split if split else root
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(masks))
    for i, m in enumerate(masks):
        Image.fromarray(rng.integers(0, 255, (*m.shape, 3), dtype=np.uint8)).save(base / "images" / f"{i:02d}.png")
        Image.fromarray(m).save(base / "masks" / f"{i:02d}.png")
    return root


def disk(size=32, soft=False) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    if soft:  # anti-aliased edge: a ramp from 255 to 0 over 3 pixels
        return (np.clip((10 - r) / 3, 0, 1) * 255).astype(np.uint8)
    return ((r < 9) * 255).astype(np.uint8)


def interpolated(mask: np.ndarray) -> np.ndarray:
    """A mask resized with bilinear interpolation: 0..255 ramps along its edges."""
    small = Image.fromarray(mask).resize((mask.shape[1] // 2, mask.shape[0] // 2), Image.BILINEAR)
    return np.asarray(small.resize(mask.shape[::-1], Image.BILINEAR))


def test_one_interpolated_mask_is_named_with_every_other_problem(tmp_path, capsys):
    masks = [disk() for _ in range(8)]
    masks[5] = interpolated(masks[5])
    root = write_pairs(tmp_path / "d", masks)
    (root / "masks" / "07.png").unlink()  # and an image without a mask
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "mask encoding: binary, 2 classes" in out
    n = len(np.unique(masks[5]))
    assert f"masks/05.png: {n} distinct values (0, " in out and "expected {0, 255}" in out
    assert "was it resized with interpolation?" in out
    assert "07.png: image has no mask" in out and "2 problem(s)" in out


def test_encoding_comes_from_every_mask_not_a_sample(tmp_path):
    masks = [np.zeros((8, 8), np.uint8) for _ in range(80)]
    for m in masks:
        m[:4] = 1
    masks[-1][0, 0] = 2  # the only mask with class 2 comes last
    report, _, spec = check_dataset(DataConfig(root=str(write_pairs(tmp_path / "d", masks))))
    assert report.ok and spec.mode == "index" and spec.num_classes == 3


def test_soft_edged_binary_set_is_recognised_and_trains_with_a_threshold(tmp_path, capsys):
    root = write_pairs(tmp_path / "d", [disk(soft=True) for _ in range(12)])
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "soft-edged binary masks: 12 of 12 masks hold values between 0 and 255" in out
    assert "pass --mask-threshold 128" in out and out.count("distinct values") == 0  # one finding, not 12
    assert main(["data", "check", str(root), "--mask-threshold", "128"]) == 0
    assert "foreground = values >= 128" in capsys.readouterr().out
    report, splits, spec = check_dataset(DataConfig(root=str(root), mask_threshold=128))
    mask = SegmentationDataset(splits["train"][:1], spec)[0][1]
    raw = np.asarray(Image.open(splits["train"][0].mask))
    assert torch.equal(mask, torch.from_numpy((raw >= 128).astype(np.uint8)))
    run = tmp_path / "run"
    flags = ["--widths", "4,8", "--size", "32,32", "--epochs", "1", "--precision", "fp32", "--sample-every", "0"]
    assert main(["train", "--data", str(root), "--out", str(run), "--mask-threshold", "128", *flags]) == 0
    other = write_pairs(tmp_path / "other", [disk(soft=True) for _ in range(4)])
    assert main(["evaluate", str(run / "checkpoints" / "best.pt"), "--data", str(other)]) == 0  # the model's threshold
    assert "4 images (all)" in capsys.readouterr().out


def test_duplicates_are_problems(tmp_path, capsys):
    root = write_pairs(tmp_path / "d", [disk() for _ in range(6)], "train")
    write_pairs(root, [disk() for _ in range(2)], "test")  # stems 00 and 01 again, in test/
    shutil.copy(root / "train" / "images" / "02.png", root / "train" / "images" / "05.png")  # same content
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "name '00' is in both train and test" in out and "name '01' is in both train and test" in out
    assert "05.png: same content as" in out and "02.png" in out
    line = "d/train/images/00.png,d/train/masks/00.png,{}\n"
    (tmp_path / "list.csv").write_text("image,mask,split\n" + line.format("train") + line.format("test"))
    assert main(["data", "check", str(tmp_path / "list.csv")]) == 1
    assert "00.png: listed twice" in capsys.readouterr().out
    # The same file twice in one split of a CSV is deliberate oversampling: a note, not a problem.
    (tmp_path / "over.csv").write_text(
        "image,mask,split\n" + line.format("train") * 3 + line.format("train").replace("00", "03")
    )
    assert main(["data", "check", str(tmp_path / "over.csv"), "--split", "1,0,0"]) == 0
    assert "2 pair(s) repeat another in the same split" in capsys.readouterr().out


def test_click_data_may_hold_one_picture_once_per_object(tmp_path):
    """Click data (objects_ok): a picture with other masks in its split is its other objects, a note;
    the same picture in two splits, or twice with the same mask, stays a problem."""
    for name, content in {"a.png": b"picture", "b.png": b"picture", "c.png": b"picture", "d.png": b"other"}.items():
        (tmp_path / name).write_bytes(content)
    for name in ("m1", "m2", "m3"):
        (tmp_path / f"{name}.png").write_bytes(name.encode())
    train = [
        Pair(tmp_path / "a.png", tmp_path / "m1.png", "train"),
        Pair(tmp_path / "b.png", tmp_path / "m2.png", "train"),
    ]
    problems, notes = duplicate_problems({"train": train}, objects_ok=True)
    assert problems == [] and notes == [
        "1 pair(s) share their picture with another pair of their split: its other objects"
    ]
    assert len(duplicate_problems({"train": train})[0]) == 1  # semantic masks: one picture, two labellings
    test = [Pair(tmp_path / "c.png", tmp_path / "m3.png", "test")]
    problems, _ = duplicate_problems({"train": train, "test": test}, objects_ok=True)
    assert [p.message for p in problems] == [f"same content as {tmp_path / 'a.png'} (train)"]
    twice = [*train, Pair(tmp_path / "c.png", tmp_path / "m1.png", "train")]  # a.png's object again
    assert len(duplicate_problems({"train": twice}, objects_ok=True)[0]) == 1


def test_duts2k_is_recognised_as_soft_edged(tmp_path):
    root = shared_dataset("duts2k")
    names = sorted(p.stem for p in (root / "images").iterdir())[:60]
    rows = ["image,mask"] + [f"{root}/images/{n}.jpg,{root}/masks/{n}.png" for n in names]
    (tmp_path / "duts.csv").write_text("\n".join(rows))
    report, _, spec = check_dataset(DataConfig(csv=str(tmp_path / "duts.csv")))
    assert any("soft-edged binary masks" in n for n in report.notes) and spec.mode == "binary"
    assert len(report.problems) == 1 and "--mask-threshold 128" in str(report.problems[0])
    report, _, spec = check_dataset(DataConfig(csv=str(tmp_path / "duts.csv"), mask_threshold=128))
    assert report.ok and spec.threshold == 128


@pytest.mark.parametrize("mode", ["binary", "auto"])
def test_binary_mask_of_a_single_stray_value(tmp_path, mode, capsys):
    masks = [disk() for _ in range(6)]
    masks[2] = np.full((32, 32), 77, np.uint8)
    root = write_pairs(tmp_path / "d", masks)
    assert main(["data", "check", str(root), "--mask-mode", mode]) == 1
    assert "masks/02.png: 1 distinct value (77), expected {0, 255}" in capsys.readouterr().out
