"""Labelling a folder through the annotate API: unlabelled images first (least confident first),
accepted masks written atomically as 0/255 PNGs, an existing mask replaced only when asked and then
kept as a backup, and the done count follows."""

import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from unetkit.infer.predict import Segmenter  # noqa: E402
from unetkit.serve.annotate import annotate_routes, scan  # noqa: E402
from unetkit.serve.app import create_app  # noqa: E402


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_label_two_images_through_the_api(open_client, click_run, learn_dir, tmp_path):
    folder = tmp_path / "todo"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    sources = sorted((learn_dir / "test" / "images").iterdir())[:3]
    for p in sources:
        shutil.copy(p, folder / "images" / p.name)
    labelled = sources[2].stem
    old = np.zeros((64, 64), np.uint8)
    Image.fromarray(old).save(folder / "masks" / f"{labelled}.png")

    seg = Segmenter.load(click_run.best_checkpoint, "cpu", "fp32")
    items = scan(folder, seg, progress=False)
    app = create_app(seg, add_ons=[annotate_routes(items)])
    client = open_client(app)

    info = client.get("/v1/model").json()
    assert {k: info["annotate"][k] for k in ("first", "total", "learning")} == {
        "first": 0,
        "total": 3,
        "learning": False,
    }
    assert info["annotate"]["colors"] == info["colors"] and info["colors"][1] != [255, 255, 255]  # visible on white
    listing = client.get("/v1/annotate/items").json()
    assert [it["has_mask"] for it in listing] == [False, False, True] and listing[0]["done"] == 1
    assert listing[0]["confidence"] <= listing[1]["confidence"]  # least confident first
    assert client.get("/v1/annotate/items/0/image").content == (folder / "images" / listing[0]["name"]).read_bytes()

    for i in (0, 1):  # the automatic mask, one positive click, accepted
        first = client.post(
            "/v1/interactive", files={"image": ("x.png", client.get(f"/v1/annotate/items/{i}/image").content)}
        ).json()
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(first["mask_png_base64"]))))
        r = client.post(f"/v1/annotate/items/{i}/mask", files={"mask": ("m.png", png(mask))}).json()
        written = folder / "masks" / (listing[i]["name"].rsplit(".", 1)[0] + ".png")
        assert r["written"] == str(written) and r["done"] == 2 + i
        saved = np.asarray(Image.open(written))
        assert saved.dtype == np.uint8 and set(np.unique(saved)) <= {0, 255}
        assert np.array_equal(saved > 0, mask > 0)
    assert not list((folder / "masks").glob(".*.tmp"))  # atomic: no temporary files left

    new = np.full((64, 64), 255, np.uint8)
    r = client.post("/v1/annotate/items/2/mask", files={"mask": ("m.png", png(new))})
    assert r.status_code == 409 and "overwrite" in r.json()["error"]
    assert (np.asarray(Image.open(folder / "masks" / f"{labelled}.png")) == 0).all()  # untouched
    r = client.post("/v1/annotate/items/2/mask", data={"overwrite": "true"}, files={"mask": ("m.png", png(new))})
    assert r.status_code == 200 and (np.asarray(Image.open(folder / "masks" / f"{labelled}.png")) == 255).all()
    backups = list((folder / "masks" / ".backup").iterdir())
    assert len(backups) == 1 and (np.asarray(Image.open(backups[0])) == 0).all()

    assert client.get("/v1/annotate/items/3").status_code == 404
    bad = client.post("/v1/annotate/items/0/mask", files={"mask": ("m.png", png(np.zeros((5, 5), np.uint8)))})
    assert bad.status_code == 422 and "64x64" in bad.json()["error"]


def test_annotate_needs_an_images_folder(click_run, tmp_path):
    from unetkit.errors import DataError

    seg = Segmenter.load(click_run.best_checkpoint, "cpu", "fp32")
    with pytest.raises(DataError, match="no images/ folder"):
        scan(tmp_path, seg)
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="no images"):
        scan(tmp_path, seg)


