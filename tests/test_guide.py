"""Guided dreaming (`--guide`): an image, or for video a clip, steers the dream towards its features."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from tests.clips import ffmpeg, make_pan, read_frames
from tests.jobs import dreamt_all
from tests.media import SAMPLE_IMAGE
from tests.test_video_resume import default_sigint, events, wait_for_events

LAYERS = "block3_conv3=1,block4_conv3=1"


def stripes(h: int = 160, w: int = 160) -> np.ndarray:
    g = ((np.arange(h)[:, None].repeat(w, 1) // 6) % 2 * 255).astype(np.uint8)
    return np.stack([g, g // 2, 255 - g], 2)


def dots(h: int = 160, w: int = 160) -> np.ndarray:
    import cv2

    img = np.zeros((h, w, 3), np.uint8)
    for y in range(8, h, 16):
        for x in range(8, w, 16):
            cv2.circle(img, (x, y), 5, (255, 200, 0), -1)
    return img


def png(path: Path, rgb: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(rgb).save(path)
    return path


def read(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def features():
    """vgg16_hed's guided layers, as a function of an 8-bit image: (positions, channels) per layer."""
    from dreamcore import DreamConfig
    from dreamcore.engine import Engine

    net = Engine(DreamConfig(model="vgg16_hed", layers={"block3_conv3": 1.0, "block4_conv3": 1.0})).dreamer.net

    def feats(rgb: np.ndarray) -> list[np.ndarray]:
        acts = net(rgb.astype(np.float32)[None] / 127.5 - 1.0)
        return [np.asarray(a)[0].reshape(-1, a.shape[-1]) for a in acts]

    return feats


def closeness(features, image: np.ndarray, guide: np.ndarray) -> float:
    """How close an image is to a guide in the guide's feature space: per layer, the mean over the
    image's positions of the best cosine match among the guide's positions, summed over layers."""
    total = 0.0
    for x, y in zip(features(image), features(guide), strict=True):
        xn = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)
        yn = y / (np.linalg.norm(y, axis=1, keepdims=True) + 1e-6)
        total += float((xn @ yn.T).max(axis=1).mean())
    return total


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    import cv2

    rgb = cv2.cvtColor(cv2.imread(str(SAMPLE_IMAGE)), cv2.COLOR_BGR2RGB)
    small = cv2.resize(rgb, (192, 128), interpolation=cv2.INTER_AREA)
    return png(tmp_path_factory.mktemp("guide") / "fruits.png", small)


GUIDED = [
    "--model",
    "vgg16_hed",
    "--layers",
    LAYERS,
    "--set",
    "iterations=20",
    "--set",
    "octaves=2",
    "--set",
    "max_loss=null",
    "-q",
]


def test_two_guides_give_different_dreams_each_closer_to_its_own_guide(
    source: Path, features, tmp_path: Path, capsys
) -> None:
    guides = {"stripes": stripes(), "dots": dots()}
    outs = {}
    for name, g in guides.items():
        out = tmp_path / f"{name}.png"
        assert (
            main(["image", str(source), "-o", str(out), *GUIDED, "--guide", str(png(tmp_path / f"g-{name}.png", g))])
            == 0
        ), capsys.readouterr().err
        outs[name] = read(out)
    diff = np.abs(outs["stripes"].astype(int) - outs["dots"]).mean()
    print(f"two guides: dreams {diff:.1f}/255 apart")
    assert diff > 5  # measurably different
    for name, other in (("stripes", "dots"), ("dots", "stripes")):
        own = closeness(features, outs[name], guides[name])
        theirs = closeness(features, outs[name], guides[other])
        print(f"{name} dream: closeness {own:.3f} to its guide, {theirs:.3f} to the other")
        assert own > theirs + 0.03, (name, own, theirs)
        # and closer to its guide than the other guide's dream is
        assert own > closeness(features, outs[other], guides[name]) + 0.03


