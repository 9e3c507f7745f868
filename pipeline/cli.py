"""`dreamreel ...`: parse the command line, run the pipeline, turn typed errors into one line.

Exit codes (README: "Exit codes"): 0 done; 1 failed; 2 bad usage or input; 3 done but some items failed;
130 stopped. Set DREAMREEL_DEBUG=1 to get the traceback behind any error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from dreamcore import backbones
from dreamcore.preset import preset_description, preset_names
from pipeline.api import dream_folder, dream_video, dream_zoom
from pipeline.cluster.schedule import INTERRUPTED, on_sigint
from pipeline.commands import (
    PROG,
    build_parser,
    config_from_args,
    error_line,
    estimate_line,
    in_flags,
    preview_job,
    preview_sheet,
    run_image,
    video_request,
    video_settings,
    zoom_job,
)
from pipeline.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    UsageError,
    one_line,
)
from pipeline.images import BatchRequest, summary
from pipeline.job.locations import default_workdir
from pipeline.progress import TqdmBar
from pipeline.runtime import load_tensorflow

R = TypeVar("R")


class _TqdmLogHandler(logging.Handler):
    """Warnings as `dreamreel: warning: ...` lines that don't tear a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(f"{PROG}: {record.levelname.lower()}: {one_line(in_flags(record.getMessage()))}", file=sys.stderr)


def _setup_logging() -> None:
    log = logging.getLogger("dreamcore")
    if not any(isinstance(h, _TqdmLogHandler) for h in log.handlers):
        log.addHandler(_TqdmLogHandler())
    log.setLevel(logging.INFO)
    log.propagate = False


def _with_bar(job: Callable[..., R], req: Any, quiet: bool) -> R:
    """Run a job of the Python API with the command's progress bar drawn from its events."""
    bar = TqdmBar(quiet)
    try:
        return job(req, on_progress=bar)
    finally:
        bar.close()


def _stopped(what: str, where: str) -> int:
    """Ctrl-C in a resumable job: one line saying where its finished work is kept."""
    print(
        one_line(f"{PROG}: stopped; finished {what} are kept in {where}. Run the same command again to resume."),
        file=sys.stderr,
    )
    return EXIT_INTERRUPTED


def cmd_image(args: argparse.Namespace) -> int:

    with _DreamBar(disable=args.quiet, desc=os.path.basename(args.input)) as bar:
        done = run_image(args, bar.update)
    height, width = done.pixels.shape[:2]
    print(f"{PROG}: wrote {done.output} ({width}x{height}, {done.network}, {done.seconds:.1f} s)", file=sys.stderr)
    return EXIT_OK


class _DreamBar:
    """A tqdm bar over every gradient step of every octave, showing octave and loss."""

    def __init__(self, disable: bool, desc: str):
        self.disable = disable
        self.desc = desc
        self.bar: Any = None

    def __enter__(self) -> _DreamBar:
        return self

    def update(self, octave: int, octaves: int, iteration: int, iterations: int, loss: float) -> None:
        if self.disable:
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=octaves * iterations,
                desc=self.desc,
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=False,
            )
        # max_loss may end an octave early: jump to where this step really is.
        self.bar.n = (octave - 1) * iterations + iteration
        self.bar.set_postfix_str(f"octave {octave}/{octaves} loss {loss:.3g}", refresh=False)
        self.bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_video(args: argparse.Namespace) -> int:

    cfg, vcfg, keyframes, out = video_settings(args)
    if args.preview:
        from pathlib import Path

        return _preview(args, str(Path(out).with_name(Path(out).stem + "-preview.png")), cfg, vcfg, keyframes, 6)
    req = video_request(args, cfg, vcfg, keyframes, out)
    start = time.monotonic()
    try:
        result = _with_bar(dream_video, req, req.quiet)
    except KeyboardInterrupt:
        return _stopped("frames", req.workdir or default_workdir(out))
    shots = len(result.shots)
    print(
        f"{PROG}: wrote {out} ({result.frames} frames, {shots} shot{'s' if shots != 1 else ''}, "
        f"{result.dreamt} dreamt now, {result.resumed} resumed{_replayed(result.replayed)}, "
        f"{time.monotonic() - start:.1f} s)",
        file=sys.stderr,
    )
    return EXIT_OK


def _replayed(n: int) -> str:
    """What a repair cost: frames dreamt again, kept nowhere, only to reach a damaged part."""
    return f", {n} dreamt again to reach what was damaged" if n else ""


def cmd_preview(args: argparse.Namespace) -> int:

    t0 = time.monotonic()
    sheet, estimate = preview_job(args)
    print(f"{PROG}: wrote {sheet} ({time.monotonic() - t0:.0f} s). {estimate_line(estimate)}", file=sys.stderr)
    return EXIT_OK


