"""The studio's page (Gradio) and its launch.

Gradio, not Streamlit or a page of our own: it is this field's convention (the keras.io example's
Space), and its queue, progress bars, video player, file uploads with a size limit, password and
API client (``gradio_client``, which the tests use) are what the studio needs.
"""

from __future__ import annotations

import html
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pipeline.errors import UsageError
from pipeline.studio.commands import QUICK_SIDE, Folder
from pipeline.studio.work import BUILT_IN_MODELS, EXPLORE_MODES, Refused, Studio, clip_options, zoom_options

LOCAL = "127.0.0.1"
CSS = """
.dr-error { color: #b3261e; font-weight: 600; }
.dr-note { color: #8a5a00; }
.dr-bar { height: 14px; background: #e5e5e5; border-radius: 7px; overflow: hidden; }
.dr-bar > div { height: 100%; background: #7b5cd6; }
"""

SETTINGS = ("model", "weights", "preset", "layers", "step", "octaves", "iterations", "seed", "precision", "guide")


def _said(line: str) -> str:
    """A one-line message as the page shows it (the command line's words)."""
    return f'<p class="dr-error" id="dr-message">{html.escape(line, quote=False)}</p>'


def _ok(text: str) -> str:
    return f'<p id="dr-message">{html.escape(text, quote=False)}</p>'


def _note(text: str) -> str:
    return f'<p class="dr-note">{html.escape(text, quote=False)}</p>'


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def build(studio: Studio) -> Any:
    """The page of one studio."""
    import gradio as gr  # lazy: the studio extra

    # Gradio keeps what it shows in its cache folder: files older than a day go, checked hourly.
    with gr.Blocks(title="dreamreel studio", analytics_enabled=False, delete_cache=(3600, 86400)) as page:
        ui = _layout(gr, studio.folder)
        _wire_settings(gr, page, studio, ui)
        _wire_image(gr, studio, ui)
        _wire_explore(gr, studio, ui)
        _wire_clips(gr, studio, ui)
        _wire_jobs(gr, page, studio, ui)
    return page


def _layout(gr: Any, folder: Folder) -> SimpleNamespace:
    """Every component of the page, by name: the settings panel on the left, the tabs on the right."""
    from dreamcore.config import COHERENCE, PRECISIONS  # lazy: read when the page is built
    from dreamcore.preset import preset_names  # lazy: as above

    ui = SimpleNamespace()
    gr.Markdown(f"## dreamreel studio\nFolder `{folder.root}`: paths are read under it; results go to `dreams/`.")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            gr.Markdown("### Dream settings")
            ui.model = gr.Dropdown(
                list(BUILT_IN_MODELS),
                value="auto",
                allow_custom_value=True,
                label="Network (or a model file under the folder)",
                elem_id="dr-model",
            )
            ui.weights = gr.Dropdown(
                ["", "imagenet", "untrained"], value="", label="Weights (blank: the network's)", elem_id="dr-weights"
            )
            ui.preset = gr.Dropdown(preset_names(), value="default", label="Preset", elem_id="dr-preset")
            ui.picker = gr.Dropdown([], multiselect=True, label="Layers (channels)", elem_id="dr-picker")
            ui.channels = gr.Textbox(label="Channels of each picked layer (3, 3+7, 0-15; blank: all)")
            ui.layers = gr.Textbox(
                label="Layers as the command line takes them",
                placeholder="blank: the preset's; e.g. mixed3=1,mixed5:12=1.5",
                elem_id="dr-layers",
            )
            with gr.Row():  # text, not numbers: blank is the preset's value, and the command line checks them
                ui.step = gr.Textbox(label="Step", placeholder="preset's", elem_id="dr-step")
                ui.octaves = gr.Textbox(label="Octaves", placeholder="preset's", elem_id="dr-octaves")
            with gr.Row():
                ui.iterations = gr.Textbox(label="Iterations", placeholder="preset's", elem_id="dr-iterations")
                ui.seed = gr.Textbox(label="Seed", placeholder="0", elem_id="dr-seed")
            ui.precision = gr.Dropdown(["", *PRECISIONS], value="", label="Precision (blank: float32)")
            ui.guide = gr.File(label="Guide image (optional)", file_types=["image"], type="filepath")
        ui.settings = [getattr(ui, name) for name in SETTINGS]
        with gr.Column(scale=3), gr.Tabs(selected="image") as ui.tabs:
            _image_tab(gr, ui)
            _explore_tab(gr, ui)
            _video_tab(gr, ui, COHERENCE)
            _zoom_tab(gr, ui)
            _jobs_tab(gr, ui)
    return ui