def test_images_and_zoom_take_the_guide(source: Path, tmp_path: Path, capsys) -> None:
    """`images` gets the guide to its workers through the job store: its dream equals `image`'s with
    the same guide, and differs from the unguided one."""
    guide = png(tmp_path / "g.png", stripes())
    fast = ["--model", "vgg16_hed", "--layers", LAYERS, "--set", "iterations=4", "--set", "octaves=1", "-q"]
    folder = tmp_path / "in"
    folder.mkdir()
    png(folder / "a.png", read(source))
    assert main(["images", str(folder), "-o", str(tmp_path / "out"), *fast, "--guide", str(guide)]) == 0
    assert main(["image", str(source), "-o", str(tmp_path / "one.png"), *fast, "--guide", str(guide)]) == 0
    assert main(["image", str(source), "-o", str(tmp_path / "plain.png"), *fast]) == 0
    batch, one, plain = read(tmp_path / "out" / "a.png"), read(tmp_path / "one.png"), read(tmp_path / "plain.png")
    assert np.array_equal(batch, one)
    assert np.abs(one.astype(int) - plain).mean() > 2
    # Another guide on the same output folder is another job: refused, like another config.
    code = main(
        ["images", str(folder), "-o", str(tmp_path / "out"), *fast, "--guide", str(png(tmp_path / "d.png", dots()))]
    )
    assert code == 2 and "another" in capsys.readouterr().err.lower()
    # zoom: frame 0 is the guided image dream
    assert (
        main(["zoom", str(source), "-o", str(tmp_path / "z.mp4"), *fast, "--frames", "2", "--guide", str(guide)]) == 0
    )
    capsys.readouterr()


def test_bad_guides_exit_2_with_one_line(source: Path, tmp_path: Path, capsys) -> None:
    clip = make_pan(tmp_path / "pan.mp4", frames=4)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    cases = [
        (["image", str(source), "-o", str(tmp_path / "o.png"), "--guide", str(tmp_path / "none.png")], "no such file"),
        (["image", str(source), "-o", str(tmp_path / "o.png"), "--guide", str(junk)], "junk.png"),
        (["image", str(source), "-o", str(tmp_path / "o.png"), "--guide", str(clip)], "a video guides only"),
        (
            [
                "image",
                str(source),
                "-o",
                str(tmp_path / "o.png"),
                "--model",
                "vgg16_hed",
                "--layers",
                "block4_conv3:5",
                "--guide",
                str(png(tmp_path / "g.png", dots())),
            ],
            "steers whole layers",
        ),
        (["video", str(clip), "-o", str(tmp_path / "o.mp4"), "--guide", str(junk)], "neither an image nor a video"),
    ]
    for argv, expected in cases:
        code = main([*argv, "-q"])
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and expected in lines[0], (argv, lines)
        assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.mp4").exists()


def test_guide_clip_frame_for_each_output_time() -> None:
    from pipeline.guide import guide_index

    times = [10.0, 10.5, 11.0, 11.5]  # 4 frames at 2 fps, the file's own timestamps
    assert [guide_index(times, t, "loop") for t in (0, 0.49, 0.5, 1.99, 2.0, 2.6, 4.1)] == [0, 0, 1, 3, 0, 1, 0]
    assert [guide_index(times, t, "hold") for t in (0, 1.6, 2.0, 100)] == [0, 3, 3, 3]


def guide_clip(path: Path, frames: list[np.ndarray]) -> Path:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for i, f in enumerate(frames):
            png(Path(tmp) / f"{i:03d}.png", f)
        ffmpeg(
            "-framerate",
            "24",
            "-i",
            str(Path(tmp) / "%03d.png"),
            "-c:v",
            "libx264",
            "-qp",
            "0",
            "-pix_fmt",
            "yuv444p",
            str(path),
        )
    return path


VIDEO = [
    "--model",
    "vgg16_hed",
    "--layers",
    LAYERS,
    "--set",
    "iterations=6",
    "--set",
    "octaves=1",
    "--set",
    "max_loss=null",
    "--set",
    "video.followup_iterations=3",
    "--set",
    "video.chunk_frames=8",
    "-q",
]


