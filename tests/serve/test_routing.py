"""Per-picture routing between the base and the retrained click model: the picture signature, the
nearest held-out pictures' vote, the leave-one-out scoring a candidate is promoted on, and the
served object that picks a model per request."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit.serve.http import Served
from unetkit.serve.promotion import group_scores
from unetkit.serve.routing import (
    Row,
    image_score,
    left_out_choices,
    route_setter,
    signature,
    use_tuned,
    write_routed,
)


def grey_cells(seed: int) -> np.ndarray:
    """An EM-like grey picture: blobs on a noisy grey ground."""
    rng = np.random.default_rng(seed)
    g = rng.normal(128, 20, (96, 128)).clip(0, 255)
    yy, xx = np.mgrid[:96, :128]
    for _ in range(6):
        cy, cx = rng.integers(10, 86), rng.integers(10, 118)
        g[(yy - cy) ** 2 + (xx - cx) ** 2 < 60] = 60
    return np.repeat(g[..., None], 3, 2).astype(np.uint8)


def colour_photo(seed: int) -> np.ndarray:
    """A saturated picture: a red and a green half, a blue square."""
    rng = np.random.default_rng(seed)
    a = np.zeros((96, 128, 3), np.uint8)
    a[:, :64, 0], a[:, 64:, 1] = 200, 180
    y, x = rng.integers(0, 60), rng.integers(0, 90)
    a[y : y + 30, x : x + 30] = (20, 40, 220)
    return a


def test_a_signature_is_one_unit_vector_however_the_picture_is_held():
    a = colour_photo(0)
    s = signature(a)
    assert s.shape == (36,) and s.dtype == np.float32 and abs(float(np.linalg.norm(s)) - 1) < 1e-5
    np.testing.assert_allclose(signature(a.astype(np.float32) / 255), s, atol=1e-6)  # as uploads are decoded
    np.testing.assert_allclose(signature(torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)), s, atol=1e-6)
    grey = grey_cells(0)
    np.testing.assert_allclose(signature(grey[..., :1]), signature(grey), atol=1e-6)  # one channel = three
    # pictures of one kind are closer to each other than to the other kind
    assert signature(grey_cells(1)) @ signature(grey) > signature(colour_photo(1)) @ signature(grey) + 0.2
    assert signature(colour_photo(1)) @ s > signature(grey_cells(1)) @ s + 0.2


def test_an_image_score_is_its_clicks_less_its_mean_iou():
    assert image_score(3, [0.5, 0.8, 0.95]) == pytest.approx(3 - 0.75)
    assert image_score(10, [0.2, 0.4]) < image_score(10, [0.1, 0.3])  # both capped: the closer one costs less


def rows_of_two_kinds() -> list[Row]:
    """Three grey pictures where the tuned model needed 3 clicks fewer, three colour ones where it needed 3 more."""
    grey = [Row(f"g{i}", signature(grey_cells(i)), base=6.0, tuned=3.0) for i in range(3)]
    colour = [Row(f"c{i}", signature(colour_photo(i)), base=2.0, tuned=5.0) for i in range(3)]
    return grey + colour


def test_the_nearest_held_out_pictures_decide_and_a_tie_keeps_the_base():
    rows = rows_of_two_kinds()
    assert use_tuned(signature(grey_cells(7)), rows, k=3)  # its 3 nearest: grey, -3 each
    assert not use_tuned(signature(colour_photo(7)), rows, k=3)  # colour: +3 each
    # k=6: three of the six favour the base -> the base everywhere (each neighbour must favour the tuned one)
    assert not use_tuned(signature(grey_cells(7)), rows, k=6)
    close = [Row(f"g{i}", signature(grey_cells(i)), 6.0, 5.99 if i else 6.0) for i in range(3)]
    assert not use_tuned(signature(grey_cells(7)), close, k=3) and use_tuned(signature(grey_cells(7)), close[1:], k=2)
    tie = [Row("a", signature(grey_cells(0)), 3.0, 3.0)]
    assert not use_tuned(signature(grey_cells(1)), tie) and not use_tuned(signature(grey_cells(1)), [])
    # leave one out: each picture decided by the others of its kind
    assert left_out_choices(rows, k=2) == [True, True, True, False, False, False]


def per_image(path, nocs: dict[str, float]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "noc85", "noc90", "iou_1", "iou_2"])
        for image, n in nocs.items():
            w.writerow([image, n, n, "0.5000", "0.9500" if n <= 2 else "0.8000"])


def test_the_routed_scores_take_each_mask_from_the_model_the_others_pick(tmp_path):
    files = {}
    for i in range(3):
        files[f"g{i}"] = tmp_path / f"g{i}.png"
        Image.fromarray(grey_cells(i)).save(files[f"g{i}"])
        files[f"c{i}"] = tmp_path / f"c{i}.png"
        Image.fromarray(colour_photo(i)).save(files[f"c{i}"])
    base = {str(files[f"g{i}"]): 10 for i in range(3)} | {str(files[f"c{i}"]): 2 for i in range(3)}
    tuned = {str(files[f"g{i}"]): 2 for i in range(3)} | {str(files[f"c{i}"]): 10 for i in range(3)}
    per_image(tmp_path / "base.csv", base)
    per_image(tmp_path / "tuned.csv", tuned)
    rows, choices = write_routed(tmp_path / "base.csv", tmp_path / "tuned.csv", tmp_path / "routed.csv", k=2)
    assert choices == [True, True, True, False, False, False]  # cells by the tuned model, photos by the base
    assert [r.image for r in rows] == list(base) and rows[0].base == pytest.approx(10 - 0.65)
    routed = {r["image"]: int(r["noc90"]) for r in csv.DictReader((tmp_path / "routed.csv").open())}
    assert set(routed.values()) == {2}  # the best of both on every mask
    everything = {"all": set(base)}
    assert group_scores(tmp_path / "routed.csv", everything)["all"]["noc90"] == 2.0
    assert group_scores(tmp_path / "base.csv", everything)["all"]["noc90"] == 6.0
    per_image(tmp_path / "other.csv", {"elsewhere.png": 1})
    with pytest.raises(ValueError, match="other masks"):
        write_routed(tmp_path / "base.csv", tmp_path / "other.csv", tmp_path / "x.csv")


def test_the_served_object_routes_each_picture_once_a_table_is_set():
    served = Served("tuned")
    assert served.pick(grey_cells(0)) == "tuned"  # no routing yet: the served model
    loads = []
    set_route = route_setter(served, lambda: loads.append(1) or "base")
    table = [r.to_dict() for r in rows_of_two_kinds()]
    set_route(table)
    assert served.pick(grey_cells(9)) == "tuned" and served.pick(colour_photo(9)) == "base"
    set_route(table)
    assert loads == [1]  # the base model loaded once
    assert Row.from_dict(table[0]).base == 6.0 and len(table[0]["signature"]) == 36
    set_route(None)
    assert served.pick(colour_photo(9)) == "tuned"


def test_the_likeness_bound_parts_real_kinds_of_pictures():
    """The numbers behind SIMILAR: the slices of one ISBI stack and every 5th frame of one CamVid video
    are >= 0.98 alike (nearest other), while a black-and-white COCO photo stays below the bound against
    every ISBI slice (annotate_sim's mixed folder had routed it to a model tuned on cells), as GrabCut's
    photos do against both."""
    import glob

    from conftest import shared_dataset
    from unetkit.serve.routing import SIMILAR

    def sigs(pattern: str) -> np.ndarray:
        return np.stack([signature(np.asarray(Image.open(f).convert("RGB"))) for f in sorted(glob.glob(pattern))])

    def nearest_other(s: np.ndarray) -> float:
        m = s @ s.T
        np.fill_diagonal(m, -1)
        return float(m.max(1).min())

    cells = sigs(str(shared_dataset("isbi2012_em") / "train" / "images" / "*.png"))
    frames = sigs(str(shared_dataset("camvid") / "test" / "images" / "0001TP_*.png"))[:60:5]
    photos = sigs(str(shared_dataset("grabcut") / "images" / "*"))
    plane = sigs(str(shared_dataset("coco320") / "images" / "000000221184.jpg"))
    assert len(cells) == 30 and len(frames) == 12 and len(photos) >= 30
    assert nearest_other(cells) >= 0.98 and nearest_other(frames) >= 0.99
    assert 0.9 < float((plane @ cells.T).max()) < SIMILAR  # alike, but not enough to be routed with them
    assert float((photos @ cells.T).max()) < SIMILAR and float((photos @ frames.T).max()) < SIMILAR
