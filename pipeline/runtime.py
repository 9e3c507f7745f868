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


def load_tensorflow() -> None:
    """Import TensorFlow and initialise its devices once, quietly. Errors still raise."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("DREAMREEL_DEBUG"):
        import tensorflow  # noqa: F401  (show everything when debugging)

        return
    with _stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery logs its failures here, not mid-bar
