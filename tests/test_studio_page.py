"""The studio page in a real browser: Playwright driving Debian's Chromium (never Playwright's own download).

Skipped only on a developer machine without /usr/bin/chromium; in CI (``CI`` set) a missing browser fails,
because .ci/run installs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_pairs, small_photo, tiny_style_run

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("fastapi")
if os.environ.get("CI"):
    from playwright import sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api")


def _pixels(data_url: str) -> bytes:
    import base64
    import io

    with Image.open(io.BytesIO(base64.b64decode(data_url.split("base64,", 1)[1]))) as img:
        return img.tobytes()


def _open(browser, url: str, height: int = 900):
    """A new page at ``url`` (1440 px wide) and the list its script errors go to."""
    page = browser.new_page(viewport={"width": 1440, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    return page, errors


@pytest.fixture(scope="module")
def page_url(tiny_run, tmp_path_factory):
    from atelier.serve import background, create_app
    from atelier.serve.settings import StudioSettings

    home = tmp_path_factory.mktemp("studio-home")  # this module's own database and gallery
    with background(create_app(tiny_run.parent, settings=StudioSettings(home=home))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                               args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                     "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def test_grid_pick_vary_interpolate_favourite_download(browser, page_url, tmp_path):
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Offline: any request that leaves the studio's own origin is a failure.
    outside: list[str] = []
    own = (page_url, "data:", "blob:")
    page.on("request", lambda req: None if req.url.startswith(own) else outside.append(req.url))
    page.goto(page_url)

    page.wait_for_selector("#grid .tile img")
    tiles = page.locator("#grid .tile")
    assert tiles.count() == 16
    assert tiles.nth(0).locator(".seed").inner_text() == "#0"  # the seed is shown
    assert "tiny-dcgan" in page.locator("#stage-title").inner_text()

    # Next page of seeds, then back: reproducible.
    first = tiles.nth(3).locator("img").get_attribute("src")
    page.click("#next")
    page.wait_for_function("document.querySelector('#grid .tile .seed').textContent === '#16'")
    page.click("#prev")
    page.wait_for_function("document.querySelector('#grid .tile .seed').textContent === '#0'")
    assert _pixels(tiles.nth(3).locator("img").get_attribute("src")) == _pixels(first)  # same pixels, new timestamp

    # Pick a candidate: inspector + variations around it.
    tiles.nth(3).click()
    page.wait_for_selector("#variations .tile img")
    assert page.locator("#sel-seed").inner_text() == "3"
    assert page.locator("#variations .tile").count() == 8

    # Interpolate between two picks.
    page.click("#set-a")
    tiles.nth(8).click()
    page.click("#set-b")
    page.wait_for_selector("#strip .tile img")
    assert page.locator("#strip .tile").count() == 10

    # Favourite it: kept in the studio's gallery, so the tray survives a reload (and another browser).
    page.click("#fav")
    page.wait_for_function("document.querySelector('#fav-count').textContent === '1'")
    page.reload()
    page.wait_for_selector("#favourites .tile img")
    assert page.locator("#fav-count").inner_text() == "1"
    assert page.locator("#favourites .tile .seed").inner_text() == "#8"  # the picked candidate's seed

    # Download: the file carries atelier's provenance.
    page.locator("#grid .tile").nth(5).click()
    page.wait_for_selector("#variations .tile img")
    with page.expect_download() as dl:
        page.click("#download")
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    assert dl.value.suggested_filename == "atelier-tiny-dcgan-seed5.png"
    with Image.open(path) as img:
        assert img.size == (224, 224)  # 28 px enlarged 8x, the page's default download size
        meta = dict(img.text)
    assert meta["DigitalSourceType"] == "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    assert meta["atelier:run"] == "tiny-dcgan" and meta["atelier:seed"] == "5"
    assert meta["atelier:workflow"] == "studio-generate" and meta["atelier:scale"] == "8"
    assert len(meta["atelier:watermark"]) == 8  # 224 px: large enough for the invisible watermark too

    # The page's own provenance check recognises the download (watermark matched to the served run).
    page.locator(".upload input").set_input_files(str(path))
    page.wait_for_function("document.querySelector('#sel-extra').textContent.includes('made by atelier')")
    assert "run tiny-dcgan" in page.locator("#sel-extra").inner_text()

    # The truncation slider regenerates the grid with the new ψ.
    before = tiles.nth(0).locator("img").get_attribute("src")
    page.locator("#psi").fill("0.5")
    page.wait_for_function("document.querySelector('#stage-sub').textContent.includes('ψ 0.50')")
    assert _pixels(tiles.nth(0).locator("img").get_attribute("src")) != _pixels(before)
    assert not errors, errors
    assert not outside, outside
    ctx.close()


def test_server_errors_are_shown_and_seeds_stay_in_range(browser, page_url):
    page = browser.new_page()
    page.goto(page_url)
    page.wait_for_selector("#grid .tile img")
    page.fill("#seed", "2147483647")
    page.dispatch_event("#seed", "change")
    # The page clamps the first seed so the whole grid stays in range, rather than asking for an invalid one.
    page.wait_for_function("document.querySelector('#stage-sub').textContent.startsWith('Seeds 2147483631')")
    assert page.locator("#error").is_hidden()
    # A 4xx from the server is shown as its one-line message.
    page.route("**/api/generate", lambda route: route.fulfill(
        status=429, content_type="application/json",
        body='{"detail": "the server is busy (128 requests are already in line); retry in a moment"}'))
    page.click("#generate")
    page.wait_for_selector("#error:not([hidden])")
    assert "the server is busy" in page.locator("#error").inner_text()
    page.close()


def test_the_api_page_renders_with_the_network_blocked(browser, page_url, tmp_path):
    """/docs is Swagger UI served from the installed swagger-ui-bundle, not from a CDN: it renders offline."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith(page_url):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(f"{page_url}/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    paths = [t.strip() for t in page.locator(".opblock-summary-path").all_inner_texts()]
    assert "/api/generate" in paths and len(paths) >= 5, paths
    assert blocked == [], blocked
    page.screenshot(path=str(tmp_path / "docs.png"))
    ctx.close()