def _preview(args: argparse.Namespace, out: str, cfg: Any, vcfg: Any, keyframes: Any, count: int) -> int:
    """Preview ``args.input`` (a clip or images) into the contact sheet ``out``, with the estimate."""
    t0 = time.monotonic()
    sheet, estimate = preview_sheet(args, out, cfg, vcfg, keyframes, count)
    print(
        f"{PROG}: wrote {sheet} ({time.monotonic() - t0:.0f} s). {estimate_line(estimate)}",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_zoom(args: argparse.Namespace) -> int:

    req = zoom_job(args)
    fps = req.fps
    out = req.output
    start = time.monotonic()
    try:
        result = _with_bar(dream_zoom, req, req.quiet)
    except KeyboardInterrupt:
        return _stopped("frames", req.workdir or default_workdir(out))
    print(
        f"{PROG}: wrote {out} ({result.frames} frames at {fps} fps, {result.dreamt} dreamt now, "
        f"{result.resumed} resumed{_replayed(result.replayed)}, {time.monotonic() - start:.1f} s)",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_images(args: argparse.Namespace) -> int:
    from pathlib import Path

    cfg = config_from_args(args)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers}: give at least 1")
    req = BatchRequest(
        in_dir=Path(args.input),
        out_dir=Path(args.output),
        config=cfg,
        fmt=args.format,
        restart=args.restart,
        workers=args.workers,
        scheduler=args.scheduler,
        quiet=args.quiet,
        workdir=args.workdir,
    )
    try:
        report = _with_bar(dream_folder, req, req.quiet)
    except KeyboardInterrupt:
        return _stopped("images", args.output)
    print(summary(report), file=sys.stderr)
    return EXIT_PARTIAL if report.failed else EXIT_OK


def cmd_layers(args: argparse.Namespace) -> int:
    backbone = backbones.get(args.model)
    is_file = isinstance(backbone, backbones.KerasFile)
    if args.all or args.channels or is_file:
        load_tensorflow()
    names = backbone.layer_names() if args.all else backbone.dream_layers()
    if args.channels or is_file:
        shapes = backbone.output_shapes()
        width = max(len(n) for n in names) if names else 0
        for n in names:
            shape = shapes.get(n, ())
            channels = f"  {shape[-1]} channels" if len(shape) == 4 and args.channels else ""
            print(f"{n:<{width}}  {_shape_text(shape)}{channels}")
        classes = backbone.classes() if isinstance(backbone, backbones.KerasFile) else None
        if classes:
            print(f"{'class:N':<{width}}  logits of {classes} classes (--class 0 to {classes - 1})")
    else:
        print("\n".join(names))
    if not args.all:
        default = ", ".join(f"{k}={v:g}" for k, v in backbone.default_layers.items())
        label = os.path.basename(args.model) if is_file else backbone.name
        print(f"# {label} default: {default}; --all lists every layer", file=sys.stderr)
    return EXIT_OK


def _shape_text(shape: tuple[Any, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")" if shape else "(no single output)"


def cmd_presets(args: argparse.Namespace) -> int:

    names = preset_names()
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {preset_description(name)}")
    return EXIT_OK


def cmd_studio(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise UsageError('the studio needs Gradio: pip install "dreamreel[studio]"')
    if not os.path.isdir(args.folder):
        raise UsageError(f"{args.folder}: not a folder")
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1")
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: give a port from 1 to 65535")
    password = None
    if args.password:
        import getpass

        password = os.environ.get("DREAMREEL_STUDIO_PASSWORD") or getpass.getpass("studio password: ")
        if not password:
            raise UsageError("--password: the password is empty")
    from pipeline.studio.app import launch  # lazy: Gradio is the studio extra's

    launch(
        args.folder,
        host=args.host,
        port=args.port,
        password=password,
        open_browser=not args.no_browser,
        max_upload=args.max_upload,
        slots=args.jobs,
    )
    return EXIT_OK


COMMANDS = {
    "image": cmd_image,
    "images": cmd_images,
    "video": cmd_video,
    "zoom": cmd_zoom,
    "preview": cmd_preview,
    "layers": cmd_layers,
    "presets": cmd_presets,
    "studio": cmd_studio,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging()
    debug = bool(os.environ.get("DREAMREEL_DEBUG"))
    with _ctrl_c_remembered():
        return _run(args, debug)


@contextlib.contextmanager
def _ctrl_c_remembered() -> Iterator[None]:
    """Ctrl-C also sets a flag the scheduling loop checks (pipeline.cluster.schedule.on_sigint). Only where
    SIGINT is at Python's default: a runner that ignores it (nohup, `cmd &`) keeps ignoring it."""
    import signal
    import threading

    INTERRUPTED.clear()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _run(args: argparse.Namespace, debug: bool) -> int:
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"{PROG}: stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        code, line = error_line(exc)
        print(line, file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
