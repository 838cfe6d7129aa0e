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
