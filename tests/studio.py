"""A studio served by a real `dreamreel studio` process on 127.0.0.1, for the studio's tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from tests.clips import make_clip
from tests.media import REPO, synthetic_image

# Settings of the panel, in the order the page's endpoints take them (pipeline.studio.app.SETTINGS):
# untrained InceptionV3 (no download), two octaves of three steps: seconds on a CPU.
FAST = {
    "model": "inception_v3",
    "weights": "untrained",
    "preset": "default",
    "layers": "",
    "step": "0.05",
    "octaves": "2",
    "iterations": "3",
    "seed": "",
    "precision": "",
    "guide": None,
}


def settings(**changes: object) -> list[object]:
    return list({**FAST, **changes}.values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """`dreamreel studio FOLDER ...` in its own process, up and answering."""

    def __init__(self, folder: Path, *args: str, env: dict[str, str] | None = None, timeout_s: float = 90.0):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = folder.parent / f"studio-{self.port}.log"
        with open(self.log, "wb") as log:
            command = [sys.executable, "-m", "pipeline", "studio", str(folder), "--no-browser"]
            command += ["--port", str(self.port)]
            self.proc = subprocess.Popen(
                [*command, *args],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the studio ended ({self.proc.returncode}): {self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status in (200, 401):
                        break
            except OSError as exc:
                if getattr(exc, "code", None) == 401:
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the studio did not answer in {timeout_s:.0f} s: {self.output()[-2000:]}")
            time.sleep(0.3)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self, **kwargs: object):
        from gradio_client import Client

        return Client(self.url, verbose=False, **kwargs)

    def kill(self) -> None:
        """SIGKILL: the studio gets no chance to stop anything."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def studio_folder(folder: Path, clip_size: str = "96x64", seconds: float = 0.5) -> Path:
    """A folder with what the tests dream: a picture, a 12-frame clip, and things that are not media."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_image(96, 128, seed=3)).save(folder / "photo.png")
    make_clip(folder / "clip.mp4", size=clip_size, rate="24", seconds=seconds)
    (folder / "notes.txt").write_text("not a picture\n")
    (folder / "notes.png").write_text("not a picture either\n")
    from tests.clips import ffmpeg

    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-c:a", "aac", str(folder / "sound.m4a"))
    return folder


def pixels(path: str | Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def wait_jobs(client, until, timeout_s: float = 240.0, every_s: float = 0.5) -> list[list[object]]:
    """Poll the studio's job list until ``until(rows)`` holds (bounded)."""
    deadline = time.monotonic() + timeout_s
    seen: list[list[list[object]]] = []
    while time.monotonic() < deadline:
        rows = client.predict(None, api_name="/jobs")
        seen.append(rows)
        if until(rows):
            return rows
        time.sleep(every_s)
    raise AssertionError(f"jobs never reached the state wanted in {timeout_s:.0f} s; last: {seen[-3:]}")