def _source(gr: Any, ui: SimpleNamespace, prefix: str, what: str) -> None:
    with gr.Row():
        setattr(ui, f"{prefix}_in", gr.File(label=f"{what}: drop it here", type="filepath", elem_id=f"dr-{prefix}-in"))
        setattr(ui, f"{prefix}_path", gr.Textbox(label="or a path under the folder", elem_id=f"dr-{prefix}-path"))


def _command(gr: Any) -> Any:
    label = "The command line that gives it (run in the folder)"
    return gr.Code(label=label, language="shell", wrap_lines=True, lines=2)


def _image_tab(gr: Any, ui: SimpleNamespace) -> None:
    with gr.Tab("Image", id="image"):
        _source(gr, ui, "image", "Image")
        with gr.Row():
            ui.quick = gr.Button(f"Quick dream ({QUICK_SIDE} px)", variant="primary", elem_id="dr-quick")
            ui.full = gr.Button("Full size", elem_id="dr-full")
        ui.image_msg = gr.HTML(elem_id="dr-image-message")
        ui.slider = gr.ImageSlider(
            label="Before / after", elem_id="dr-slider", type="numpy", interactive=False, format="png"
        )
        ui.image_file = gr.File(label="Download", elem_id="dr-image-file", interactive=False)
        ui.image_cmd = _command(gr)


def _explore_tab(gr: Any, ui: SimpleNamespace) -> None:
    with gr.Tab("Explore", id="explore"):
        gr.Markdown(
            "The Image tab's image dreamt quickly once per layer (the picked ones, else the network's), per "
            "channel of the first layer, or per preset. Click a dream to take its settings."
        )
        with gr.Row():
            ui.mode = gr.Radio(list(EXPLORE_MODES), value="layers", label="One dream per", elem_id="dr-mode")
            ui.count = gr.Slider(1, 16, value=6, step=1, label="At most", elem_id="dr-count")
            ui.explore = gr.Button("Explore", variant="primary", elem_id="dr-explore")
        ui.explore_msg = gr.HTML(elem_id="dr-explore-message")
        ui.gallery = gr.Gallery(
            label="Dreams", columns=4, elem_id="dr-gallery", height="auto", interactive=False, format="png"
        )
        ui.tiles = gr.State([])


def _video_tab(gr: Any, ui: SimpleNamespace, coherence: tuple[str, ...]) -> None:
    with gr.Tab("Video", id="video"):
        _source(gr, ui, "clip", "Clip")
        with gr.Row():
            ui.frames = gr.Textbox(label="Frames (blank: all)", elem_id="dr-frames")
            ui.start = gr.Textbox(label="Start (s or MM:SS)")
            ui.duration = gr.Textbox(label="Duration")
            ui.coherence = gr.Dropdown(
                ["", *coherence], value="", label="Coherence (blank: flow)", elem_id="dr-coherence"
            )
        with gr.Row():
            ui.preview = gr.Button("Preview and estimate", elem_id="dr-preview")
            ui.run = gr.Button("Run the job", variant="primary", elem_id="dr-run")
        ui.video_msg = gr.HTML(elem_id="dr-video-message")
        ui.sheet = gr.Image(
            label="Preview", type="filepath", interactive=False, elem_id="dr-sheet", buttons=["download", "fullscreen"]
        )
        ui.video_cmd = _command(gr)


def _zoom_tab(gr: Any, ui: SimpleNamespace) -> None:
    with gr.Tab("Zoom", id="zoom"):
        _source(gr, ui, "still", "Still")
        with gr.Row():
            ui.zframes = gr.Textbox(label="Frames", value="48", elem_id="dr-zframes")
            ui.fps = gr.Textbox(label="Frame rate", value="24")
            ui.zoom = gr.Textbox(label="Zoom per frame", value="1.01")
            ui.rotate = gr.Textbox(label="Rotation per frame (degrees)", value="0")
        ui.run_zoom = gr.Button("Run the zoom", variant="primary", elem_id="dr-run-zoom")
        ui.zoom_msg = gr.HTML(elem_id="dr-zoom-message")
        ui.zoom_cmd = _command(gr)