def test_the_gallery_reopens_an_image_s_settings(browser, page_url):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(page_url)
    page.fill("#seed", "40")
    page.dispatch_event("#seed", "change")
    page.wait_for_function("(document.querySelector('#grid .tile .seed') || {}).textContent === '#40'")
    page.click("[data-view=gallery]")
    page.wait_for_selector("#gallery .tile img")
    page.locator("#gallery .tile", has_text="#45").first.click()
    assert page.locator("#sel-seed").inner_text() == "45" and page.locator("#reopen").is_visible()
    assert page.locator("#set-a").is_hidden()
    page.click("#reopen")  # back in Create, on that seed, with its variations
    page.wait_for_selector("#variations .tile img")
    assert page.locator("#view-create").is_visible() and page.locator("#sel-seed").inner_text() == "45"
    assert page.locator("#grid .tile.on .seed").inner_text() == "#45"
    page.close()


@pytest.fixture(scope="module")
def kinds_url(tiny_run, tmp_path_factory):
    """A studio serving one model of every kind: a generator, a translator (pix2pix) and a style network."""
    import atelier
    from atelier.serve import background, create_app
    from atelier.serve.settings import StudioSettings

    tmp = tmp_path_factory.mktemp("kinds")
    runs = tmp / "runs"
    runs.mkdir()
    (runs / tiny_run.name).symlink_to(tiny_run, target_is_directory=True)
    train, test = make_pairs(tmp / "train"), make_pairs(tmp / "test", n=3, seed=1)
    atelier.train(None, runs / "facades", {
        "data.source": str(train), "data.eval_source": str(test), "data.paired": "side_by_side",
        "data.resolution": 32, "data.load_size": 36, "data.channels": 3, "model.name": "pix2pix", "model.ngf": 4,
        "model.ndf": 4, "train.batch_size": 2, "train.steps": 4, "train.device": "cpu", "train.precision": "fp32",
        "train.channels_last": False, "log.every": 2, "log.sample_every": 2, "log.checkpoint_every": 2,
        "log.tensorboard": False}, progress=False)
    photos = tmp / "photos"
    photos.mkdir()
    for i in range(3):
        small_photo(photos / f"{i}.png", 40)
    tiny_style_run(runs / "wave", photos, small_photo(tmp / "style.png", 40), steps=3)
    with background(create_app(runs, settings=StudioSettings(home=tmp / "home"))) as url:
        yield url


