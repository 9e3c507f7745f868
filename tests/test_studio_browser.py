"""dreamreel studio in a real browser: Debian's chromium driven by Playwright (the PyPI wheel,
launched with the system browser; nothing is downloaded). A user's path through the page: drop an
image, dream it quickly, explore three layers, run a 12-frame video job and watch it to the end.

`.ci/run` installs chromium and sets DREAMREEL_REQUIRE_BROWSER=1, so there the test fails rather
than skips when the browser is missing."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.studio import Served, studio_folder

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    if os.environ.get("DREAMREEL_REQUIRE_BROWSER"):
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield chromium
        chromium.close()


def fill(page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    box.fill(text)
    box.press("Tab")


def choose(page, elem_id: str, option: str) -> None:
    """Pick a dropdown's option as a user does: open it, click the option."""
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option, exact=True).click()


def picture(page, src: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def test_a_user_dreams_explores_and_runs_a_video_job_in_the_browser(browser, tmp_path):
    folder = studio_folder(tmp_path / "work", clip_size="160x120")
    studio = Served(folder)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(studio.url)
        page.wait_for_selector("#dr-quick")

        # Settings: untrained InceptionV3 (nothing to download), two short octaves.
        fill(page, "dr-model", "inception_v3")
        choose(page, "dr-weights", "untrained")
        fill(page, "dr-octaves", "2")
        fill(page, "dr-iterations", "3")
        fill(page, "dr-step", "0.05")

        # Drop an image, dream it quickly: the result differs from the source.
        page.set_input_files("#dr-image-in input[type=file]", str(folder / "photo.png"))
        page.wait_for_selector("#dr-image-in :text('photo.png')")
        page.click("#dr-quick")
        page.wait_for_selector("#dr-image-message :text('Quick dream in')")
        sources = [img.get_attribute("src") for img in page.locator("#dr-slider img").all()]
        assert len(sources) == 2, sources
        before, after = (picture(page, src) for src in sources)
        assert np.array_equal(before, np.asarray(Image.open(folder / "photo.png").convert("RGB")))
        assert before.shape == after.shape and np.abs(after.astype(int) - before).mean() > 2
        assert "dreamreel image" in page.locator(".cm-content").first.inner_text()

        # Explore three layers: three dreams.
        fill(page, "dr-layers", "mixed0=1,mixed1=1,mixed2=1")
        page.get_by_role("tab", name="Explore").click()
        page.click("#dr-explore")
        page.wait_for_selector("#dr-explore-message :text('3 of 3 dreamt')")
        assert page.locator("#dr-gallery .thumbnail-item, #dr-gallery button.thumbnail-lg").count() >= 3
        assert page.locator("#dr-gallery img").count() >= 3

        # A 12-frame video job, every frame dreamt in full so that it takes a few seconds.
        fill(page, "dr-layers", "")
        page.get_by_role("tab", name="Video").click()
        page.set_input_files("#dr-clip-in input[type=file]", str(folder / "clip.mp4"))
        page.wait_for_selector("#dr-clip-in :text('clip.mp4')")
        fill(page, "dr-frames", "12")
        choose(page, "dr-coherence", "none")
        page.click("#dr-run")
        seen: list[tuple[str, int, int]] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            bar = page.locator("#dr-progress")
            if bar.count():
                state = bar.get_attribute("data-state")
                seen.append((state, int(bar.get_attribute("data-done")), int(bar.get_attribute("data-total"))))
                if state == "done":
                    break
            time.sleep(0.2)
        assert seen and seen[-1] == ("done", 12, 12), seen[-5:]
        done = [d for _, d, _ in seen]
        assert done == sorted(done), seen  # progress only rises
        assert any(s == "running" and d < 12 for s, d, _ in seen), seen  # it was seen under way

        # The film plays in the page: the browser reads its duration (12 frames at 24 fps).
        page.wait_for_selector("#dr-player video")
        duration = page.eval_on_selector(
            "#dr-player video",
            """v => new Promise(ok => v.readyState >= 1 ? ok(v.duration) : (
                v.addEventListener('loadedmetadata', () => ok(v.duration)),
                v.addEventListener('error', () => ok(-1))))""",
        )
        assert duration == pytest.approx(0.5, abs=0.05)
    finally:
        studio.stop()
