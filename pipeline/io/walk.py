"""The files under a folder, as `dreamreel images` reads them: links followed, each folder entered
once (loops can't trap it), hidden names skipped, chosen folders (OUT_DIR, the work folder) never
entered, and whatever is not a regular file to read reported with why."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def walk(root: Path, avoid: tuple[Path, ...] = ()) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every non-hidden regular file under ``root``, following links, each folder entered once; and
    what is there but is not a file to read, with why (a FIFO, a link to nothing, a link into one
    of the folders ``avoid``, resolved: OUT_DIR and the work folder)."""

    seen: set[tuple[int, int]] = set()
    files: list[Path] = []
    odd: list[tuple[Path, str]] = []
    avoid = tuple(a.resolve() for a in avoid)

    def inside_avoided(path: Path) -> Path | None:
        real = path.resolve()
        return next((a for a in avoid if real == a or a in real.parents), None)

    def visit(folder: Path) -> None:
        try:
            st = folder.stat()
        except OSError:
            return
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                if (hit := inside_avoided(path)) is not None:
                    what = "the output folder" if hit == avoid[0] else "the work folder"
                    odd.append((path, f"leads into {hit} ({what}): not read, so dreams are never dreamt again"))
                elif entry.is_symlink() and not path.exists():
                    odd.append((path, "a link to nothing (its target is missing)"))
                elif entry.is_dir(follow_symlinks=True):
                    visit(path)
                elif entry.is_file(follow_symlinks=True):
                    files.append(path)
                else:
                    mode = entry.stat(follow_symlinks=True).st_mode
                    kind = (
                        "a FIFO"
                        if stat.S_ISFIFO(mode)
                        else "a socket"
                        if stat.S_ISSOCK(mode)
                        else "a device"
                        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                        else "not a regular file"
                    )
                    odd.append((path, f"{kind}, not a file to read"))
            except OSError:
                files.append(path)  # unreadable: recorded as a failure when read

    visit(root)
    return files, odd