def test_every_kind_of_model_has_a_thumbnail_a_card_and_an_action(browser, kinds_url, tmp_path):
    """Issue 16, item 11: translators and style networks had black thumbnails, no card and no action."""
    page, errors = _open(browser, kinds_url, height=900)
    page.wait_for_selector("#grid .tile img")
    assert page.locator(".model").count() == 3
    # Every thumbnail is a loaded picture (a sample for the generator, the latest progress grid for the others).
    page.wait_for_function("[...document.querySelectorAll('.model img')].every((i) => i.naturalWidth > 0)")
    for name, noun, key, family in (("facades", "translation", "Translate", "pix2pix"),
                                    ("wave", "restyling", "Restyle", "fast-style")):
        page.click(f".model[data-name={name}]")
        # The stage shows the model's tool: an example input from its own data, and the model's result.
        page.wait_for_function("document.querySelector('#tool-output').naturalWidth > 0")
        assert page.locator("#tool-panel").is_visible() and page.locator("#grid").is_hidden()
        assert page.locator("#controls").is_hidden()
        assert page.evaluate("document.querySelector('#tool-input').naturalWidth") > 0
        assert page.locator("#tool-input-name").inner_text() == "the example from its data"
        assert key.lower() in page.locator("#stage-sub").inner_text()
        # The result is labelled by what it is, not as a "seed upload".
        assert page.locator("#sel-key").inner_text() == "input"
        assert page.locator("#sel-seed").inner_text() == "the example from its data"
        assert f"{noun} by {name}" in page.locator("#sel-extra").inner_text()
        assert page.locator("#card-panel").is_visible() and f"Family: {family}" in page.locator("#card").inner_text()
        # An upload of one's own goes through the same panel, and lands in the gallery.
        page.set_input_files("#tool-file", str(small_photo(tmp_path / "content.png", 64)))  # a cat, with the data
        page.wait_for_function("document.querySelector('#sel-seed').textContent === 'content.png'")
        page.wait_for_function("!document.querySelector('#fav').disabled")
        shots = Path(os.environ.get("ATELIER_SCREENSHOTS") or tmp_path)  # the manual's: docs/images/studio
        page.screenshot(path=str(shots / f"7-{name}.png"))
    page.click("[data-view=gallery]")
    page.wait_for_selector("#gallery .tile img")
    tags = page.locator("#gallery .tile .seed").all_inner_texts()
    assert (tags.count("translation"), tags.count("restyling")) == (2, 2), tags  # the example and the upload
    assert not errors, errors
    page.close()


def _data_url_array(data_url: str):
    import base64
    import io

    import numpy as np

    with Image.open(io.BytesIO(base64.b64decode(data_url.split("base64,", 1)[1]))) as img:
        return np.asarray(img.convert("RGBA")), dict(getattr(img, "text", {}))


def test_the_region_editor_paints_a_mask_and_keeps_the_rest_exact(browser, kinds_url, tmp_path):
    """Issue 22: open a picture, paint a region, restyle it; outside the painted pixels the result is the
    picture's own. Then edit an image straight from the inspector with a rectangle."""
    import numpy as np

    page, errors = _open(browser, kinds_url, height=900)
    page.wait_for_selector("#grid .tile img")
    page.click("[data-view=edit]")
    from atelier.api.edit import EDITS

    # One option per registered edit kind (restyle, translate, and the diffusion family's inpaint).
    page.wait_for_function(f"document.querySelector('#edit-kind').options.length === {len(EDITS)}")
    photo = small_photo(tmp_path / "content.png", 96)
    page.set_input_files("#edit-file", str(photo))
    page.wait_for_function("document.querySelector('#edit-image').width > 0")
    assert page.locator("#edit-apply").is_disabled()            # nothing marked yet
    box = page.locator("#edit-mask").bounding_box()
    page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.3 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.6 * box["width"], box["y"] + 0.5 * box["height"], steps=8)
    page.mouse.up()
    page.select_option("#edit-kind", "restyle")
    page.select_option("#edit-model", "wave")
    page.click("#edit-apply")
    page.wait_for_function("document.querySelector('#edit-result').naturalWidth > 0")
    shots = Path(os.environ.get("ATELIER_SCREENSHOTS") or tmp_path)  # the manual's: docs/images/studio
    page.screenshot(path=str(shots / "8-edit.png"))
    mask, _ = _data_url_array(page.evaluate("document.querySelector('#edit-mask').toDataURL('image/png')"))
    result, meta = _data_url_array(page.evaluate("""async () => {
        const b = await (await fetch(document.querySelector('#edit-result').src)).blob();
        return await new Promise((ok) => {
            const r = new FileReader(); r.onload = () => ok(r.result); r.readAsDataURL(b);
        });
    }"""))
    original = np.asarray(Image.open(photo).convert("RGBA"))
    on = mask[..., 3] > 0
    assert 0.02 < on.mean() < 0.5                                # the stroke, at the picture's own size
    assert np.array_equal(result[~on], original[~on])            # outside the stroke: the picture's pixels
    assert (result[on] != original[on]).any()                    # inside: the style network's
    assert meta["DigitalSourceType"].endswith("compositeWithTrainedAlgorithmicMedia")
    assert "restyle" in page.locator("#sel-extra").inner_text() and not page.locator("#edit-download").is_hidden()

    # From the inspector: a generated candidate, edited with a rectangle.
    page.click("[data-view=create]")
    page.click(".model[data-name=tiny-dcgan]")
    page.wait_for_selector("#grid .tile img")
    page.locator("#grid .tile").nth(0).click()
    page.click("#edit-this")
    page.wait_for_function("document.querySelector('#edit-name').textContent.includes('×')")
    page.click("[data-region=rect]")
    box = page.locator("#edit-mask").bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    page.click("#edit-apply")
    page.wait_for_function("document.querySelector('#edit-result-name').textContent.includes('% of the pixels')")
    share = float(page.locator("#edit-result-name").inner_text().split("·")[1].split("%")[0])
    assert 15 < share < 35                                        # about a quarter of the picture
    assert not errors, errors
    page.close()


