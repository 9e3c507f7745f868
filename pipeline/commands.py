"""The command lines of `dreamreel`: the parser, and each command's work without its printing.

``pipeline.cli`` prints, draws bars and turns errors into exit codes; the studio
(``pipeline.studio``) runs the same command lines through these functions, so a dream or a job
started in the page is the one the terminal gives. Nothing here prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dreamcore.config import COHERENCE, MODELS, PRECISIONS, SCHEMA, VIDEO_SCHEMA
from dreamcore.engine import Engine, from_float_rgb, to_float_rgb
from dreamcore.errors import LISTING, SETTING, DreamError
from pipeline.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    PipelineError,
    UsageError,
    one_line,
)
from pipeline.guide import GUIDE_ENDS, first_frame, open_guide, read_still
from pipeline.images import FORMATS
from pipeline.io.imagefile import check_output_path, read_image, write_image
from pipeline.job.assemble import check_film_output
from pipeline.preview import PreviewRequest, human, is_still_input, run_preview
from pipeline.runtime import load_tensorflow
from pipeline.settings import build_config, build_job_settings, check_guided_layers, parse_layers, resolve_noted
from pipeline.video.job import VideoRequest
from pipeline.zoom import Motion, ZoomRequest

PROG = "dreamreel"

EPILOG_IMAGE = """examples:
  dreamreel image photo.jpg -o dream.png
  dreamreel image photo.jpg -o dream.jpg --preset seed --seed 7
  dreamreel image photo.jpg -o dream.png --model vgg16_hed --preset hed
  dreamreel image photo.jpg -o dream.png --layers mixed3=1,mixed5=1.5 --set iterations=30
  dreamreel image huge.tif -o dream.tif --max-side 1600     (dream at 1600 px, keep full size)
  dreamreel image photo.jpg -o dream.png --model vgg16_hed --guide flowers.jpg
  dreamreel image photo.jpg -o dream.png --model my_model.keras --layers conv2:3=1
  dreamreel image photo.jpg -o dream.png --model classifier.keras --class 1
