"""Chunks and audio into the output, for video and zoom alike: the chunks checked and copied out of
the store, joined by stream copy with the audio (media.join), the film checked against the plan's
frames and times, then put in place: renamed durably at a path (never over a file that appeared
meanwhile without ``overwrite``), or uploaded to a URL."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.errors import PipelineError, Unwritable, UsageError
from pipeline.io import media
from pipeline.io.fsutil import publish, sync_file, temp_beside, temp_dir
from pipeline.job.framestore import chunk_rel
from pipeline.job.locations import upload
from pipeline.job.record import checked_copies
from pipeline.job.store import Store, check_output_url, is_url, redact


def check_film_output(output: str, overwrite: bool) -> str:
    """Refuse, before any work, a film output (video or zoom) of the wrong kind, or one that exists
    without ``overwrite``: a path, or a URL."""
    if is_url(output):
        return check_output_url(output, overwrite, media.VIDEO_OUTPUT_EXTENSIONS)
    return str(media.check_video_output(output, overwrite))


def assemble(
    store: Store,
    chunks: list[str],
    output: str,
    film: media.Film,
    sound: media.Sound,
    overwrite: bool,
) -> str:
    """Join the job's ``chunks`` (their names in the store, in order) and the sound into ``output``,
    checked against the film's frame times before it is put in place. A damaged or missing chunk
    raises :class:`~pipeline.job.integrity.Damaged` (all damaged ones are removed first, so the job
    makes them all again in one round); an OUT that appeared while the job ran is kept unless
    ``overwrite``. Returns how the audio went."""
    with temp_dir("dreamreel-join") as tmp:
        work = Path(tmp)
        files = checked_copies(store, [chunk_rel(name) for name in chunks], work)
        return _join_film(files, work, output, store, film, sound, overwrite)


def _join_film(
    files: list[Path],
    work: Path,
    output: str,
    store: Store,
    film: media.Film,
    sound: media.Sound,
    overwrite: bool,
) -> str:
    """Join the chunks (``work``: a temporary folder) into a temporary file, check the film, and put
    it in place at ``output`` (a path, renamed into place durably and never over a file that appeared
    there without ``overwrite``; or a URL, uploaded)."""
    out = work / f"out{Path(output).suffix}" if is_url(output) else temp_beside(Path(output))
    try:
        return _put_film(files, work, out, output, store, film, sound, overwrite)
    finally:
        out.unlink(missing_ok=True)


def _put_film(
    files: list[Path],
    work: Path,
    out: Path,
    output: str,
    store: Store,
    film: media.Film,
    sound: media.Sound,
    overwrite: bool,
) -> str:
    if not is_url(output):
        _check_room(out.parent, sum(f.stat().st_size for f in files), store)
    try:
        how = media.join(files, out, film, sound, work)
    except media.FFmpegError as exc:
        if exc.fault:
            raise Unwritable(
                f"{redact(output)}: cannot write the film ({exc.fault}): free some space and run the "
                f"same command again: the dreamt chunks are kept in {redact(store.url)}"
            ) from None
        raise
    check_film(out, list(film.times), output)
    if is_url(output):
        upload(out, output, overwrite, store)
        return how
    sync_file(out)
    try:
        publish(out, Path(output), overwrite)
    except FileExistsError:
        raise UsageError(
            f"{output}: appeared while the job ran, and is kept (pass --overwrite to replace it, or "
            f"give another -o with --workdir {redact(store.url)}: the dreamt chunks are kept "
            "there)"
        ) from None
    return how


def check_film(path: Path, pts: list[float], name: str) -> None:
    """The joined film holds the plan's frames, each at its time (within a quarter of the shortest
    frame): a missing or cut-short chunk can't pass for a whole film."""
    times = media.packet_times(path)
    want = [t - pts[0] for t in pts]
    if len(times) != len(want):
        raise PipelineError(
            f"{redact(name)}: not written: the joined film has {len(times)} frames where the job "
            f"dreamt {len(want)} (run the same command again; DREAMREEL_DEBUG=1 and report it if "
            "it happens again)"
        )
    gaps = [b - a for a, b in zip(want, want[1:], strict=False) if b > a]
    tol = max(0.25 * min(gaps, default=0.04), 1e-4)
    off = next((i for i in range(len(want)) if abs(times[i] - (times[0] + want[i])) > tol), None)
    if off is not None:
        raise PipelineError(
            f"{redact(name)}: not written: in the joined film frame {off} is at "
            f"{times[off] - times[0]:.6f} s where it belongs at {want[off]:.6f} s (DREAMREEL_DEBUG=1 "
            "and report it)"
        )


def _check_room(folder: Path, need: int, store: Store) -> None:
    """Refuse a join that can't fit in OUT's folder, before ffmpeg half-writes it."""
    free = shutil.disk_usage(folder).free
    need = int(need * 1.02) + (4 << 20)  # the chunks, plus the audio and the container's index
    if free < need:
        raise Unwritable(
            f"{folder}: not enough space for the film (about {need / 1e6:.0f} MB, {free / 1e6:.0f} MB "
            f"free): free some and run the same command again: the dreamt chunks are kept in "
            f"{redact(store.url)}"
        )