def test_a_bomb_or_wrong_mask_upload_is_a_4xx_never_a_500(open_client, click_run, learn_dir, tmp_path):
    """Every mask upload is checked by its PNG header before a pixel is decoded (issue 22: a bomb sent
    as a mask once answered 500)."""
    from test_app import png_header

    folder = tmp_path / "todo"
    (folder / "images").mkdir(parents=True)
    shutil.copy(sorted((learn_dir / "test" / "images").iterdir())[0], folder / "images" / "a.png")
    seg = Segmenter.load(click_run.best_checkpoint, "cpu", "fp32")
    client = open_client(create_app(seg, add_ons=[annotate_routes(scan(folder, seg, progress=False))]))
    cases = {
        "bomb": (png_header(100_000, 100_000), 413),
        "header of the right size, no pixels": (png_header(64, 64), 422),
        "jpeg": (b"\xff\xd8\xff\xe0" + b"\0" * 64, 422),
        "rgb": (png(np.zeros((64, 64, 3), np.uint8)), 422),
    }
    for name, (data, status) in cases.items():
        r = client.post("/v1/annotate/items/0/mask", files={"mask": ("m.png", data)})
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.json()["error"].startswith("mask: "), name
    assert not (folder / "masks").exists()  # nothing written


def test_flag_skip_and_the_next_unlabelled_image(open_client, click_run, learn_dir, tmp_path):
    """Flagged images are kept in DIR/.unetkit/flags.json, skipped by next_unlabelled and never trained
    on; an accept names its image, so a re-ranked list cannot put a mask on another image."""
    import json

    from unetkit.serve.annotate import Flags, accepted_pairs

    folder = tmp_path / "todo"
    (folder / "images").mkdir(parents=True)
    for p in sorted((learn_dir / "test" / "images").iterdir())[:3]:
        shutil.copy(p, folder / "images" / p.name)
    seg = Segmenter.load(click_run.best_checkpoint, "cpu", "fp32")
    items = scan(folder, seg, progress=False)
    client = open_client(create_app(seg, add_ons=[annotate_routes(items, classes=["background", "cell", "nucleus"])]))
    info = client.get("/v1/model").json()["annotate"]
    assert info["classes"] == ["background", "cell", "nucleus"] and len(info["colors"]) == 3
    names = [it.image.name for it in items]
    r = client.post("/v1/annotate/items/1/flag", data={"flagged": "true", "name": names[1]}).json()
    assert r["flagged"] and json.loads((folder / ".unetkit" / "flags.json").read_text()) == [names[1]]
    assert client.get("/v1/annotate/items/0").json()["next_unlabelled"] == 2  # 1 is flagged
    three = np.zeros((64, 64), np.uint8)
    three[:10, :10], three[20:30, 20:30] = 1, 2  # a multi-class folder keeps class indices
    r = client.post("/v1/annotate/items/0/mask", data={"name": names[0]}, files={"mask": ("m.png", png(three))})
    assert r.status_code == 200 and r.json()["next_unlabelled"] == 2
    assert np.array_equal(np.asarray(Image.open(folder / "masks" / (names[0].rsplit(".", 1)[0] + ".png"))), three)
    items[:] = [items[2], items[1], items[0]]  # a retrain re-ranked the list while the page had image 2 open
    moved = client.post("/v1/annotate/items/2/mask", data={"name": names[2]}, files={"mask": ("m.png", png(three))})
    assert moved.status_code == 200 and moved.json()["index"] == 0 and moved.json()["name"] == names[2]
    assert (folder / "masks" / (names[2].rsplit(".", 1)[0] + ".png")).is_file()
    gone = client.post("/v1/annotate/items/0/mask", data={"name": "nope.png"}, files={"mask": ("m.png", png(three))})
    assert gone.status_code == 404 and "no image named nope.png" in gone.json()["error"]
    Image.fromarray(three).save(folder / "masks" / (names[1].rsplit(".", 1)[0] + ".png"))  # flagged, with a mask
    flags = Flags(folder / ".unetkit" / "flags.json")
    assert sorted(p[0].name for p in accepted_pairs(items, flags)) == sorted([names[0], names[2]])
    client.post("/v1/annotate/items/1/flag", data={"flagged": "false"})
    assert Flags(folder / ".unetkit" / "flags.json").names == set()
