"""Process-level setup around TensorFlow: a quiet import, so its start-up chatter can't break bars."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null: TensorFlow's C++ logs go there before any Python
    logging exists (oneDNN notices, 'could not find cuda drivers', cuInit failures)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_tensorflow(deterministic: bool = True) -> None:
    """Import TensorFlow and initialise its devices once, quietly. Errors still raise.
    ``deterministic=False`` exists for `dreamreel bench trials`, which measures what it costs."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("DREAMREEL_DEBUG"):
        import tensorflow as tf  # show everything when debugging

        _limit_threads(tf)
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        return
    with _stderr_silenced():
        import tensorflow as tf

        _limit_threads(tf)
        # Same input, same pixels, whatever else the machine is doing: without this, a few CPU
        # kernels (gradient accumulations) add up partial sums in the order threads finish, and
        # two busy workers give two slightly different dreams of one frame.
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        tf.config.list_physical_devices()  # device discovery logs its failures here, not mid-bar


def _limit_threads(tf: object) -> None:
    """A Dask worker that shares the machine with others gets its share of the cores
    (DREAMREEL_TF_THREADS, set by the local cluster): N workers x all cores would thrash."""
    threads = os.environ.get("DREAMREEL_TF_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))  # type: ignore[attr-defined]
        tf.config.threading.set_inter_op_parallelism_threads(1)  # type: ignore[attr-defined]