def _jobs_tab(gr: Any, ui: SimpleNamespace) -> None:
    with gr.Tab("Jobs", id="jobs"):
        ui.table = gr.Dataframe(
            headers=["job", "input", "state", "frames", "ETA", "message"], interactive=False, elem_id="dr-jobs"
        )
        with gr.Row():
            ui.pick = gr.Dropdown([], label="Job", elem_id="dr-pick", allow_custom_value=True)
            ui.cancel = gr.Button("Cancel", elem_id="dr-cancel")
            ui.resume = gr.Button("Resume", elem_id="dr-resume")
        ui.bar = gr.HTML(elem_id="dr-bar")
        ui.player = gr.Video(label="Result", elem_id="dr-player", interactive=False)
        ui.playing = gr.State(None)
        ui.job_cmd = _command(gr)
        ui.timer = gr.Timer(1.0)


def _look(studio: Studio, values: tuple[Any, ...]) -> Any:
    return studio.look(**dict(zip(SETTINGS, values, strict=True)))


def _wire_settings(gr: Any, page: Any, studio: Studio, ui: SimpleNamespace) -> None:
    def fill_picker(*values: Any) -> Any:
        try:
            choices = studio.layer_choices(_look(studio, values))
        except Refused:
            return gr.update(choices=[], value=[])
        return gr.update(choices=[(f"{n} ({c} ch)" if c else n, n) for n, c in choices], value=[])

    def picked_to_layers(names: list[str], chans: str) -> str:
        chans = "".join((chans or "").split())
        return ",".join(f"{n}:{chans}=1" if chans else f"{n}=1" for n in names or [])

    for source in (ui.model, ui.weights):
        source.change(fill_picker, ui.settings, ui.picker, api_name=False, concurrency_id="dream")
    page.load(fill_picker, ui.settings, ui.picker, api_name=False, concurrency_id="dream")
    ui.picker.input(picked_to_layers, [ui.picker, ui.channels], ui.layers, api_name=False)
    ui.channels.input(picked_to_layers, [ui.picker, ui.channels], ui.layers, api_name=False)


def _wire_image(gr: Any, studio: Studio, ui: SimpleNamespace) -> None:
    root = studio.folder.root

    def dream_image(quick: bool, upload: str | None, path: str, values: tuple[Any, ...], progress: Any) -> Any:
        def step(octave: int, octaves: int, it: int, its: int, loss: float) -> None:
            if progress is not None:
                progress(((octave - 1) * its + it) / max(1, octaves * its), desc=f"octave {octave}/{octaves}")

        try:
            with studio.attempt():
                source = studio.source(upload, path, "image")
                done = studio.dream(source, _look(studio, values), quick, step)
        except Refused as exc:
            return _said(exc.line), None, None, ""
        said = f"{'Quick dream' if quick else 'Dreamt'} in {done.seconds:.1f} s with {done.network}: {done.output}"
        said_all = _ok(said) + "".join(_note(n) for n in done.notes)
        return said_all, (done.before, done.after), str(root / done.output), done.command

    def quick(upload: str | None, path: str, *values: Any) -> Any:
        return dream_image(True, upload, path, values, None)

    tracker = gr.Progress()  # Gradio gives a tracker to a function whose default is one

    def full(upload: str | None, path: str, *values: Any, progress: Any = tracker) -> Any:
        return dream_image(False, upload, path, values, progress)

    inputs = [ui.image_in, ui.image_path, *ui.settings]
    outputs = [ui.image_msg, ui.slider, ui.image_file, ui.image_cmd]
    ui.quick.click(quick, inputs, outputs, api_name="quick", concurrency_id="dream")
    ui.full.click(full, inputs, outputs, api_name="full", concurrency_id="dream")


