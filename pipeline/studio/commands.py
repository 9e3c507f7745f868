"""The studio's settings as ``dreamreel`` command lines, and the folder it may read and write.

Every dream the page makes is one of these command lines, run by the command line's own code
(``pipeline.commands``): what the page shows under a result is what a terminal in the studio's folder
gives, byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError, UsageError

PROG = "dreamreel"
STATE = ".dreamreel-studio"  # the studio's own files, under its folder: uploads, quick dreams, jobs
OUTPUTS = "dreams"  # what the studio makes for the user, under its folder
QUICK_SIDE = 320  # a quick dream's long side (pixels): seconds on a 2-core CPU


@dataclass(frozen=True)
class Look:
    """The dream settings of the page's panel; ``None`` or ``""`` leaves the preset's value."""

    model: str = "auto"
    weights: str = ""
    preset: str = "default"
    layers: str = ""  # the CLI's --layers text: NAME=W or NAME:C=W, comma separated
    step: str = ""  # as typed: the command line checks them and says what is wrong
    octaves: str = ""
    iterations: str = ""
    seed: str = ""
    precision: str = ""
    guide: str = ""  # a path under the studio's folder

    def argv(self) -> list[str]:
        """The engine options of a command line, in the order `dreamreel image --help` lists them."""
        out: list[str] = []
        if self.preset and self.preset != "default":
            out += option("--preset", self.preset)
        for key, value in (("step", self.step), ("octaves", self.octaves), ("iterations", self.iterations)):
            if value.strip():
                out += ["--set", f"{key}={value.strip()}"]
        if self.layers.strip():
            out += option("--layers", "".join(self.layers.split()))
        if self.guide:
            out += option("--guide", positional(self.guide))
        if self.model and self.model != "auto":
            out += option("--model", positional(self.model))
        out += option("--weights", self.weights)
        out += option("--seed", self.seed.strip())
        out += option("--precision", self.precision)
        return out


def option(flag: str, value: str) -> list[str]:
    """A flag and its value as argv items; ``--flag=VALUE`` when the value starts with ``-`` (a
    negative rotation), which argparse would otherwise take for a flag. Nothing for no value."""
    if not value:
        return []
    return [f"{flag}={value}"] if value.startswith("-") else [flag, value]


def positional(path: str) -> str:
    """A relative path as a command line takes it: ``./-x.png``, not ``-x.png`` (a flag)."""
    return f"./{path}" if path.startswith("-") else path


def shown(argv: list[str]) -> str:
    """A command line as a user copies it into a terminal."""
    return shlex.join([PROG, *argv])


class Folder:
    """The folder a studio was started for: every path typed in the page is read under it, and
    everything the studio writes goes under it (``dreams/`` for results, ``.dreamreel-studio/``
    for its own files)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def inside(self, text: str, what: str = "path") -> str:
        """``text`` (relative to the folder, or absolute) as a path relative to the folder; a path
        that leads outside it (``..``, an absolute path elsewhere, a link out) is refused."""
        text = text.strip()
        if not text:
            raise InputError(f"no {what} given")
        path = (self.root / text).resolve()
        if not path.is_relative_to(self.root):
            raise InputError(f"{text}: outside the studio's folder {self.root} (start the studio in a folder above it)")
        return str(path.relative_to(self.root)) or "."

    def claim(self) -> None:
        """Hold the folder for this process (a lock the system drops when it ends, however it ends);
        a second studio on the same folder is refused."""
        import fcntl

        if not os.access(self.root, os.W_OK):
            raise UsageError(f"{self.root}: cannot be written, and the studio writes its results under it")
        path = self.state() / "studio.lock"
        self._lock = open(path, "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UsageError(f"{self.root}: another dreamreel studio serves this folder") from None

    def state(self, *parts: str) -> Path:
        path = self.root.joinpath(STATE, *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def scratch(self, part: str, name: str) -> str:
        """A file of the studio's own (a quick dream, a tile, a sheet), relative to the folder."""
        return str((self.state(part) / name).relative_to(self.root))

    def outputs(self) -> Path:
        path = self.root / OUTPUTS
        path.mkdir(exist_ok=True)
        return path

    def keep_upload(self, temp: str) -> tuple[str, bool]:
        """An uploaded file (in the web server's temporary folder) copied under the studio's own
        folder, its name kept: a job started from it resumes after a restart, and its command line
        works in a terminal. Returns the path relative to the folder, and whether it was copied now
        (else the same bytes were kept before)."""
        src = Path(temp)
        digest = hashlib.sha256()
        with open(src, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        dest = self.state("uploads", digest.hexdigest()[:12]) / src.name
        created = not dest.exists()
        if created:
            part = dest.with_name(dest.name + ".part")
            try:
                shutil.copyfile(src, part)
                part.replace(dest)
            finally:
                part.unlink(missing_ok=True)
        return str(dest.relative_to(self.root)), created

    def discard_upload(self, rel: str) -> None:
        """Remove a copy :meth:`keep_upload` made now, for an input that was then refused."""
        path = self.root / rel
        uploads = self.root / STATE / "uploads"
        if path.parent.parent == uploads and path.is_file():
            path.unlink()
            with contextlib.suppress(OSError):
                path.parent.rmdir()

    def new_output(self, stem: str, suffix: str, taken: frozenset[str] = frozenset()) -> str:
        """A name in ``dreams/`` that nothing has yet (nor ``taken``, the outputs of jobs that have
        not made theirs yet): ``STEM.png``, else ``STEM-2.png``, ..."""
        folder = self.outputs()
        n = 1
        while True:
            name = f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}"
            free = not (folder / name).exists() and not (folder / f".{name}.dreamreel-work").exists()
            if free and f"{OUTPUTS}/{name}" not in taken:
                return f"{OUTPUTS}/{name}"
            n += 1
