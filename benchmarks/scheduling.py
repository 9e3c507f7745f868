"""`python -m benchmarks.scheduling`: seconds of Dask scheduling per task, through the client set-up
the commands use: empty tasks chained like a video's frames and independent like a batch's images."""

from __future__ import annotations

import argparse
import time
from typing import Any


def _noop(i: int, after: Any = None) -> int:
    return i


def bench_dask(tasks: int, workers: tuple[int, ...] = (1, 2)) -> str:
    """Seconds of scheduling per task: ``tasks`` empty tasks, chained like a video's frames and
    independent like a batch's images, through the same client set-up the commands use."""
    from pipeline.cluster.client import dask_client
    from pipeline.cluster.schedule import Task, run_chains

    rows = [f"{'cluster':<22} {'shape':<12} {'ms/task':>8}"]
    for n in workers:
        with dask_client(n) as client:
            run_chains(client, [[Task(f"warm-{n}-{i}", _noop, (i,))] for i in range(8)], lambda r: None)
            for shape in ("chain", "independent"):
                if shape == "chain":
                    chains = [[Task(f"c-{n}-{i}", _noop, (i,)) for i in range(tasks)]]
                else:
                    chains = [[Task(f"i-{n}-{i}", _noop, (i,))] for i in range(tasks)]
                t0 = time.perf_counter()
                run_chains(client, chains, lambda r: None)
                ms = (time.perf_counter() - t0) / tasks * 1000
                label = "in-process, 1 worker" if n == 1 else f"{n} worker processes"
                rows.append(f"{label:<22} {shape:<12} {ms:>8.2f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scheduling", description=__doc__)
    p.add_argument("--tasks", type=int, default=300, metavar="N")
    args = p.parse_args(argv)
    print(f"# {args.tasks} empty tasks per row")
    print(bench_dask(args.tasks))


if __name__ == "__main__":
    main()