def _wire_explore(gr: Any, studio: Studio, ui: SimpleNamespace) -> None:
    def explore(upload: str | None, path: str, how: str, n: float, *values: Any) -> Iterator[Any]:
        shown: list[tuple[Any, str]] = []
        kept: list[dict[str, Any]] = []
        try:
            with studio.attempt():  # the picture and the settings are checked before the first dream
                source = studio.source(upload, path, "image")
                look = _look(studio, values)
                studio.check_image(source)
            yield _ok("Exploring..."), shown, kept
            for i, total, result in studio.explore(source, look, how, int(n)):
                if isinstance(result, Refused):
                    yield _said(result.line), shown, kept
                    continue
                done, caption, setting = result
                shown, kept = [*shown, (done.after, caption)], [*kept, setting]
                yield _ok(f"{i + 1} of {total} dreamt"), shown, kept
        except Refused as exc:
            yield _said(exc.line), shown, kept

    ui.explore.click(
        explore,
        [ui.image_in, ui.image_path, ui.mode, ui.count, *ui.settings],
        [ui.explore_msg, ui.gallery, ui.tiles],
        api_name="explore",
        concurrency_id="dream",
    )

    def take(kept: list[dict[str, Any]], evt: gr.SelectData) -> Any:
        index = evt.index if isinstance(evt.index, int) else -1
        setting = kept[index] if 0 <= index < len(kept) else {}
        return (
            gr.update(value=setting["preset"]) if "preset" in setting else gr.update(),
            setting.get("layers", gr.update()),
            _ok(f"Took the settings of dream {index + 1}" if setting else ""),
        )

    take.__annotations__["evt"] = gr.SelectData  # resolved here: Gradio reads it to pass the click
    ui.gallery.select(take, [ui.tiles], [ui.preset, ui.layers, ui.explore_msg], api_name=False)


def _wire_clips(gr: Any, studio: Studio, ui: SimpleNamespace) -> None:
    root = studio.folder.root

    def preview(upload: str | None, path: str, n: Any, t0: str, dur: str, coh: str, *values: Any) -> Any:
        try:
            with studio.attempt():
                source = studio.source(upload, path, "clip")
                sheet, estimate, command = studio.preview(source, _look(studio, values), clip_options(n, t0, dur, coh))
        except Refused as exc:
            return _said(exc.line), None, ""
        return _ok(estimate), str(root / sheet), command

    clip_inputs = [ui.clip_in, ui.clip_path, ui.frames, ui.start, ui.duration, ui.coherence, *ui.settings]
    ui.preview.click(
        preview, clip_inputs, [ui.video_msg, ui.sheet, ui.video_cmd], api_name="preview", concurrency_id="dream"
    )

    def started(job: str, command: str) -> Any:
        return _ok(f"Job {job} is queued: follow it under Jobs"), command, gr.update(selected="jobs"), job

    def run_video(upload: str | None, path: str, n: Any, t0: str, dur: str, coh: str, *values: Any) -> Any:
        try:
            with studio.attempt():
                source = studio.source(upload, path, "clip")
                job = studio.start_video(source, _look(studio, values), clip_options(n, t0, dur, coh))
            return started(*job)
        except Refused as exc:
            return _said(exc.line), "", gr.update(), gr.update()

    ui.run.click(run_video, clip_inputs, [ui.video_msg, ui.video_cmd, ui.tabs, ui.pick], api_name="run_video")

    def run_zoom(upload: str | None, path: str, n: Any, rate: str, z: Any, rot: Any, *values: Any) -> Any:
        try:
            with studio.attempt():
                source = studio.source(upload, path, "image")
                job = studio.start_zoom(source, _look(studio, values), zoom_options(n, rate, z, rot))
            return started(*job)
        except Refused as exc:
            return _said(exc.line), "", gr.update(), gr.update()

    ui.run_zoom.click(
        run_zoom,
        [ui.still_in, ui.still_path, ui.zframes, ui.fps, ui.zoom, ui.rotate, *ui.settings],
        [ui.zoom_msg, ui.zoom_cmd, ui.tabs, ui.pick],
        api_name="run_zoom",
    )


def _progress_html(current: Any) -> str:
    eta = f" · ETA {_clock(current.eta_s)}" if current.eta_s is not None else ""
    frames = f"{current.done}/{current.total} frames" if current.total else "planning"
    return (
        f'<div id="dr-progress" data-done="{current.done}" data-total="{current.total}" '
        f'data-state="{current.state}">{html.escape(current.id)}: {current.state}, {frames}{eta}</div>'
        f'<div class="dr-bar"><div style="width:{100 * current.fraction:.1f}%"></div></div>'
    )


