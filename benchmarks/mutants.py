"""`python -m benchmarks.mutants`: does the default test run catch a broken dream?

Each mutant is one small edit that breaks a feature the way a real bug would (the dream does
nothing; flow ignores the motion; ...). For each, the tree is copied (tracked and untracked files),
the edit applied to the copy, and the README's test command run there; a mutant is *killed* when the
run fails. Every mutant must be killed. Usage:

    python -m benchmarks.mutants                 # all mutants, then the unmutated copy as a control
    python -m benchmarks.mutants --only 2a,4     # some of them
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .common import REPO


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    path: str
    old: str
    new: str


MUTANTS = [
    Mutant(
        "1",
        "the gradient step adds nothing to the image (a dream that is the identity)",
        "dreamcore/ascent.py",
        "img += params.step * grad",
        "img += 0.0 * grad",
    ),
    Mutant(
        "2a",
        "flow coherence ignores the flow (the dream residual is carried unmoved)",
        "dreamcore/coherence.py",
        "carried = warp(residual, flow.backward)",
        "carried = residual",
    ),
    Mutant(
        "2b",
        "flow coherence ignores the flow (a follow-up frame starts from the bare source)",
        "dreamcore/coherence.py",  # the uint8 path, which video frames take
        "return cv2.add(cur_src, _carried(cur_src, prev_src, prev_dream, carry, flow), dtype=cv2.CV_8U)",
        "return cur_src",
    ),
    Mutant(
        "3",
        "a follow-up frame ignores the previous dream altogether (every mode)",
        "dreamcore/coherence.py",
        'if mode == "none" or prev_dream is None or prev_src is None:',
        "if True:",
    ),
    Mutant(
        "4",
        "the occlusion mask is all ones (nothing is ever occluded)",
        "dreamcore/coherence.py",  # the mask DIS gives, before any scaling to full size
        "visible = cv2.GaussianBlur(visible, (0, 0), 1.0)\n    return Flow(backward=backward, visible=visible)",
        "visible = cv2.GaussianBlur(visible, (0, 0), 1.0)\n    return Flow(backward=backward, "
        "visible=np.ones_like(visible))",
    ),
    Mutant(
        "5",
        "scene cuts are never found",
        "dreamcore/coherence.py",
        "return sorted({0, *(int(c) for c in self._cuts)})",
        "return [0]",
    ),
    Mutant(
        "6",
        "a stored file's checksum is never compared (a damaged frame or chunk is used as it is)",
        "pipeline/job/integrity.py",
        "    if hashed() != want:",
        "    if False:",
    ),
    Mutant(
        "7",
        "a work folder holding the user's files is taken as dreamreel's (and emptied after the job)",
        "pipeline/job/store.py",
        "        if foreign:",
        "        if False:",
    ),
    Mutant(
        "8",
        "the joined film is not checked against the plan (a short film passes for a whole one)",
        "pipeline/job/assemble.py",
        "    check_film(out, list(film.times), output)",
        "    pass",
    ),
]

# The test that checks every mutant's line is still there fails on any mutated copy: left out.
TEST_COMMAND = [
    sys.executable,
    "-m",
    "pytest",
    "-q",
    "-x",
    "-p",
    "no:cacheprovider",
    "--deselect",
    "tests/test_benchmarks.py::test_every_mutant_still_finds_its_line",
]


def copy_tree(dst: Path) -> None:
    """The working tree as git sees it: tracked files and untracked ones it does not ignore."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def apply(tree: Path, mutant: Mutant) -> None:
    path = tree / mutant.path
    text = path.read_text()
    if text.count(mutant.old) != 1:
        raise SystemExit(
            f"mutant {mutant.name}: {mutant.old!r} occurs {text.count(mutant.old)} times in "
            f"{mutant.path} (the code changed: update the mutant)"
        )
    path.write_text(text.replace(mutant.old, mutant.new))


def run_suite(tree: Path, timeout: float, tests: list[str]) -> tuple[bool, str, float]:
    """(passed, the first failing test or the tail, seconds). The copy's code is imported first."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [*TEST_COMMAND, *tests], cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return False, "timed out", time.perf_counter() - t0
    failed = [ln for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    tail = failed[0] if failed else (proc.stdout.strip().splitlines() or ["no output"])[-1]
    return proc.returncode == 0, tail, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.mutants", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", help="comma-separated mutant names")
    p.add_argument("--no-control", action="store_true", help="skip the unmutated run")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per test run (default 1800)")
    p.add_argument("tests", nargs="*", help="test files to run instead of the whole default run (a quick look)")
    args = p.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only.split(",")]
    survivors = 0
    for mutant in [*chosen, *([] if args.no_control else [None])]:
        with tempfile.TemporaryDirectory(prefix="dreamreel-mutant-") as tmp:
            tree = Path(tmp)
            copy_tree(tree)
            if mutant is not None:
                apply(tree, mutant)
            passed, tail, seconds = run_suite(tree, args.timeout, args.tests)
        if mutant is None:
            print(f"control (no mutant): {'passes' if passed else 'FAILS: ' + tail} ({seconds:.0f} s)", flush=True)
            survivors += not passed
            continue
        survivors += passed
        verdict = "SURVIVED" if passed else f"killed by {tail}"
        print(f"mutant {mutant.name} ({mutant.what}): {verdict} ({seconds:.0f} s)", flush=True)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
