"""The studio page with a foundation model (tiny random SD 1.x-shaped pipeline): listed in the sidebar, the Text to
image panel draws, a drawn image re-opens its settings, and so does its gallery record. Playwright driving
Debian's Chromium, as tests/test_studio_page.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("fastapi")
pytest.importorskip("diffusers", reason="the diffusion extra")
if os.environ.get("CI"):
    from playwright import sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api")

import tiny_sd  # noqa: E402


@pytest.mark.slow  # a browser and a server: about 20 s
def test_page_lists_draws_and_reopens_a_foundation_model(tmp_path):
    from atelier.serve import background, create_app
    from atelier.serve.settings import StudioSettings

    (tmp_path / "runs").mkdir()
    sd = tiny_sd.build_folder(tmp_path)
    app = create_app(tmp_path / "runs", foundation=[sd], settings=StudioSettings(home=tmp_path / "home"))
    with background(app) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                           "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector(".model[data-name='tiny-sd']")
        assert "Stable Diffusion" in page.locator(".model[data-name='tiny-sd'] small").inner_text()
        page.click(".model[data-name='tiny-sd']")
        assert page.locator("#t2i-controls").is_visible() and page.locator("#controls").is_hidden()
        assert page.locator("#t2i-width").input_value() == "64"                 # the model's native size
        assert "dpm++" in page.locator("#t2i-sampler").inner_text()

        page.fill("#t2i-prompt", "a cat")
        page.fill("#t2i-negative", "blurry")
        page.fill("#t2i-steps", "2")
        page.fill("#t2i-seed", "11")
        page.fill("#t2i-n", "2")
        page.select_option("#t2i-sampler", "euler")
        page.click("#t2i-draw")
        page.wait_for_selector("#grid .tile img")
        assert page.locator("#grid .tile .seed").all_inner_texts() == ["#11", "#12"]

        page.fill("#t2i-prompt", "something else")                            # then re-open image #12
        page.locator("#grid .tile", has_text="#12").click()
        assert page.locator("#t2i-prompt").input_value() == "a cat"
        assert (page.locator("#t2i-seed").input_value(), page.locator("#t2i-n").input_value()) == ("12", "1")

        page.fill("#t2i-prompt", "something else")
        page.click("[data-view=gallery]")
        page.wait_for_selector("#gallery .tile img")
        page.locator("#gallery .tile", has_text="#11").first.click()
        page.click("#reopen")                                                 # back in Create with its settings
        assert page.locator("#view-create").is_visible() and page.locator("#t2i-controls").is_visible()
        assert page.locator("#t2i-prompt").input_value() == "a cat"
        assert page.locator("#t2i-negative").input_value() == "blurry"
        assert (page.locator("#t2i-seed").input_value(), page.locator("#t2i-sampler").input_value()) == ("11", "euler")
        assert errors == []
        browser.close()
