"""The page in a real browser: Debian's Chromium, driven by Playwright (no browser download), against
`unetkit serve` started as users start it. Upload a generated image, see the overlay at the image's size,
download the mask and compare it with `unetkit predict`'s."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving import running_server

CHROMIUM = Path(os.environ.get("UNETKIT_CHROMIUM", "/usr/bin/chromium"))
pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright")
if not CHROMIUM.is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: apt-get install chromium (or set UNETKIT_CHROMIUM)", allow_module_level=True
    )

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def server(trained_run):
    with running_server(trained_run.best_checkpoint) as (url, _):
        yield url


def test_page_overlays_and_downloads_the_predicted_mask(server, trained_run, tmp_path):
    from unetkit.cli import main

    rng = np.random.default_rng(3)
    image = (rng.random((53, 71, 3)) * 80).astype(np.uint8)  # odd size, dark noise with a bright disc
    yy, xx = np.mgrid[:53, :71]
    image[(yy - 26) ** 2 + (xx - 30) ** 2 < 15**2] = 220
    src = tmp_path / "upload.png"
    Image.fromarray(image).save(src)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(server + "/")
            page.wait_for_selector("#legend .class")  # the model's classes, fetched from /v1/model
            assert page.eval_on_selector_all("#legend .class", "s => s.map(e => e.textContent)") == [
                "background",
                "foreground",
            ]
            page.set_input_files("#file", str(src))
            page.wait_for_selector("#download:not([hidden])")
            overlay = page.eval_on_selector("#overlay", "c => [c.width, c.height, getComputedStyle(c).opacity]")
            shown = page.eval_on_selector("#image", "i => [i.naturalWidth, i.naturalHeight]")
            with page.expect_download() as download:
                page.click("#download")
            saved = tmp_path / "downloaded.png"
            download.value.save_as(saved)
        finally:
            browser.close()
    assert overlay[:2] == [71, 53] and shown == [71, 53] and float(overlay[2]) == 0.5
    assert main(["predict", str(trained_run.best_checkpoint), str(src), "--out", str(tmp_path / "cli")]) == 0
    expected = np.asarray(Image.open(tmp_path / "cli" / "upload.png"))
    got = np.asarray(Image.open(io.BytesIO(saved.read_bytes())))
    assert got.shape == expected.shape == (53, 71) and np.array_equal(got, expected)
    assert 0 < (got > 0).mean() < 1  # the disc is found, not all one class


def on_screen(page, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of image pixel position (x, y) under the page's current zoom and pan."""
    js = """([x, y]) => { const vp = document.getElementById('viewport').getBoundingClientRect();
        const v = window.unetkitState.view; return [vp.left + v.tx + v.s * x, vp.top + v.ty + v.s * y]; }"""
    return tuple(page.evaluate(js, [x, y]))


def page_mask(page) -> np.ndarray:
    """The mask the page would download (its data URL)."""
    import base64

    href = page.get_attribute("#download", "href")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1])))) > 0


def deepest(region: np.ndarray) -> tuple[int, int, float]:
    """(x, y, distance) of the pixel farthest inside a region."""
    from scipy import ndimage

    dt = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dt)), dt.shape)
    return int(x), int(y), float(dt.max())


def click_scenario(predictor, folder):
    """The first test image where a positive click inside a missed object grows the model's mask and a
    negative click on a false positive then shrinks it: (path, [mask after 0, 1, 2 clicks], clicks).
    The model's response to clicks is tested in test_click_training; here, that the page delivers it."""
    from unetkit.interactive.clicks import Click

    for path in sorted((folder / "images").iterdir()):
        gt = np.asarray(Image.open(folder / "masks" / path.name)) > 0
        image = predictor.seg.to_tensor(path)
        probs, clicks, masks, depths = None, [], [], []
        for step in range(3):
            probs = predictor.probs(image, clicks, None if probs is None else np.round(probs * 255) / 255)
            masks.append(probs > 0.49)
            if step < 2:
                x, y, depth = deepest(gt & ~masks[-1] if step == 0 else masks[-1] & ~gt)
                clicks.append(Click(y, x, step == 0))
                depths.append(depth)
        if min(depths) >= 2 and masks[1].mean() > masks[0].mean() > 0 and masks[2].mean() < masks[1].mean():
            return path, masks, clicks
    pytest.fail("no test image where the clicks change the mask as expected")