def _wire_jobs(gr: Any, page: Any, studio: Studio, ui: SimpleNamespace) -> None:
    root = studio.folder.root

    def view(chosen: str | None, playing: str | None) -> Any:
        states = studio.board.states()
        rows = [
            [s.id, s.label, s.state, f"{s.done}/{s.total}" if s.total else "", _clock(s.eta_s), s.message]
            for s in states
        ]
        ids = [s.id for s in states]
        current = next((s for s in states if s.id == chosen), states[0] if states else None)
        if current is None:
            return rows, gr.update(choices=ids, value=None), "", None, "", None
        video = str(root / current.output) if current.state == "done" else None
        # The player is given a film only when it changes: sent again each second, it would restart.
        player = gr.update() if video == playing else video
        return rows, gr.update(choices=ids, value=current.id), _progress_html(current), player, current.command, video

    def jobs(chosen: str | None) -> list[list[Any]]:
        """Every job of the folder, newest first: [id, input, state, frames done/total, ETA, message]."""
        return list(view(chosen, None)[0])

    shows = [ui.table, ui.pick, ui.bar, ui.player, ui.job_cmd, ui.playing]
    ui.timer.tick(view, [ui.pick, ui.playing], shows, api_name=False, show_progress="hidden")
    ui.pick.input(view, [ui.pick, ui.playing], shows, api_name=False)
    page.load(view, [ui.pick, ui.playing], shows, api_name=False)
    gr.api(jobs, api_name="jobs")

    def cancel(job: str | None) -> str:
        return _act(studio, "cancel", job)

    def resume(job: str | None) -> str:
        return _act(studio, "resume", job)

    ui.cancel.click(cancel, [ui.pick], [ui.bar], api_name="cancel")
    ui.resume.click(resume, [ui.pick], [ui.bar], api_name="resume")


def _act(studio: Studio, what: str, job: str | None) -> str:
    if not job:
        return _said("dreamreel: error: no job chosen")
    try:
        if what == "cancel":
            studio.board.cancel(job)
        else:
            studio.board.resume(job)
    except (ValueError, OSError) as exc:
        return _said(f"dreamreel: error: {exc}")
    return _ok(f"Job {job}: {'cancelling' if what == 'cancel' else 'resuming'}")


def launch(
    root: str,
    host: str = LOCAL,
    port: int | None = None,
    password: str | None = None,
    open_browser: bool = True,
    max_upload: str = "2gb",
    slots: int = 1,
    block: bool = True,
) -> Any:
    """Serve the studio of ``root`` (Gradio must be installed). Returns the page once it serves
    (with ``block=False``); with ``block`` it serves until Ctrl-C, then stops the running jobs,
    each keeping what it finished."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    folder = Folder(root)
    folder.claim()  # one studio per folder: two would run each other's queue
    os.chdir(folder.root)  # the command lines it runs are relative to its folder, as shown
    studio = Studio(folder, slots)
    studio.board.start_pumping()
    page = build(studio)
    page.studio = studio
    if host != LOCAL:
        print(
            f"dreamreel: warning: the studio listens on {host}: anyone who reaches this machine can use it"
            f"{'' if password else ' (no password: give --password)'} and read and write under {folder.root}",
            file=sys.stderr,
        )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    page.queue(default_concurrency_limit=1)
    try:
        _serve(page, folder, host, port, password, open_browser, max_upload)
    except OSError as exc:
        studio.board.close()
        raise UsageError(f"--host {host} --port {port or 'auto'}: cannot listen there ({exc})") from None
    print(
        f"dreamreel studio: {folder.root} on {page.local_url} (Ctrl-C stops it; running jobs stop and keep their work)",
        file=sys.stderr,
    )
    if block:
        try:
            page.block_thread()
        finally:
            studio.board.close()
    return page


def _serve(
    page: Any, folder: Folder, host: str, port: int | None, password: str | None, open_browser: bool, max_upload: str
) -> None:
    page.launch(
        server_name=host,
        server_port=port,
        inbrowser=open_browser,
        auth=(lambda _user, given: _same(given, password)) if password else None,
        auth_message="dreamreel studio: any user name, the studio's password" if password else None,
        max_file_size=max_upload,
        # What the page shows: results, and the studio's quick dreams, tiles and sheets. Not the uploads
        # or the jobs' folders (a file served from here opens as itself, in the studio's origin).
        allowed_paths=[str(folder.outputs()), *(str(folder.state(part)) for part in ("quick", "explore", "preview"))],
        prevent_thread_lock=True,
        show_error=False,
        quiet=True,
        ssr_mode=False,
        mcp_server=False,
        footer_links=["api"],
        theme="soft",
        css=CSS,
    )


def _same(given: str, password: str) -> bool:
    import hmac

    return hmac.compare_digest(given.encode(), password.encode())


def stop(page: Any) -> None:
    """Stop a studio served with ``block=False`` and its jobs."""
    page.close()
    page.studio.board.close()


def served_url(page: Any) -> str:
    return str(page.local_url)


def folder_of(page: Any) -> Path:
    return Path(page.studio.folder.root)
