"""The Space in a real browser: headless Debian chromium driven by Playwright (no browser download).

Uploads a clip through the page's file input, submits, reads the top label from the page, saves a screenshot,
and checks that closing the tab deletes the upload from Gradio's cache.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS
from test_space import load_app, write_wav

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install -y chromium)"
    ),
]


@pytest.fixture(scope="module")
def served_app(tiny_model_dir):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = load_app("meralign_space_app_browser")
    demo = app.build_demo(str(tiny_model_dir), max_seconds=30)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app.launch_options())
    try:
        yield app, demo.local_url
    finally:
        demo.close()
        sys.modules.pop("meralign_space_app_browser", None)


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_upload_submit_and_read_the_top_label(served_app, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    app, url = served_app
    clip = write_wav(tmp_path / "three_segments.wav", 25.0)  # segments 0-10, 10-20, 20-25 s: a timeline
    labels = ["joyful", "melancholic", "tense", "serene"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            page.locator("#preset input").click()  # a preset fills the labels and the dataset's top-k
            page.get_by_role("option", name="CAL500 emotions (18 labels, top-4)").click()
            expect(page.locator("#labels-input textarea")).to_have_value(
                re.compile(r"^angry, aggressive\n"), timeout=10_000
            )
            preset_text = page.locator("#labels-input textarea").input_value()
            preset_k = page.locator("input[type=number]").first.input_value()
            page.locator("#audio-input input[type=file]").set_input_files(str(clip))
            page.locator("#labels-input textarea").fill("")
            page.locator("#labels-input textarea").press_sequentially("\n".join(labels))  # typed, as a user does
            expect(page.locator("#preset input")).to_have_value("", timeout=10_000)  # custom labels now
            page.locator("#submit").click()
            top = page.locator("#emotions [data-testid='label-output-value']")
            top.wait_for(timeout=60_000)
            top_label = top.inner_text().strip()
            shown = page.locator("#emotions dt").all_inner_texts()
            page.locator("#timeline canvas, #timeline svg").first.wait_for(timeout=10_000)
            page.wait_for_timeout(500)  # let the plot finish drawing before the screenshot
            screenshot = tmp_path / "space.png"
            page.screenshot(path=str(screenshot), full_page=True)
            uploads = list(app._uploads)
            page.close()  # ends the session: its upload must go
            removed = _wait_until(lambda: all(not os.path.exists(p) for p in uploads), timeout=15)
        finally:
            browser.close()

    assert preset_text.splitlines()[:2] == ["angry, aggressive", "arousing, awakening"]
    assert len(preset_text.splitlines()) == 18 and preset_k == "4"
    assert top_label in labels
    assert shown and set(shown) <= set(labels) and shown[0] == top_label and len(shown) == 4  # the preset set top-k 4
    assert screenshot.stat().st_size > 20_000
    assert len(uploads) == 1 and Path(uploads[0]).name == clip.name
    assert removed, f"uploads still on disk after the tab closed: {uploads}"
