"""`python -m benchmarks.checksum`: what checking stored files costs, per 1080p frame and per chunk.

Times the hashes a job store could seal its files with on one 1920x1080 RGB frame (6.2 MB): xxh3-128
(the one dreamreel uses), CRC-32 (zlib), SHA-256 and BLAKE2b (hashlib), and BLAKE3 when its package
is installed; beside them, storing the frame (a write renamed into place, as a job stores one) and
the fsync that a durable write adds, for a frame and for a 48-frame chunk's worth of bytes. Each
figure is the best of several rounds, measured in this run on this machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path


def best(fn: Callable[[], object], rounds: int, repeat: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - t0) / repeat)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    import numpy as np
    import xxhash

    from pipeline.io.fsutil import write_atomic

    p = argparse.ArgumentParser(prog="python -m benchmarks.checksum", description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    frame = np.random.default_rng(0).integers(0, 256, 1920 * 1080 * 3, dtype=np.uint8).tobytes()
    hashes: dict[str, Callable[[], object]] = {
        "xxh3-128 (xxhash)": lambda: xxhash.xxh3_128_digest(frame),
        "CRC-32 (zlib)": lambda: zlib.crc32(frame),
        "SHA-256 (hashlib)": lambda: hashlib.sha256(frame).digest(),
        "BLAKE2b-128 (hashlib)": lambda: hashlib.blake2b(frame, digest_size=16).digest(),
    }
    try:
        import blake3

        hashes["BLAKE3 (blake3)"] = lambda: blake3.blake3(frame).digest()
    except ImportError:
        pass
    print(f"# one 1920x1080 RGB frame, {len(frame) / 1e6:.1f} MB; best of {args.rounds} rounds")
    for name, fn in hashes.items():
        s = best(fn, args.rounds, 20)
        print(f"{name:24s} {s * 1000:7.2f} ms  ({len(frame) / s / 1e9:5.1f} GB/s)")
    with tempfile.TemporaryDirectory(prefix="dreamreel-checksum-", dir=os.environ.get("BENCH_DIR")) as tmp:
        target = Path(tmp) / "000001.rgb"
        store = best(lambda: write_atomic(target, frame, durable=False), args.rounds, 10)
        durable = best(lambda: write_atomic(target, frame, durable=True), args.rounds, 10)
        print(f"{'store a frame':24s} {store * 1000:7.2f} ms  (as a job stores one: no fsync)")
        print(f"{'store it durably':24s} {durable * 1000:7.2f} ms  (fsync of the file and its folder)")
        chunk = frame[:2_500_000]  # a 48-frame 1080p chunk of dreams at CRF 18: about 2.5 MB
        c_store = best(lambda: write_atomic(target, chunk, durable=False), args.rounds, 10)
        c_durable = best(lambda: write_atomic(target, chunk, durable=True), args.rounds, 10)
        print(
            f"{'a 2.5 MB chunk':24s} {c_store * 1000:7.2f} ms, durably {c_durable * 1000:.2f} ms: the fsync adds "
            f"{(c_durable - c_store) * 1000:.2f} ms a chunk, {(c_durable - c_store) * 1000 / 48:.3f} ms a frame"
        )


if __name__ == "__main__":
    main()
