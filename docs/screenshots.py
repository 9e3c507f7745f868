"""`python -m docs.screenshots`: the studio's screenshots in the docs (docs/img/studio-*.jpg).

Starts `dreamreel studio` on a fresh folder with the shared media (../shared/media: a painting and
a clip with audio and hard cuts; the repository's samples/fruits.jpg stands in when it is
missing), drives it in Debian's chromium through Playwright like a user (vgg16_hed, the network
that needs no download), and saves one picture of each tab. About five minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEDIA = REPO.parent / "shared" / "media"
OUT = REPO / "docs" / "img"


def main(argv: list[str] | None = None) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(REPO))
    from tests.studio import Served

    p = argparse.ArgumentParser(prog="python -m docs.screenshots", description=__doc__)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="dreamreel-shots-")) / "my-dreams"
    folder.mkdir()
    painting = MEDIA / "starry_night.jpg" if (MEDIA / "starry_night.jpg").exists() else REPO / "samples/fruits.jpg"
    shutil.copy(painting, folder / painting.name)
    clip = MEDIA / "Megamind.avi"
    if clip.exists():
        shutil.copy(clip, folder / clip.name)
    studio = Served(folder)

    def shot(page: object, name: str) -> None:
        png = args.out / f"studio-{name}.png"
        page.screenshot(path=str(png), full_page=False)  # type: ignore[attr-defined]
        Image.open(png).convert("RGB").save(png.with_suffix(".jpg"), quality=85, optimize=True)
        png.unlink()
        print(f"wrote {png.with_suffix('.jpg')}", file=sys.stderr)

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1360, "height": 940})
            page.set_default_timeout(600_000)
            page.goto(studio.url)
            page.wait_for_selector("#dr-quick")
            page.locator("#dr-model input").first.click()
            page.get_by_role("option", name="vgg16_hed", exact=True).click()
            time.sleep(2)

            page.fill("#dr-image-path textarea, #dr-image-path input", painting.name)
            page.click("#dr-quick")
            page.wait_for_selector("#dr-image-message :text('Quick dream in')")
            time.sleep(1)
            shot(page, "image")

            page.get_by_role("tab", name="Explore").click()
            page.click("#dr-explore")
            page.wait_for_function(
                "(() => { const m = document.querySelector('#dr-explore-message').innerText.match(/(\\d+) of (\\d+)/);"
                " return m && m[1] === m[2]; })()"
            )
            time.sleep(1)
            shot(page, "explore")

            if clip.exists():
                page.get_by_role("tab", name="Video").click()
                page.fill("#dr-clip-path textarea, #dr-clip-path input", clip.name)
                page.fill("#dr-frames textarea, #dr-frames input", "24")
                page.locator("#dr-preset input").first.click()
                page.get_by_role("option", name="quick", exact=True).click()
                page.click("#dr-preview")
                page.wait_for_selector("#dr-video-message :text('would take')")
                time.sleep(1)
                shot(page, "video")
                page.click("#dr-run")
                page.wait_for_function(
                    "(() => { const p = document.querySelector('#dr-progress');"
                    " return p && p.dataset.state === 'running' && Number(p.dataset.done) >= 6; })()"
                )
                time.sleep(1.5)
                shot(page, "jobs")

            page.get_by_role("tab", name="Zoom").click()
            page.fill("#dr-still-path textarea, #dr-still-path input", painting.name)
            page.fill("#dr-zframes textarea, #dr-zframes input", "24")
            page.click("#dr-run-zoom")
            page.wait_for_selector("#dr-progress")
            page.get_by_role("tab", name="Zoom").click()
            time.sleep(1)
            shot(page, "zoom")
            browser.close()
    finally:
        studio.stop()


if __name__ == "__main__":
    main()