def test_a_guide_clip_guides_each_frame_by_its_frame_at_that_time(tmp_path: Path, features, capsys) -> None:
    """A guide clip of 8 frames (4 of stripes, then 4 of dots) looped over a 16-frame output dreamt
    frame by frame (coherence none): each output frame is closer to the guide it was given than to
    the other; held, the last 8 frames all follow dots."""
    clip = make_pan(tmp_path / "pan.mp4", frames=16, size=(96, 64))
    g = guide_clip(tmp_path / "guide.mp4", [stripes(64, 96)] * 4 + [dots(64, 96)] * 4)
    src = read_frames(clip)
    for end, phases in (("loop", ["s", "d", "s", "d"]), ("hold", ["s", "d", "d", "d"])):
        work = tmp_path / f"work-{end}"
        code = main(
            [
                "video",
                str(clip),
                "-o",
                str(tmp_path / f"{end}.mp4"),
                *VIDEO,
                "--coherence",
                "none",
                "--guide",
                str(g),
                "--guide-end",
                end,
                "--workdir",
                str(work),
                "--keep-frames",
            ]
        )
        assert code == 0, capsys.readouterr().err
        out = dreamt_all(work)

        def lean(i: int, out: list[np.ndarray] = out) -> float:  # how far frame i moved to stripes, not dots
            s, d = stripes(64, 96), dots(64, 96)
            return (closeness(features, out[i], s) - closeness(features, out[i], d)) - (
                closeness(features, src[i], s) - closeness(features, src[i], d)
            )

        leans = [lean(i) for i in range(16)]
        by_stripes = [v for i, v in enumerate(leans) if phases[i // 4] == "s"]
        by_dots = [v for i, v in enumerate(leans) if phases[i // 4] == "d"]
        assert min(by_stripes) > max(by_dots), (end, leans)


def test_guided_video_keeps_coherence_and_resumes_identically_after_kills(tmp_path: Path, capsys) -> None:
    """With a guide, flow coherence still holds (far steadier than dreaming each frame alone) and a
    job killed twice resumes to the same frames as an uninterrupted run."""
    from dreamcore.coherence import frame_instability

    clip = make_pan(tmp_path / "pan.mp4", frames=16, size=(96, 64))
    guide = png(tmp_path / "g.png", dots())
    src = [f.astype(np.float32) / 255 for f in read_frames(clip)]
    series = {}
    for mode in ("none", "flow"):
        work = tmp_path / f"work-{mode}"
        code = main(
            [
                "video",
                str(clip),
                "-o",
                str(tmp_path / f"{mode}.mp4"),
                *VIDEO,
                "--coherence",
                mode,
                "--guide",
                str(guide),
                "--workdir",
                str(work),
                "--keep-frames",
            ]
        )
        assert code == 0, capsys.readouterr().err
        out = [f.astype(np.float32) / 255 for f in dreamt_all(work)]
        series[mode] = np.mean([frame_instability(src[i - 1], out[i - 1], src[i], out[i]) for i in range(1, 16)])
    assert series["flow"] < 0.35 * series["none"], series

    work, out = tmp_path / "work", tmp_path / "out.mp4"
    argv = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "video",
        str(clip),
        "-o",
        str(out),
        "--workdir",
        str(work),
        *VIDEO,
        "--guide",
        str(guide),
    ]
    kills = 0
    for _ in range(2):
        seen = len(events(work))
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
        )
        if not wait_for_events(work, seen + 2, proc, timeout=300):
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        time.sleep(0.1)
    assert kills == 2 and not out.exists()
    assert subprocess.run(argv, capture_output=True, text=True, timeout=600).returncode == 0
    assert [f.tobytes() for f in read_frames(out)] == [f.tobytes() for f in read_frames(tmp_path / "flow.mp4")]


def test_a_guide_on_a_high_resolution_layer_stays_in_bounded_memory(tmp_path: Path) -> None:
    """The tiny CNN's conv2 sees a 512x384 image at 256x192 (49k positions), and a 512 px guide as
    many: matching every position with every guide position at once would take 10 GB. The match runs
    in chunks against at most 8192 guide positions: the whole command stays under 1.5 GiB."""
    from tests.media import run_cli_measuring_peak, synthetic_image
    from tests.models import tiny_cnn

    model = tmp_path / "cnn.keras"
    tiny_cnn().save(model)
    src = png(tmp_path / "in.png", synthetic_image(384, 512))
    guide = png(tmp_path / "g.png", synthetic_image(384, 512, seed=3))
    code, peak_kb = run_cli_measuring_peak(
        [
            "image",
            str(src),
            "-o",
            str(tmp_path / "o.png"),
            "--model",
            str(model),
            "--layers",
            "conv2",
            "--guide",
            str(guide),
            "--set",
            "iterations=2",
            "--set",
            "octaves=1",
            "-q",
        ],
        tmp_path / "peak",
    )
    assert code == 0
    assert peak_kb < 1.5 * 1024 * 1024, peak_kb


def test_preview_guides_each_frame_by_the_guide_clip_as_the_job_would(tmp_path: Path, capsys, monkeypatch) -> None:
    """`preview CLIP --guide CLIP2`: each previewed frame gets the guide frame the full job would give
    it (looped or held), not the guide's first frame; an image preview takes the first frame, said."""
    from dreamcore import DreamConfig
    from pipeline.preview import PreviewRequest, _guide_frames

    g = guide_clip(tmp_path / "guide.mp4", [stripes(64, 96)] * 4 + [dots(64, 96)] * 4)  # 8 frames, 24 fps
    s, d = stripes(64, 96).astype(np.float32), dots(64, 96).astype(np.float32)

    def kind(guide) -> str:  # type: ignore[no-untyped-def]
        px = np.asarray(guide.pixels, np.float32)[..., :3]
        return "s" if np.abs(px - s).mean() < np.abs(px - d).mean() else "d"

    times = [0.0, 3 / 24, 5 / 24, 9 / 24, 14 / 24]  # guide frames 0, 3, 5, then 1 and 6 looped or 7 held
    for end, want in (("loop", "ssdsd"), ("hold", "ssddd")):
        req = PreviewRequest(input="x.mp4", output="y.png", config=DreamConfig(), guide_clip=str(g), guide_end=end)
        assert "".join(kind(x) for x in _guide_frames(req, times)) == want, end

    # Through the command: 4 frames of a 16-frame clip at 24 fps (frames 2, 6, 10, 14), each dreamt
    # with the guide frame of its time, looped.
    from dreamcore.engine import Engine

    given = []
    dream_rgb = Engine.dream_rgb

    def recording(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        given.append(self.config.guide)
        return dream_rgb(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "dream_rgb", recording)
    clip = make_pan(tmp_path / "pan.mp4", frames=16, size=(96, 64))
    sheet = tmp_path / "sheet.png"
    code = main(
        [
            "preview",
            str(clip),
            "-o",
            str(sheet),
            "--count",
            "4",
            "--model",
            "vgg16_hed",
            "--layers",
            LAYERS,
            "--set",
            "iterations=2",
            "--set",
            "octaves=1",
            "--guide",
            str(g),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0 and sheet.is_file(), err
    assert "".join(kind(x) for x in given[:4]) == "sdsd"
    assert "guide clip's first frame" not in err
    image = png(tmp_path / "still.png", stripes(64, 96))
    code = main(
        [
            "preview",
            str(image),
            "-o",
            str(tmp_path / "sheet2.png"),
            "--model",
            "vgg16_hed",
            "--layers",
            LAYERS,
            "--set",
            "iterations=1",
            "--set",
            "octaves=1",
            "--guide",
            str(g),
            "-q",
        ]
    )
    assert code == 0 and "guide clip's first frame" in capsys.readouterr().err
