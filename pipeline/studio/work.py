"""What the studio's buttons do, without the page: each builds a ``dreamreel`` command line from
the page's settings and runs it through the command line's own code (``pipeline.commands``), so a
result in the page is the one a terminal in the studio's folder gives. Errors come back as the
command line's one-line message (:class:`Refused`), never as a traceback, and a refused input
leaves nothing written.

The page (``app``) is a thin layer over these; the API tests call them through ``gradio_client``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.studio.board import Board
from pipeline.studio.commands import QUICK_SIDE, Folder, Look, option, positional, shown

BUILT_IN_MODELS = ("auto", "inception_v3", "vgg16_hed")
EXPLORE_MODES = ("layers", "channels", "presets")
EXPLORE_SIDE = 192  # an explore tile's long side (pixels)

# TensorFlow's graphs are not shared between dreams run at once: one dream at a time in the page.
_dreaming = threading.Lock()
# The uploads a button's run kept, per thread (Gradio runs each event in a worker thread).
_fresh = threading.local()


class Refused(Exception):
    """A command line refused (bad input, bad setting): its one line, as the CLI prints it."""

    def __init__(self, line: str, code: int):
        super().__init__(line)
        self.line, self.code = line, code


@dataclass(frozen=True)
class Dreamt:
    """One dream made in the page."""

    before: np.ndarray  # the input, 8-bit RGB
    after: np.ndarray  # the dream, 8-bit RGB
    output: str  # the file written, relative to the studio's folder
    command: str  # the command line that gives it
    seconds: float
    network: str
    notes: tuple[str, ...] = ()  # what the command line would print as warnings (an offline fallback, ...)


def _refused(exc: Exception) -> Refused:
    from pipeline.commands import error_line  # lazy: TensorFlow's modules behind the command line

    code, line = error_line(exc)
    return Refused(line, code)


def _parse(argv: list[str]) -> Any:
    """A command line as ``dreamreel`` parses it (argparse's complaint as a one-line refusal)."""
    import io

    from pipeline.commands import build_parser  # lazy: as above

    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(argv)
    except SystemExit as exc:
        last = err.getvalue().strip().splitlines()[-1:] or ["bad command line"]
        raise Refused(f"dreamreel {argv[0]}: {last[0].split(': ', 1)[-1]}", int(exc.code or 2)) from None


@contextlib.contextmanager
def _warnings() -> Iterator[list[str]]:
    """The warnings the engine logs meanwhile, in the command line's words (for the page)."""
    from pipeline.commands import in_flags  # lazy: as above

    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(f"warning: {in_flags(record.getMessage())}")

    log = logging.getLogger("dreamcore")
    handler = Keep(logging.WARNING)
    log.addHandler(handler)
    try:
        yield said
    finally:
        log.removeHandler(handler)


class Studio:
    """The studio of one folder: its dreams, explorations, previews and jobs."""

    def __init__(self, folder: Folder, slots: int = 1):
        self.folder = folder
        self.board = Board(folder, slots)
        for part in ("uploads", "quick", "explore", "preview"):  # made once, not by a refused input
            folder.state(part)

    # --- inputs -------------------------------------------------------------------------------

    def source(self, upload: str | None, path: str | None, what: str) -> str:
        """The input: an uploaded file (kept under the studio's folder) or a path under the folder.
        Within :meth:`attempt`, a copy made now is removed again if the input is then refused."""
        try:
            if upload:
                return self._keep(upload)
            if path and path.strip():
                return self.folder.inside(path, what)
        except Refused:
            raise
        except Exception as exc:
            raise _refused(exc) from None
        raise Refused(f"dreamreel: error: no {what} given: drop a file or type a path under the studio's folder", 2)

    def _keep(self, upload: str) -> str:
        rel, created = self.folder.keep_upload(upload)  # its callers say what went wrong
        if created:
            getattr(_fresh, "files", []).append(rel)
        return rel

    @contextlib.contextmanager
    def attempt(self) -> Iterator[None]:
        """What a button does: uploads kept during it are removed again when it is refused, so a
        refused input leaves nothing written."""
        _fresh.files = []
        try:
            yield
        except Refused:
            for rel in _fresh.files:
                self.folder.discard_upload(rel)
            raise
        finally:
            _fresh.files = []

    def look(self, **values: Any) -> Look:
        """The panel's settings; a model file and a guide are paths under the studio's folder."""
        model = (values.get("model") or "auto").strip()
        guide = values.get("guide") or ""
        try:
            if model not in BUILT_IN_MODELS:
                model = self.folder.inside(model, "model file")
            if guide:
                guide = self._keep(guide)
        except Refused:
            raise
        except Exception as exc:
            raise _refused(exc) from None

        def text(key: str) -> str:
            value = values.get(key)
            return "" if value is None else str(value).strip()

        return Look(
            model=model,
            weights=values.get("weights") or "",
            preset=values.get("preset") or "default",
            layers=values.get("layers") or "",
            step=text("step"),
            octaves=text("octaves"),
            iterations=text("iterations"),
            seed=text("seed"),
            precision=values.get("precision") or "",
            guide=guide,
        )

    # --- one image ----------------------------------------------------------------------------

    def check_image(self, source: str) -> None:
        """Refuse a picture the command line would refuse (before any dream is started)."""
        from pipeline.io.imagefile import read_image  # lazy: as above

        try:
            read_image(source)
        except Exception as exc:
            raise _refused(exc) from None

    def dream(
        self,
        source: str,
        look: Look,
        quick: bool,
        progress: Callable[..., None] | None = None,
        output: str | None = None,
        side: int = QUICK_SIDE,
    ) -> Dreamt:
        """``dreamreel image``: quick (at most ``side`` pixels dreamt, into the studio's own
        folder) or full size (a new file in ``dreams/``)."""
        from pipeline.commands import run_image  # lazy: TensorFlow behind it
        from pipeline.io.imagefile import rgb8  # lazy: as above

        stem = Path(source).stem
        if output is None and quick:
            output = self.folder.scratch("quick", f"{stem}.png")
        elif output is None:
            output = self.folder.new_output(f"{stem}-dream", ".png")
        argv = ["image", positional(source), "-o", output, *(["--overwrite"] if quick else []), *look.argv()]
        if quick:
            argv += ["--max-side", str(side)]
        args = _parse(argv)
        try:
            with _dreaming, _warnings() as notes:
                done = run_image(args, progress)
        except Exception as exc:
            raise _refused(exc) from None
        return Dreamt(
            rgb8(done.source), rgb8(done.pixels), output, shown(argv), done.seconds, done.network, tuple(notes)
        )

    def explore(self, source: str, look: Look, mode: str, count: int) -> Iterator[tuple[int, int, Any]]:
        """The image dreamt quickly once per layer (the picked ones, or the network's), per channel
        of the first layer, or per preset: yields (i, n, (Dreamt, caption, settings) or Refused)."""
        variants = self.variants(look, mode, count)
        for i, (caption, variant, settings) in enumerate(variants):
            out = self.folder.scratch("explore", f"{i:02d}.png")
            try:
                dreamt = self.dream(source, variant, quick=True, output=out, side=EXPLORE_SIDE)
                result: Any = (dreamt, caption, settings)
            except Refused as exc:
                result = exc
            yield i, len(variants), result

    def variants(self, look: Look, mode: str, count: int) -> list[tuple[str, Look, dict[str, Any]]]:
        """(caption, settings for the dream, what clicking the tile sets in the panel)."""
        from dreamcore.preset import preset_names  # lazy: presets are read from files

        if mode not in EXPLORE_MODES:
            raise Refused(f"dreamreel: error: explore {mode!r}: choose {', '.join(EXPLORE_MODES)}", 2)
        count = max(1, int(count))
        if mode == "presets":
            names = list(preset_names())[:count]
            return [(p, dataclasses.replace(look, preset=p, layers=""), {"preset": p, "layers": ""}) for p in names]
        picked = [part.split("=")[0].split(":")[0] for part in look.layers.split(",") if part.strip()]
        if not picked:
            picked = [name for name, _ in self.layer_choices(look)]
        if mode == "layers":
            chosen = picked[:count]
            return [(name, dataclasses.replace(look, layers=f"{name}=1"), {"layers": f"{name}=1"}) for name in chosen]
        if not picked:
            raise Refused("dreamreel: error: explore channels: this network has no dream layers: name one in Layers", 2)
        layer = picked[0]
        return [
            (f"{layer}:{c}", dataclasses.replace(look, layers=f"{layer}:{c}=1"), {"layers": f"{layer}:{c}=1"})
            for c in range(count)
        ]

    def layer_choices(self, look: Look) -> list[tuple[str, int | None]]:
        """The network's dream layers with their channel counts (the network is built once)."""
        from dreamcore.engine import resolve_config  # lazy: TensorFlow behind it
        from pipeline.runtime import load_tensorflow  # lazy: as above
        from pipeline.settings import build_config  # lazy: as above

        try:
            cfg = build_config(look.preset, None, [], {"model": look.model, "weights": look.weights or None})
            backbone = resolve_config(cfg).backbone
            load_tensorflow()
            with _dreaming:
                shapes = backbone.output_shapes()
        except Exception as exc:
            raise _refused(exc) from None
        out = []
        for name in backbone.dream_layers():
            shape = shapes.get(name, ())
            out.append((name, int(shape[-1]) if len(shape) == 4 and shape[-1] else None))
        return out

    # --- clips and zooms ----------------------------------------------------------------------

    def preview(self, source: str, look: Look, clip_options: list[str]) -> tuple[str, str, str]:
        """``dreamreel preview``: (contact sheet, the time the job would take, the command line)."""
        from pipeline.commands import estimate_line, preview_job  # lazy: TensorFlow behind it

        sheet = self.folder.scratch("preview", f"{Path(source).stem}.png")
        argv = ["preview", positional(source), "-o", sheet, "--overwrite", *clip_options, *look.argv()]
        args = _parse(argv)
        try:
            with _dreaming:
                path, estimate = preview_job(args)
        except Exception as exc:
            raise _refused(exc) from None
        return str(path), estimate_line(estimate), shown(argv)

    def start_video(self, source: str, look: Look, clip_options: list[str]) -> tuple[str, str]:
        """Check the clip and the command line here (a bad one is refused with nothing written),
        then queue the job. Returns (job id, command line)."""
        from pipeline.commands import video_job  # lazy: as above
        from pipeline.io import media  # lazy: as above

        def check(argv: list[str]) -> None:
            video_job(_parse(argv))
            media.probe(source)

        return self._start("video", source, "-dream", [*clip_options, *look.argv()], check)

    def start_zoom(self, source: str, look: Look, zoom_options: list[str]) -> tuple[str, str]:
        """The same for a zoom grown from a still."""
        from pipeline.commands import zoom_job  # lazy: as above
        from pipeline.io.imagefile import read_image  # lazy: as above

        def check(argv: list[str]) -> None:
            zoom_job(_parse(argv))
            read_image(source)

        return self._start("zoom", source, "-zoom", [*zoom_options, *look.argv()], check)

    def _start(
        self, kind: str, source: str, tail: str, options: list[str], check: Callable[[list[str]], None]
    ) -> tuple[str, str]:
        def argv(output: str) -> list[str]:
            return [kind, positional(source), "-o", output, *options]

        try:
            check(argv(self.folder.new_output(f"{Path(source).stem}{tail}", ".mp4")))
        except Refused:
            raise
        except Exception as exc:
            raise _refused(exc) from None
        # The output's name is chosen again where jobs are made, so two jobs never share one.
        job_id, made = self.board.submit(kind, argv, Path(source).name, f"{Path(source).stem}{tail}")
        return job_id, shown(made)


def clip_options(frames: Any, start: Any, duration: Any, coherence: Any) -> list[str]:
    """A clip's options as the command line takes them (blank: the job's default)."""
    return _options(("--start", start), ("--duration", duration), ("--frames", frames), ("--coherence", coherence))


def zoom_options(frames: Any, fps: Any, zoom: Any, rotate: Any) -> list[str]:
    """A zoom's options as the command line takes them (blank: the command's default)."""
    return _options(("--frames", frames), ("--fps", fps), ("--zoom", zoom), ("--rotate", rotate))


def _options(*pairs: tuple[str, Any]) -> list[str]:
    out: list[str] = []
    for flag, value in pairs:
        out += option(flag, "" if value is None else str(value).strip())
    return out
