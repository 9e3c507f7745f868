"""Did a refactor change anything a user sees? The same dreamreel commands, run by an older commit and
by this checkout, must write the same pixels, frames and audio and end with the same exit codes.

    python -m benchmarks.identical                      (this checkout against 8473151)
    python -m benchmarks.identical --against HEAD~3
    python -m benchmarks.identical --new HEAD           (a commit, not the working tree, as the new code)
    python -m benchmarks.identical --self-check         (the old commit against itself: is this script
                                                         deterministic on this machine?)

The old code runs from a `git worktree` of COMMIT in a temporary folder (removed at the end). Both
sides are driven only through the command line (`pipeline.cli:main` in a fresh Python process), so
the script keeps working however `pipeline/` is laid out inside; it never imports dreamreel.

Each side runs with its own tree first on the path (PYTHONPATH, and the tree as the working folder
of `python -c`), so `pipeline` and `dreamcore` come from that tree and not from the editable install;
each side's import locations are printed once and checked. Every command writes into the same paths
on both sides (the run folder is moved aside after each side), so messages that name files compare.

Media (made here, small): a 96x64 picture, a folder of three, a 1.5 s clip with a hard scene cut and
a sine tone, and a text file named .mp4. Network: untrained InceptionV3 (one fixed seeded network),
few steps, as the tests use. Op determinism (dreamreel's own) makes each run repeat itself.

Per case one line: name, OK or DIFFERENT, frames (images) compared, the largest per-pixel
difference, and why it differs. Exit code 1 if any case differs (or the new code does not even import),
2 if the comparison could not run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.media import synthetic_image
from tests.test_video import FAST as TEST_FAST

REPO = Path(__file__).resolve().parent.parent
DEFAULT_COMMIT = "8473151"

# `python -c` with no script: sys.argv[1:] are dreamreel's arguments, main() reads them itself.
CLI = "import sys; from pipeline.cli import main; sys.exit(main())"

# Where each side's code comes from, printed once per side (only packages' own __init__ are imported).
PROBE = (
    "import importlib.resources as r, pipeline, dreamcore; "
    "print(pipeline.__file__); print(dreamcore.__file__); print(r.files('dreamcore.presets'))"
)

# The video tests' fast settings (a fixed untrained network, one octave, two steps, one follow-up
# step), with a seed other than the default.
VIDEO_FAST = [*TEST_FAST, "--seed", "3"]
FAST = [
    a
    for i, a in enumerate(VIDEO_FAST)
    if "video." not in a and "video." not in VIDEO_FAST[min(i + 1, len(VIDEO_FAST) - 1)]
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv"}


@dataclass
class Case:
    name: str
    argv: list[str]  # {media} and {run} are filled in
    outputs: list[str]  # paths under the run folder to compare (a file, or a folder of images)
    error: bool = False  # expected to fail: its last stderr line must match too


CASES = [
    Case("image", ["image", "{media}/photo.png", "-o", "{run}/image.png", *FAST], ["image.png"]),
    Case("images", ["images", "{media}/pics", "-o", "{run}/images", *FAST], ["images"]),
    Case(
        "video",
        ["video", "{media}/cut.mp4", "-o", "{run}/video.mp4", "--coherence", "flow", *VIDEO_FAST],
        ["video.mp4"],
    ),
    Case(
        "video --workers 2",
        ["video", "{media}/cut.mp4", "-o", "{run}/video-w2.mp4", "--coherence", "flow", "--workers", "2", *VIDEO_FAST],
        ["video-w2.mp4"],
    ),
    Case(
        # a shot split every 12 frames over 2 workers: segments that overlap and cross-fade
        "video split shots",
        [
            "video",
            "{media}/cut.mp4",
            "-o",
            "{run}/video-split.mp4",
            "--workers",
            "2",
            "--set",
            "video.chunk_frames=12",
            "--set",
            "video.overlap_frames=4",
            *VIDEO_FAST,
        ],
        ["video-split.mp4"],
    ),
    Case(
        "zoom",
        [
            "zoom",
            "{media}/photo.png",
            "-o",
            "{run}/zoom.mp4",
            "--frames",
            "24",
            "--zoom",
            "1.03",
            "--rotate",
            "0.5",
            "--audio",
            "{media}/cut.mp4",
            *FAST,
        ],
        ["zoom.mp4"],
    ),
    Case(
        "preview",
        ["preview", "{media}/cut.mp4", "-o", "{run}/sheet.png", "--count", "3", *VIDEO_FAST],
        ["sheet.png"],
    ),
    Case("bad input", ["video", "{media}/notes.mp4", "-o", "{run}/bad.mp4", *VIDEO_FAST], ["bad.mp4"], error=True),
    # More refusals: the same exit code and the same one line, nothing written.
    Case("missing input", ["video", "{media}/nothere.mp4", "-o", "{run}/x.mp4", *VIDEO_FAST], ["x.mp4"], error=True),
    Case("existing output", ["image", "{media}/photo.png", "-o", "{media}/photo.png", *FAST], ["x.png"], error=True),
    Case(
        "bad value",
        ["image", "{media}/photo.png", "-o", "{run}/x.png", *FAST, "--set", "step=5"],
        ["x.png"],
        error=True,
    ),
    Case(
        "bad integer",
        ["image", "{media}/photo.png", "-o", "{run}/x.png", *FAST, "--set", "octaves=20.0"],
        ["x.png"],
        error=True,
    ),
    Case(
        "bad weight",
        ["image", "{media}/photo.png", "-o", "{run}/x.png", *FAST, "--set", "layers={{mixed2: 1e39}}"],
        ["x.png"],
        error=True,
    ),
    Case(
        "bad keyframe",
        ["video", "{media}/cut.mp4", "-o", "{run}/x.mp4", *VIDEO_FAST, "--set", "step=0s:0.01,99s:0.02"],
        ["x.mp4"],
        error=True,
    ),
    Case(
        "unknown layer",
        ["image", "{media}/photo.png", "-o", "{run}/x.png", *FAST, "--layers", "nothere=1"],
        ["x.png"],
        error=True,
    ),
    Case(
        "zoom edge", ["zoom", "{media}/photo.png", "-o", "{run}/x.mp4", *FAST, "--zoom", "0.9"], ["x.mp4"], error=True
    ),
    Case("no folder", ["images", "{media}/nofolder", "-o", "{run}/x", *FAST], ["x"], error=True),
    Case("preview count", ["preview", "{media}/cut.mp4", "--count", "0", *VIDEO_FAST], ["x.png"], error=True),
    Case(
        "foreign work folder",
        ["video", "{media}/cut.mp4", "-o", "{run}/x.mp4", "--workdir", "{media}", *VIDEO_FAST],
        ["x.mp4"],
        error=True,
    ),
]


# --- media -----------------------------------------------------------------------------------------


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def make_media(folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    Image.fromarray(synthetic_image(64, 96)).save(folder / "photo.png")
    pics = folder / "pics"
    pics.mkdir()
    Image.fromarray(synthetic_image(48, 64, seed=1)).save(pics / "a.png")
    Image.fromarray(synthetic_image(64, 48, seed=2)).save(pics / "b.png")
    (pics / "sub").mkdir()
    Image.fromarray(synthetic_image(56, 72, seed=3)).save(pics / "sub" / "c.jpg", quality=90)
    # 1.5 s at 23.976 fps (36 frames): testsrc2, a hard cut at 0.75 s to a recoloured mandelbrot,
    # and a 440 Hz tone (as tests/clips.make_clip).
    size, rate, seconds, cut = "96x64", "24000/1001", 1.5, 0.75
    ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"),
        *("-f", "lavfi", "-i", f"mandelbrot=size={size}:rate={rate}:end_scale=0.05"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"),
        "-filter_complex",
        f"[0:v]trim=0:{cut},setpts=PTS-STARTPTS[a];"
        f"[1:v]trim=0:{seconds - cut},setpts=PTS-STARTPTS,hue=h=120[b];[a][b]concat=n=2:v=1:a=0[v]",
        *("-map", "[v]", "-map", "2:a", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"),
        str(folder / "cut.mp4"),
    )
    (folder / "notes.mp4").write_text("these are my notes, not a video\n")


# --- running one side ------------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float


def side_env(tree: Path, keras_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DREAMREEL_DEBUG", None)  # tracebacks instead of the one-line errors compared here
    env["PYTHONPATH"] = str(tree)  # the tree's packages before site-packages' editable finder
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ left in either tree
    env["KERAS_HOME"] = str(keras_home)  # offline by construction, as tests/conftest.py
    env["DREAMREEL_INCEPTION_WEIGHTS_URL"] = "http://127.0.0.1:9/inception_v3_notop.h5"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def check_imports(key: str, label: str, tree: Path, env: dict[str, str]) -> None:
    """Print where this side's `pipeline` comes from; stop if its code is not the tree's. Exit 2 where the
    old code cannot be compared at all, 1 where the new code does not import (that is a difference)."""
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=tree, env=env, capture_output=True, text=True)
    paths = proc.stdout.split()
    if proc.returncode != 0 or len(paths) != 3:
        print(f"identical: {label}: cannot import dreamreel from {tree}:\n{proc.stderr.strip()}", file=sys.stderr)
        raise SystemExit(2 if key == "old" else 1)
    print(f"{label}: pipeline from {paths[0]}", file=sys.stderr)
    for p in paths:
        if not Path(p).resolve().is_relative_to(tree.resolve()):
            print(f"identical: {label}: {p} is not from {tree} (the editable install won?)", file=sys.stderr)
            raise SystemExit(2)


def run_side(
    key: str, label: str, tree: Path, media: Path, run: Path, keras_home: Path, cases: list[Case]
) -> list[Result]:
    env = side_env(tree, keras_home)
    check_imports(key, label, tree, env)
    run.mkdir()
    results = []
    for case in cases:
        argv = [a.format(media=media, run=run) for a in case.argv]
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", CLI, *argv], cwd=tree, env=env, capture_output=True, text=True, timeout=600
        )
        results.append(Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0))
        log = run.parent / "logs" / key / f"{case.name.replace(' ', '_')}.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(
            f"$ dreamreel {' '.join(argv)}\nexit {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
        )
        print(f"  {label} {case.name}: exit {proc.returncode}, {results[-1].seconds:.1f} s", file=sys.stderr)
    return results


# --- comparing -------------------------------------------------------------------------------------


@dataclass
class Verdict:
    frames: int = 0
    max_diff: int | None = None
    reasons: list[str] = field(default_factory=list)

    def pixels(self, a: np.ndarray, b: np.ndarray, what: str) -> None:
        self.frames += 1
        if a.shape != b.shape or a.dtype != b.dtype:
            self.reasons.append(f"{what}: {a.shape} {a.dtype} against {b.shape} {b.dtype}")
            return
        d = int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max()) if a.size else 0
        self.max_diff = max(self.max_diff or 0, d)
        if d:
            self.reasons.append(f"{what}: pixels differ by up to {d}")


def last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def untimed(line: str) -> str:
    """A success message with its measured times (and preview's estimates) as #: "4.5 s", "3 min"."""
    return re.sub(r"\d+(?:\.\d+)?(?= (?:s|min|h)\b)", "#", line)


def read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


def stream_info(path: Path) -> tuple[tuple[int, int], str, bool, str]:
    """(width, height), the video stream's description, whether there is audio, and its description."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True)
    video = next((ln.strip() for ln in proc.stderr.splitlines() if "Video:" in ln), "")
    audio = next((ln.strip() for ln in proc.stderr.splitlines() if "Audio:" in ln), "")
    m = re.search(r"[ ,](\d{1,5})x(\d{1,5})[ ,\[]", video)
    if not m:
        raise ValueError(f"{path.name}: no video stream")
    # The parts that say what a user gets: codec, pixel format, size, rate (not bitrates).
    keep = [p for p in re.split(r",\s*(?![^(]*\))", video.split("Video:", 1)[1]) if "kb/s" not in p]
    return (int(m[1]), int(m[2])), ", ".join(p.strip() for p in keep), bool(audio), audio.split("Audio:", 1)[-1]


def decode_video(path: Path, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    raw = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v:0"]
        + ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    if len(raw) % (w * h * 3):
        raise ValueError(f"{path.name}: {len(raw)} bytes of frames are not whole {w}x{h} frames")
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def decode_audio(path: Path) -> np.ndarray:
    raw = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:a:0"]
        + ["-f", "s16le", "-acodec", "pcm_s16le", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.int16)


def compare_video(a: Path, b: Path, v: Verdict) -> None:
    size_a, video_a, has_audio_a, audio_a = stream_info(a)
    size_b, video_b, has_audio_b, audio_b = stream_info(b)
    if video_a != video_b:
        v.reasons.append(f"video stream: {video_a!r} against {video_b!r}")
    fa, fb = decode_video(a, size_a), decode_video(b, size_b)
    if len(fa) != len(fb):
        v.reasons.append(f"{len(fa)} frames against {len(fb)}")
    n = min(len(fa), len(fb))
    v.frames += n
    if size_a != size_b:
        v.reasons.append(f"frames of {size_a} against {size_b}")
    elif n:
        per_frame = np.abs(fa[:n].astype(np.int16) - fb[:n].astype(np.int16)).reshape(n, -1).max(axis=1)
        v.max_diff = max(v.max_diff or 0, int(per_frame.max()))
        bad = np.flatnonzero(per_frame)
        if bad.size:
            v.reasons.append(f"{bad.size} of {n} frames differ (the first: frame {bad[0]}), by up to {per_frame.max()}")
    if has_audio_a != has_audio_b:
        v.reasons.append(f"audio stream: {has_audio_a} against {has_audio_b}")
    elif has_audio_a:
        if audio_a != audio_b:
            v.reasons.append(f"audio stream: {audio_a!r} against {audio_b!r}")
        sa, sb = decode_audio(a), decode_audio(b)
        if sa.shape != sb.shape:
            v.reasons.append(f"audio: {len(sa)} samples against {len(sb)}")
        elif sa.size and (d := int(np.abs(sa.astype(np.int32) - sb.astype(np.int32)).max())):
            v.reasons.append(f"audio samples differ by up to {d}")


def media_files(folder: Path) -> list[str]:
    """Every image or clip under a folder, hidden ones (a job's work folder) left out."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def compare_path(a: Path, b: Path, rel: str, v: Verdict) -> None:
    if a.exists() != b.exists():
        v.reasons.append(f"{rel}: {'only old' if a.exists() else 'only new'} wrote it")
        return
    if not a.exists():
        return
    if a.is_dir():
        names_a, names_b = media_files(a), media_files(b)
        if names_a != names_b:
            v.reasons.append(f"{rel}: files {names_a} against {names_b}")
        for name in sorted(set(names_a) & set(names_b)):
            compare_path(a / name, b / name, f"{rel}/{name}", v)
    elif a.suffix.lower() in VIDEO_SUFFIXES:
        compare_video(a, b, v)
    else:
        v.pixels(read_image(a), read_image(b), rel)


def compare_case(case: Case, old: Result, new: Result, old_run: Path, new_run: Path) -> Verdict:
    v = Verdict()
    if old.code != new.code:
        v.reasons.append(f"exit code {old.code} against {new.code}")
    if last_line(old.stdout) != last_line(new.stdout):
        v.reasons.append(f"stdout's last line {last_line(old.stdout)!r} against {last_line(new.stdout)!r}")
    if case.error or old.code != 0 or new.code != 0:
        if last_line(old.stderr) != last_line(new.stderr):
            v.reasons.append(f"stderr's last line {last_line(old.stderr)!r} against {last_line(new.stderr)!r}")
    elif untimed(last_line(old.stderr)) != untimed(last_line(new.stderr)):  # "wrote ... (5.2 s)": times aside
        v.reasons.append(f"stderr's last line {last_line(old.stderr)!r} against {last_line(new.stderr)!r}")
    if case.error and old.code == 0:
        v.reasons.append("the bad input was accepted")
    if not case.error and old.code != 0:
        v.reasons.append(f"old code failed: {last_line(old.stderr)}")
    for rel in case.outputs:
        try:
            compare_path(old_run / rel, new_run / rel, rel, v)
        except (ValueError, OSError, subprocess.CalledProcessError) as exc:
            v.reasons.append(f"{rel}: cannot compare: {exc}")
    return v


# --- the whole comparison --------------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def add_worktree(commit: str, where: Path) -> Path:
    git("worktree", "add", "--detach", "--quiet", str(where), commit)
    # `dreamcore.presets` is configs/ (a package-dir mapping only an install knows): outside an
    # install, the editable finder would hand this checkout's presets to the old code.
    presets = where / "dreamcore" / "presets"
    if not presets.exists() and (where / "configs" / "__init__.py").is_file():
        presets.symlink_to(Path("..") / "configs")
    return where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.identical", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--against", metavar="COMMIT", default=DEFAULT_COMMIT, help=f"the old code (default {DEFAULT_COMMIT})"
    )
    new = parser.add_mutually_exclusive_group()
    new.add_argument("--self-check", action="store_true", help="run COMMIT twice: is this script deterministic here?")
    new.add_argument("--new", metavar="COMMIT", help="the new code from a commit, not this checkout's working tree")
    parser.add_argument("--only", metavar="NAME,...", help="run only these cases: " + ", ".join(c.name for c in CASES))
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder, with each command's output")
    args = parser.parse_args(argv)

    cases = CASES
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        unknown = [w for w in wanted if w not in {c.name for c in CASES}]
        if unknown:
            parser.error(f"unknown case {unknown[0]!r}")
        cases = [c for c in CASES if c.name in wanted]

    t0 = time.monotonic()
    commits = {}
    for key, ref in (("old", args.against), ("new", args.against if args.self_check else args.new)):
        if ref is None:
            continue
        try:
            commits[key] = git("rev-parse", "--verify", f"{ref}^{{commit}}")
        except subprocess.CalledProcessError as exc:
            print(f"identical: {ref}: not a commit ({exc.stderr.strip()})", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="dreamreel-identical-"))
    worktrees: list[Path] = []
    try:
        trees = {}
        for key, commit in commits.items():
            trees[key] = tmp / f"{key}-tree"
            worktrees.append(add_worktree(commit, trees[key]))
        trees.setdefault("new", REPO)
        labels = {"old": f"old {commits['old'][:7]}"}
        labels["new"] = f"new {commits['new'][:7]}" if "new" in commits else "new (this checkout)"
        media, run, keras_home = tmp / "media", tmp / "run", tmp / "keras-home"
        keras_home.mkdir()
        make_media(media)
        results = {}
        for key in ("old", "new"):
            results[key] = run_side(key, labels[key], trees[key], media, run, keras_home, cases)
            run.rename(tmp / key)  # the other side writes to the very same paths

        print(f"\n{'case':<18} {'result':<9} {'frames':>6} {'max diff':>8}")
        differ = 0
        for case, old, new in zip(cases, results["old"], results["new"], strict=True):
            v = compare_case(case, old, new, tmp / "old", tmp / "new")
            differ += bool(v.reasons)
            diff = "-" if v.max_diff is None else str(v.max_diff)
            line = f"{case.name:<18} {'DIFFERENT' if v.reasons else 'OK':<9} {v.frames:>6} {diff:>8}"
            print(line + (f"  {'; '.join(v.reasons)}" if v.reasons else ""))
        newer = commits["new"][:7] if "new" in commits else "this checkout"
        what = f"{commits['old'][:7]} against itself" if args.self_check else f"{newer} against {commits['old'][:7]}"
        print(f"\n{what}: {len(cases) - differ} of {len(cases)} cases identical ({time.monotonic() - t0:.0f} s)")
        return 1 if differ else 0
    finally:
        for tree in worktrees:  # only ours: no `git worktree prune`, which would touch others' too
            gone = subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True
            )
            if gone.returncode:
                print(
                    f"identical: could not remove the worktree {tree}: {gone.stderr.decode().strip()}", file=sys.stderr
                )
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