def test_clicks_on_the_page_grow_and_shrink_the_mask(click_run, learn_dir):
    """Upload, a positive click inside a missed object (the mask grows), a negative click on a false
    positive (it shrinks), undo (back to one click): each mask equals the ClickPredictor's."""
    from unetkit.infer.predict import Segmenter
    from unetkit.interactive.predictor import ClickPredictor

    # the server's precision: auto (bf16 where the CPU has it), as `unetkit serve` loads it
    predictor = ClickPredictor(Segmenter.load(click_run.best_checkpoint, "cpu", "auto"))
    path, expected, clicks = click_scenario(predictor, learn_dir / "test")

    def wait_clicks(page, n: int) -> float:
        page.wait_for_function(f"document.getElementById('status').dataset.clicks === '{n}'")
        return float(page.get_attribute("#status", "data-fraction"))

    with running_server(click_run.best_checkpoint) as (url, _), sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("#tools:not([hidden])")  # click mode: the model is a click model
            page.set_input_files("#file", str(path))
            fractions, masks = [wait_clicks(page, 0)], [page_mask(page)]
            for n, c in enumerate(clicks, 1):
                page.mouse.click(*on_screen(page, c.x + 0.5, c.y + 0.5), button="left" if c.positive else "right")
                fractions.append(wait_clicks(page, n))
                masks.append(page_mask(page))
            page.click("#undo")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('1 click')")
            after_undo = page_mask(page)
        finally:
            browser.close()
    assert fractions[1] > fractions[0] and fractions[2] < fractions[1]
    for got, want in zip(masks, expected, strict=True):
        assert np.array_equal(got, want)
    assert masks[1][clicks[0].y, clicks[0].x] and np.array_equal(after_undo, masks[1])


def rasterise(mask: np.ndarray, stroke: dict) -> None:
    """The page's brush rule, in Python: disks of radius r around points 1 px apart along the stroke."""
    points, pts = stroke["points"], []
    for k, (x1, y1) in enumerate(points):
        x0, y0 = points[max(0, k - 1)]
        n = max(1, int(np.ceil(np.hypot(x1 - x0, y1 - y0))))
        pts += [(x0 + (x1 - x0) * j / n, y0 + (y1 - y0) * j / n) for j in range(1 if k else 0, n + 1)]
    h, w = mask.shape
    r = stroke["r"]
    yy, xx = np.mgrid[:h, :w]
    for cx, cy in pts:
        mask[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = stroke["mode"] == "brush"


def test_label_two_images_with_clicks_and_a_brush_stroke(click_run, learn_dir, tmp_path):
    """annotate in the browser: one image by a click, one by a click and a brush stroke, each accepted
    with Enter; the written masks equal the ClickPredictor's masks (plus the stroke) pixel for pixel."""
    import shutil

    from unetkit.infer.inference import foreground
    from unetkit.infer.predict import Segmenter
    from unetkit.interactive.clicks import Click
    from unetkit.interactive.predictor import ClickPredictor

    folder = tmp_path / "todo"
    (folder / "images").mkdir(parents=True)
    for p in sorted((learn_dir / "test" / "images").iterdir())[:2]:
        shutil.copy(p, folder / "images" / p.name)
    predictor = ClickPredictor(Segmenter.load(click_run.best_checkpoint, "cpu", "auto"))
    flags = ("--model", str(click_run.best_checkpoint), "--no-learn")
    written, strokes, clicked = {}, {}, {}
    with running_server(folder, *flags, command="annotate") as (url, _), sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto(url + "/")
            for step in range(2):
                page.wait_for_function("document.getElementById('status').dataset.clicks === '0'")
                name = page.text_content("#name")
                gt = np.asarray(Image.open(learn_dir / "test" / "masks" / (Path(name).stem + ".png"))) > 0
                x, y, _ = deepest(gt)
                page.mouse.click(*on_screen(page, x + 0.5, y + 0.5))
                page.wait_for_function("document.getElementById('status').dataset.clicks === '1'")
                clicked[name] = Click(y, x, True)
                if step == 1:  # a brush stroke across the image's top rows
                    page.keyboard.press("b")
                    page.fill("#size", "3")
                    page.dispatch_event("#size", "input")
                    page.mouse.move(*on_screen(page, 5.2, 4.7))
                    page.mouse.down()
                    page.mouse.move(*on_screen(page, 30.6, 9.1), steps=5)
                    page.mouse.up()
                    strokes[name] = page.evaluate("window.unetkitState.strokes")
                page.keyboard.press("Enter")
                page.wait_for_function("(document.getElementById('status').dataset.written || '') !== ''")
                written[name] = page.get_attribute("#status", "data-written")
                page.evaluate("document.getElementById('status').dataset.written = ''")
        finally:
            browser.close()
    assert len(written) == 2
    for name, path in written.items():
        image = predictor.seg.to_tensor(folder / "images" / name)
        first = predictor.probs(image, [], None)
        probs = predictor.probs(image, [clicked[name]], np.round(first * 255) / 255)
        expected = foreground(probs, predictor.threshold)
        for stroke in strokes.get(name, []):
            assert stroke["r"] == 3 and len(stroke["points"]) >= 2
            rasterise(expected, stroke)
        got = np.asarray(Image.open(path))
        assert got.dtype == np.uint8 and set(np.unique(got)) <= {0, 255}
        assert np.array_equal(got > 0, expected), (name, int((got > 0).sum()), int(expected.sum()))
    assert len(strokes) == 1