"""


def engine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dream options (precedence: flags > --set > --config > --preset)")
    g.add_argument("--preset", metavar="P", help="start from preset P (see `dreamreel presets`; default: default)")
    g.add_argument("--config", metavar="FILE", help="YAML file with config keys (same schema as the presets)")
    g.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="sets",
        help="set one config key, e.g. --set iterations=30 --set max_loss=null (repeatable)",
    )
    g.add_argument(
        "--layers",
        metavar="NAME=W,...",
        help="layers to dream with and their weights; NAME:C (or "
        "NAME:C1+C2, NAME:A-B) targets channels of a layer (`dreamreel layers --channels`)",
    )
    g.add_argument(
        "--class",
        metavar="N",
        type=int,
        dest="class_",
        help="maximise logit N of a model file with a classifier top (with --layers: added to them)",
    )
    g.add_argument(
        "--guide",
        metavar="FILE",
        help="guided dream: pull the layers' features towards this image's "
        "(for video, also a clip: frame t is guided by its frame at time t)",
    )
    g.add_argument(
        "--model",
        metavar="M",
        help=f"{MODELS[0]} (default), {', '.join(MODELS[1:])}, or a Keras model file (.keras, .h5) or Keras 2 "
        "SavedModel folder; naming one disables the fallback",
    )
    g.add_argument("--weights", metavar="W", help=SCHEMA["weights"].values)
    g.add_argument("--seed", metavar="N", type=int, help="random seed of the jitter (default 0: repeatable)")
    g.add_argument(
        "--max-side",
        metavar="PX",
        type=int,
        help="dream at most PX pixels on the long side; the output keeps the input's size",
    )
    g.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="bfloat16: faster where the CPU/GPU has it, same kind of dream, other pixels (default float32)",
    )


def _in_out(p: argparse.ArgumentParser, input_help: str, output_help: str) -> None:
    p.add_argument("input", metavar="IN", help=input_help)
    p.add_argument("-o", "--output", metavar="OUT", required=True, help=output_help)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Deep-dream images, folders of images and video clips.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `dreamreel COMMAND --help` for each command's options and examples.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "image", help="dream one image", epilog=EPILOG_IMAGE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _in_out(p, "image file (PNG, JPEG, TIFF, WebP, GIF, BMP, ...)", "output image; format from its extension")
    engine_options(p)

    p = sub.add_parser(
        "video",
        help="dream a video clip (resumable; Ctrl-C and run again)",
        epilog=EPILOG_VIDEO,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _in_out(p, "video file (mp4, mkv, avi, mov, webm, ...)", "output clip: .mp4, .mkv, .mov or .m4v")
    p.add_argument(
        "--coherence",
        choices=COHERENCE,
        help="how a frame starts from the previous dream (default flow)",
    )
    p.add_argument("--blend", type=finite_float, metavar="B", help=f"blend: {VIDEO_SCHEMA['blend'].values}")
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="work folder, a path or a URL such as s3://bucket/job (default: .OUT.dreamreel-work beside OUT)",
    )
    p.add_argument("--restart", action="store_true", help="discard the work folder's previous job")
    p.add_argument("--keep-work", action="store_true", help="keep the work folder after success")
    p.add_argument(
        "--keep-frames",
        action="store_true",
        help="keep every dreamt frame as a PNG in the work "
        "folder (frames/SEGMENT/INDEX.png; room for all of them), not only those not yet encoded",
    )
    p.add_argument("--start", metavar="T", type=parse_time, help="start at T (seconds or [HH:]MM:SS[.ms])")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--duration", metavar="T", type=parse_time, help="dream only T of the clip")
    g.add_argument("--frames", metavar="N", type=int, help="dream only the first N frames")
    p.add_argument("--workers", metavar="N", type=int, help="local Dask worker processes (default: 1, in-process)")
    p.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="run on an existing Dask cluster, e.g. tcp://host:8786 "
        "(no shared filesystem needed: give --workdir a URL every worker reaches)",
    )
    p.add_argument(
        "--guide-end",
        choices=GUIDE_ENDS,
        default=GUIDE_ENDS[0],
        help="a guide clip shorter than the output: start it again (loop, default) or hold its last frame",
    )
    p.add_argument(
        "--preview",
        action="store_true",
        help="only dream a few frames at a reduced size into a "
        "contact sheet (OUT's name + -preview.png) and estimate the job's time, then stop",
    )
    engine_options(p)

    p = sub.add_parser(
        "preview",
        help="a contact sheet of a few dreamt frames and the full job's time estimate",
        epilog=EPILOG_PREVIEW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="IN", help="a clip, an image or a folder of images")
    p.add_argument(
        "-o", "--output", metavar="SHEET", help="the contact sheet, an image (default: IN's name + -preview.png, here)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace SHEET if it exists")
    p.add_argument("--count", metavar="N", type=int, default=6, help="frames (or images) to dream (default 6)")
    p.add_argument(
        "-q", "--quiet", action="store_true", help="accepted like the other commands' (preview shows no progress bar)"
    )
    p.add_argument("--coherence", choices=COHERENCE, help="as for video (the estimate uses it)")
    p.add_argument("--blend", type=finite_float, metavar="B", help="as for video")
    p.add_argument("--start", metavar="T", type=parse_time, help="as for video: the range the job would dream")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--duration", metavar="T", type=parse_time, help="as for video")
    g.add_argument("--frames", metavar="N", type=int, help="as for video")
    p.add_argument("--guide-end", choices=GUIDE_ENDS, default=GUIDE_ENDS[0], help="as for video (a guide clip)")
    engine_options(p)

    p = sub.add_parser(
        "zoom",
        help="an endless zoom video grown from one image (resumable)",
        epilog=EPILOG_ZOOM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _in_out(p, "image file (PNG, JPEG, TIFF, WebP, ...): the first frame", "output clip: .mp4, .mkv, .mov or .m4v")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--duration", metavar="T", type=parse_time, help="length of the clip (default 10 s)")
    g.add_argument("--frames", metavar="N", type=int, help="number of frames")
    p.add_argument("--fps", metavar="R", default="24", help="frame rate, e.g. 24, 30 or 30000/1001 (default 24)")
    p.add_argument(
        "--zoom",
        metavar="Z",
        type=finite_float,
        default=1.01,
        help="scale per frame about the centre; above 1 zooms in (default 1.01: 1.27x a second at 24 fps)",
    )
    p.add_argument(
        "--rotate",
        metavar="DEG",
        type=finite_float,
        default=0.0,
        help="rotation per frame, degrees counter-clockwise (default 0)",
    )
    p.add_argument(
        "--pan",
        metavar="DX,DY",
        default="0,0",
        help="the view's move per frame in pixels, x right and y down (default 0,0)",
    )
    p.add_argument(
        "--steps",
        metavar="N",
        type=int,
        default=1,
        help="gradient steps per octave for every frame after the first (default 1)",
    )
    p.add_argument(
        "--octaves-after",
        metavar="N",
        type=int,
        default=1,
        dest="octaves_after",
        help="every frame after the first dreams only the N largest octaves (default 1; the first "
        "frame dreams all of the config's)",
    )
    p.add_argument("--audio", metavar="FILE", help="audio track for the clip (any file with audio; cut to length)")
    p.add_argument("--chunk-frames", type=int, default=48, help=argparse.SUPPRESS)  # tests: kills between chunks
    p.add_argument("--workdir", metavar="DIR", help="work folder (default: .OUT.dreamreel-work beside OUT)")
    p.add_argument("--restart", action="store_true", help="discard the work folder's previous job")
    p.add_argument("--keep-work", action="store_true", help="keep the work folder after success")
    engine_options(p)

    p = sub.add_parser(
        "images",
        help="dream every image in a folder tree (resumable)",
        epilog=EPILOG_IMAGES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="IN_DIR", help="folder of images (walked recursively; hidden files skipped)")
    p.add_argument("-o", "--output", metavar="OUT_DIR", required=True, help="folder for the dreams (mirrors IN_DIR)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=FORMATS[0],
        help="output format: same as the input where writable (default), png or jpg",
    )
    p.add_argument("--workers", metavar="N", type=int, help="local Dask worker processes (default: 1, in-process)")
    p.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="run on an existing Dask cluster, e.g. tcp://host:8786 "
        "(no shared filesystem needed: give --workdir a URL every worker reaches)",
    )
    p.add_argument("--restart", action="store_true", help="discard OUT_DIR's previous job record")
    p.add_argument(
        "--workdir",
        metavar="DIR",
        help="job store, a path or a URL such as s3://bucket/job (default: OUT_DIR/.dreamreel-work)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    engine_options(p)

    p = sub.add_parser(
        "layers",
        help="list the layers a model can dream with",
        epilog=EPILOG_LAYERS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default="inception_v3",
        metavar="M",
        help="inception_v3 (default), vgg16_hed, or a Keras model file (.keras, .h5) or Keras 2 SavedModel folder",
    )
    p.add_argument("--all", action="store_true", help="every layer name, not just the usual dream layers")
    p.add_argument(
        "--channels", action="store_true", help="with each layer's output shape and channel count (targets: NAME:C)"
    )

    sub.add_parser("presets", help="list the built-in presets")

    p = sub.add_parser(
        "studio",
        help='a local web page to dream by eye and run jobs (pip install "dreamreel[studio]")',
        epilog=EPILOG_STUDIO,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "folder", metavar="FOLDER", nargs="?", default=".", help="the folder it reads and writes (default: here)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default: the first free one from 7860)")
    p.add_argument(
        "--password",
        action="store_true",
        help="ask for a password in the page (read from DREAMREEL_STUDIO_PASSWORD, else asked here)",
    )
    p.add_argument("--max-upload", metavar="SIZE", default="2gb", help="largest upload, e.g. 500mb (default 2gb)")
    p.add_argument("--jobs", metavar="N", type=int, default=1, help="video and zoom jobs run at once (default 1)")
    p.add_argument("--no-browser", action="store_true", help="don't open a browser")
    return parser


EPILOG_LAYERS = """examples:
  dreamreel layers                                  (InceptionV3's dream layers)
  dreamreel layers --model vgg16_hed --channels     (with output shapes and channel counts)
  dreamreel layers --model my_model.keras           (a model file: its layers and output shapes)
"""

EPILOG_VIDEO = """examples:
  dreamreel video clip.mp4 -o dream.mp4
  dreamreel video clip.mp4 -o dream.mp4 --preset quick --frames 48        (a short test)
  dreamreel video clip.mp4 -o dream.mp4 --coherence blend --blend 0.5
  dreamreel video film.mkv -o dream.mkv --start 1:30 --duration 20
  dreamreel video clip.mp4 -o dream.mp4 --model vgg16_hed --guide other.mp4   (guided by another clip)

Killed or stopped? Run the same command again: it resumes where it stopped.
"""

EPILOG_PREVIEW = """examples:
  dreamreel preview clip.mp4                          (clip-preview.png, and the time the full job would take)
  dreamreel preview clip.mp4 -o look.png --preset quick --set step=0.02
  dreamreel preview photos/ --count 8

The frames are dreamt at 256 px with the settings the full job would use; the estimate is measured
at the job's real size on this machine.
"""

EPILOG_ZOOM = """examples:
  dreamreel zoom samples/fruits.jpg -o zoom.mp4                       (10 s at 24 fps)
  dreamreel zoom photo.jpg -o zoom.mp4 --duration 30 --zoom 1.01 --rotate 0.2 --audio song.mp3
  dreamreel zoom photo.jpg -o zoom.mp4 --frames 48 --preset quick      (a short test)

The first frame is the image dreamt with the whole config (--preset, default: zoom, --set, ...);
each later frame is the previous one moved (zoom, rotation, pan) and dreamt again with --steps
steps on its --octaves-after largest octaves.
Killed or stopped? Run the same command again: it resumes where it stopped.
"""

EPILOG_IMAGES = """examples:
  dreamreel images photos/ -o dreams/
  dreamreel images photos/ -o dreams/ --format jpg --preset quick --workers 2

Files that are not images (or are broken) are listed with their reason at the end, and the exit
code is 3; everything else is dreamt. Run the same command again to finish an interrupted batch.
"""

EPILOG_STUDIO = """examples:
  dreamreel studio                          (this folder, on http://127.0.0.1:7860)
  dreamreel studio ~/dreams --port 8000 --no-browser
  DREAMREEL_STUDIO_PASSWORD=... dreamreel studio --host 0.0.0.0 --password    (reachable from the network)

Paths typed in the page are read under FOLDER; results go to FOLDER/dreams. Video and zoom jobs
run in their own processes; after a restart the page lists them, and an unfinished one resumes.
"""


def parse_time(text: str) -> float:
    """Seconds from '12.5', '1:30' or '01:02:03.5' (finite, not negative)."""
    import math

    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a time (seconds or [HH:]MM:SS[.ms])") from None
    if len(parts) > 3 or any(not math.isfinite(p) or p < 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a time (seconds or [HH:]MM:SS[.ms])")
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a time (seconds or [HH:]MM:SS[.ms])")
    return seconds


def finite_float(text: str) -> float:
    """A number, not nan or infinite (float() takes both)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not a finite number")
    return value


# The flag that sets a config key, where one does; any other key is set with --set KEY=VALUE.
FLAGS = {
    "model": "--model",
    "weights": "--weights",
    "layers": "--layers",
    "guide": "--guide",
    "seed": "--seed",
    "max_side": "--max-side",
    "precision": "--precision",
    "video.coherence": "--coherence",
    "video.blend": "--blend",
}


def in_flags(text: str) -> str:
    """An engine message (dreamcore.errors) in the command line's words: each setting it names
    (```weights=FILE```) as the flag that sets it (``--weights FILE``; a class target ```layers=class:N```
    as ``--class N``; a key without a flag as ``--set KEY=VALUE``, or alone as its name), and each
    layer listing as the ``dreamreel layers`` command that prints it."""
    import ast
    import re

    keys = {*SCHEMA, *(f"video.{k}" for k in VIDEO_SCHEMA), *FLAGS}

    def flag(m: re.Match[str]) -> str:
        key, value = m.group(1), m.group(2)
        if key not in keys:
            return m.group(0)
        if key == "layers" and value and value.startswith("class:"):
            return f"--class {value[len('class:') :]}"
        if key in FLAGS:
            return FLAGS[key] if value is None else f"{FLAGS[key]} {value}"
        return key if value is None else f"--set {key}={value}"

    def command(m: re.Match[str]) -> str:
        every = " --all" if m.group(2) == "layer_names" else ""
        return f"`{PROG} layers --model {ast.literal_eval(m.group(1))}{every}`"

    return SETTING.sub(flag, LISTING.sub(command, text))


def _shown(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# ffmpeg is given times in microseconds (media: "%.6f"): a duration shorter than that would read as 0,
# which ffmpeg takes as no limit at all.
TIME_RESOLUTION = 1e-6


def check_duration(flag: str, value: float | None) -> None:

    if value is not None and value < TIME_RESOLUTION:
        raise UsageError(f"{flag} {value:g}: give a positive time of at least 0.000001 s")


def config_from_args(args: argparse.Namespace) -> Any:

    return with_guide(build_config(args.preset, args.config, args.sets, engine_flags(args)), args)


def with_guide(cfg: Any, args: argparse.Namespace) -> Any:
    """The config with --guide's image (commands other than video take an image only)."""
    if not args.guide:
        return cfg

    return cfg.replace(guide=read_still(args.guide))


def engine_flags(args: argparse.Namespace) -> dict[str, Any]:

    layers = parse_layers(args.layers) if args.layers else None
    if args.class_ is not None:
        if args.class_ < 0:
            raise UsageError(f"--class {args.class_}: classes count from 0")
        layers = {**(layers or {}), f"class:{args.class_}": 1.0}
    return {
        "layers": layers,
        "model": args.model,
        "weights": args.weights,
        "seed": args.seed,
        "max_side": args.max_side,
        "precision": args.precision,
    }


@dataclass(frozen=True)
class ImageDone:
    """What ``dreamreel image`` made: the file, its pixels, the network it used, how long it took."""

    output: str
    pixels: Any
    network: str
    seconds: float
    source: Any  # the input's pixels, as read


def run_image(args: argparse.Namespace, progress: Callable[..., None] | None = None) -> ImageDone:
    """The ``image`` command without its printing: the studio runs a command line through it, so a
    dream in the page is the one the command line gives. ``progress(octave, octaves, step, steps, loss)``."""
    cfg = config_from_args(args)
    out = check_output_path(args.output, args.overwrite)
    picture = read_image(args.input)
    resolve_noted(cfg)

    start = time.monotonic()
    load_tensorflow()
    engine = Engine(cfg)
    rgb, alpha = to_float_rgb(picture.pixels)
    dreamt = engine.dream_rgb(rgb, progress=progress)
    pixels = from_float_rgb(dreamt, alpha, picture.pixels.dtype)
    write_image(out, pixels, overwrite=args.overwrite)  # never over a file that appeared while we dreamt
    r = engine.resolved
    network = os.path.basename(r.model) if r.weights == "file" else f"{r.model}/{os.path.basename(r.weights)}"
    return ImageDone(str(out), pixels, network, time.monotonic() - start, picture.pixels)


def video_settings(args: argparse.Namespace) -> tuple[Any, Any, Any, str]:
    cfg, vcfg, keyframes = build_job_settings(
        args.preset, args.config, args.sets, engine_flags(args), {"coherence": args.coherence, "blend": args.blend}
    )
    out = check_film_output(args.output, args.overwrite)
    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames {args.frames}: give at least 1")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers}: give at least 1")
    check_duration("--duration", args.duration)
    return cfg, vcfg, keyframes, out


def video_job(args: argparse.Namespace) -> VideoRequest:
    """The job a ``dreamreel video`` command line asks for, checked as the command checks it (the
    studio runs its jobs from command lines through this and the Python API)."""
    return video_request(args, *video_settings(args))


def video_request(args: argparse.Namespace, cfg: Any, vcfg: Any, keyframes: Any, out: str) -> VideoRequest:
    if args.guide:
        open_guide(args.guide)  # a bad guide is said before any work
        check_guided_layers(cfg.layers)
    return VideoRequest(
        input=args.input,
        output=out,
        config=cfg,
        video=vcfg,
        workdir=args.workdir,
        restart=args.restart,
        keep_work=args.keep_work or args.keep_frames,
        keep_frames=args.keep_frames,
        start=args.start,
        duration=args.duration,
        frames=args.frames,
        workers=args.workers,
        scheduler=args.scheduler,
        quiet=args.quiet,
        keyframes=keyframes,
        guide=args.guide,
        guide_end=args.guide_end,
        overwrite=args.overwrite,
    )


def _preview_guide(cfg: Any, args: argparse.Namespace) -> tuple[Any, tuple[str, str] | None]:
    """A preview's config with --guide's image, or the guide clip and its --guide-end. A clip guides
    a clip's preview frame by frame, as in `video`; an image preview takes its first frame (said)."""
    if not args.guide:
        return cfg, None

    check_guided_layers(cfg.layers)
    still, clip = open_guide(args.guide)
    if clip is None:
        return cfg.replace(guide=still), None
    if not is_still_input(args.input):
        return cfg, (str(clip), args.guide_end)
    logging.getLogger("dreamcore").warning(
        "images are guided by a still: the preview takes the guide clip's first frame"
    )
    return cfg.replace(guide=first_frame(clip)), None


def estimate_line(estimate: Any) -> str:
    """The time a full job would take, as the preview says it."""
    seconds = estimate.seconds
    return (
        f"The full job would take about {human(seconds)}{f' ({seconds:.0f} s)' if seconds >= 90 else ''} "
        f"on this machine: {'; '.join(estimate.lines)}"
    )


def preview_sheet(
    args: argparse.Namespace, out: str, cfg: Any, vcfg: Any, keyframes: Any, count: int
) -> tuple[Any, Any]:
    """The contact sheet and the estimate of a ``preview`` command line (the studio's too)."""
    cfg, guide_clip = _preview_guide(cfg, args)
    clip, end = guide_clip or (None, "loop")
    return run_preview(
        PreviewRequest(
            input=args.input,
            output=out,
            config=cfg,
            video=vcfg,
            keyframes=keyframes,
            count=count,
            start=args.start,
            duration=args.duration,
            frames=args.frames,
            overwrite=args.overwrite,
            guide_clip=clip,
            guide_end=end,
        )
    )


def preview_job(args: argparse.Namespace) -> tuple[Any, Any]:
    """``dreamreel preview``'s checks and work without its printing: (sheet path, estimate)."""
    from pathlib import Path

    cfg, vcfg, keyframes = build_job_settings(
        args.preset, args.config, args.sets, engine_flags(args), {"coherence": args.coherence, "blend": args.blend}
    )
    if not 1 <= args.count <= 64:
        raise UsageError(f"--count {args.count}: give an integer from 1 to 64")
    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames {args.frames}: give at least 1")
    check_duration("--duration", args.duration)
    out = args.output or f"{Path(args.input.rstrip('/')).stem}-preview.png"
    return preview_sheet(args, out, cfg, vcfg, keyframes, args.count)


def parse_fps(text: str) -> Any:
    from fractions import Fraction

    try:
        rate = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"--fps {text}: not a rate (e.g. 24, 29.97 or 30000/1001)") from None
    if not 1 <= rate <= 240:
        raise UsageError(f"--fps {text}: give a rate from 1 to 240")
    return rate.limit_denominator(1001)


def zoom_job(args: argparse.Namespace) -> ZoomRequest:
    """The job a ``dreamreel zoom`` command line asks for, checked as the command checks it."""

    cfg, _, keyframes = build_job_settings(args.preset or "zoom", args.config, args.sets, engine_flags(args))
    cfg = with_guide(cfg, args)
    video_keys = [k for k in keyframes.keys if k.startswith("video.")]
    if video_keys:
        raise UsageError(f"{video_keys[0]}: zoom has no video settings")
    out = check_film_output(args.output, args.overwrite)
    fps = parse_fps(args.fps)
    if args.frames is not None:
        frames = args.frames
    else:
        duration = 10.0 if args.duration is None else args.duration
        check_duration("--duration", duration)
        frames = round(duration * fps)
    if frames < 1:
        raise UsageError(f"--frames {frames}: give at least 1")
    if not 0.5 <= args.zoom <= 2:
        raise UsageError(
            f"--zoom {args.zoom:g}: give a scale per frame from 0.5 to 2 (1 is still; 1.02 a steady zoom in)"
        )
    if not 1 <= args.steps <= 1000:
        raise UsageError(f"--steps {args.steps}: give an integer from 1 to 1000")
    octaves = SCHEMA["octaves"]  # the follow-up frames dream at most the config's octaves
    if not octaves.check(args.octaves_after):
        raise UsageError(f"--octaves-after {args.octaves_after}: give {octaves.values}")
    try:
        dx, dy = (finite_float(v) for v in args.pan.split(","))
    except (ValueError, argparse.ArgumentTypeError):
        raise UsageError(f"--pan {args.pan[:60]}: expected DX,DY in pixels, e.g. 1.5,0") from None
    return ZoomRequest(
        input=args.input,
        output=out,
        config=cfg,
        frames=frames,
        fps=fps,
        motion=Motion(zoom=args.zoom, rotate=args.rotate, pan_x=dx, pan_y=dy),
        steps=args.steps,
        octaves=args.octaves_after,
        chunk_frames=max(1, args.chunk_frames),
        keyframes=keyframes,
        audio=args.audio,
        workdir=args.workdir,
        restart=args.restart,
        keep_work=args.keep_work,
        quiet=args.quiet,
        overwrite=args.overwrite,
    )


def error_line(exc: Exception) -> tuple[int, str]:
    """The exit code and the one line the command line prints for an error (the studio shows the same)."""
    if isinstance(exc, (DreamError, PipelineError)):
        code = exc.exit_code if isinstance(exc, PipelineError) else EXIT_USAGE
        return code, f"{PROG}: error: {one_line(in_flags(str(exc)))}"
    if isinstance(exc, MemoryError):
        return EXIT_FAILED, f"{PROG}: error: out of memory (try --max-side or a smaller --set tile=...)"
    # the last line of defence: one line, no traceback
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        EXIT_FAILED,
        f"{PROG}: error: {one_line(f'{type(exc).__name__}: {first}')} (DREAMREEL_DEBUG=1 shows the traceback)",
    )