@pytest.fixture(scope="module")
def latent_url(tmp_path_factory):
    """A studio serving a tiny StyleGAN2 and a tiny class-conditional diffusion model, both on RGB sprites."""
    import atelier
    from atelier.serve import background, create_app
    from atelier.serve.settings import StudioSettings
    from test_stylegan2_task import TINY_SG, sprites

    tmp = tmp_path_factory.mktemp("latent-page")
    data = str(sprites(tmp / "sprites"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATELIER_CACHE", str(tmp / "cache"))
        atelier.train(None, tmp / "runs" / "sg", {**TINY_SG, "data.channels": 3, "data.alpha": "composite",
                                                  "data.source": data}, progress=False)
        atelier.train(None, tmp / "runs" / "dm", {
            "model.name": "diffusion", "model.block_out_channels": [8, 16], "model.attention_resolutions": [],
            "model.attention_head_dim": 8, "model.norm_num_groups": 4, "model.sample_steps": 4, "model.num_classes": 2,
            "data.source": data, "data.resolution": 32, "data.channels": 3, "data.alpha": "composite",
            "train.batch_size": 4, "train.steps": 2, "train.device": "cpu", "log.every": 1, "log.sample_every": 2,
            "log.checkpoint_every": 2, "log.grid": 2, "log.tensorboard": False}, progress=False)
    with background(create_app(tmp / "runs", settings=StudioSettings(home=tmp / "home"))) as url:
        yield url


def test_direction_sliders_mixing_and_diffusion_controls(browser, latent_url, tmp_path):
    page, errors = _open(browser, latent_url, height=1100)
    page.wait_for_selector(".model[data-name=sg]")
    page.click(".model[data-name=sg]")
    page.wait_for_function("document.querySelectorAll('#grid .tile img').length === 16")
    assert page.locator("#latent-panel").is_visible() and page.locator("#mix-box").is_visible()
    assert page.locator("#diffusion-fields").is_hidden() and page.locator("#psi-field").is_visible()
    page.wait_for_function("document.querySelectorAll('#dir-sliders input').length === 5")

    # A candidate becomes the image the sliders move.
    page.locator("#grid .tile").nth(2).click()
    page.wait_for_function("document.querySelector('#dir-caption').textContent.startsWith('seed 2')")
    page.wait_for_function("document.querySelector('#dir-image').naturalWidth > 0")
    before = page.evaluate("document.querySelector('#dir-image').src")
    slider = page.locator("#dir-sliders input").nth(0)
    slider.evaluate("(e) => { e.value = 2; e.dispatchEvent(new Event('input')); }")
    page.wait_for_function("document.querySelector('#dir-caption').textContent.includes('#1 +2')")
    page.wait_for_function(f"document.querySelector('#dir-image').src !== {before!r}")

    # The style-mixing grid.
    page.click("#mix-go")
    page.wait_for_function("document.querySelector('#mix-image').naturalWidth > 0")
    assert page.evaluate("document.querySelector('#mix-image').naturalWidth") > 4 * 32

    # An uploaded image, projected, then moved.
    page.set_input_files("#dir-file", str(small_photo(tmp_path / "mine.png", 48)))
    page.wait_for_function("document.querySelector('#dir-caption').textContent.includes('projected')", timeout=60_000)
    shots = Path(os.environ.get("ATELIER_SCREENSHOTS") or tmp_path)
    page.screenshot(path=str(shots / "9-latent.png"), full_page=True)

    # A diffusion model: sampler, steps and guidance instead of truncation, directions and mixing.
    page.click(".model[data-name=dm]")
    page.wait_for_function("!document.querySelector('#diffusion-fields').hidden")
    assert page.locator("#latent-panel").is_hidden() and page.locator("#psi-field").is_hidden()
    assert page.locator("#dm-guidance-field").is_visible()  # conditional: guidance applies
    page.wait_for_function("document.querySelectorAll('#grid .tile img').length === 16")
    page.select_option("#dm-sampler", "euler")
    with page.expect_request(lambda r: r.url.endswith("/api/generate")) as req:
        page.locator("#dm-steps").evaluate("(e) => { e.value = 3; e.dispatchEvent(new Event('change')); }")
    body = req.value.post_data_json
    assert body["steps"] == 3 and body["sampler"] == "euler" and "guidance" in body
    page.wait_for_function("document.querySelectorAll('#grid .tile img').length === 16")
    assert not errors, errors
    page.close()
