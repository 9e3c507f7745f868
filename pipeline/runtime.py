"""Process-level set-up around TensorFlow: a quiet import, its thread count, and the numerics layout.

A dream's exact pixels depend on more than its input and config. oneDNN (and Eigen, with oneDNN off)
split some sums by thread, so InceptionV3's gradient changes in its last bits with TensorFlow's
intra-op thread count, and 60 steps grow them into other pixels: untrained InceptionV3 at default
settings, 1 thread against 2, differs by 3-7.5/255 on average (`python -m benchmarks.threads`);
vgg16_hed gave identical pixels. Op determinism makes a run repeat itself for one thread count on
one kind of processor, not across them. So a process's *numerics layout* (TensorFlow version,
processor or GPU, intra-op threads, oneDNN setting) is part of what decides the pixels, and jobs
record it (docs/exact.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
from collections.abc import Iterator
from functools import cache
from typing import Any

from dreamcore.engine import ARITHMETIC

# Intra-op threads for TensorFlow in this process (set by local clusters, or by hand on a cluster's
# workers so that they match each other).
THREADS_ENV = "DREAMREEL_TF_THREADS"

# The instruction-set extensions that change which oneDNN kernels run (and so the last bits).
_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")

_loaded = False


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


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def env_threads() -> int | None:
    value = os.environ.get(THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def load_tensorflow(threads: int | None = None) -> None:
    """Import TensorFlow and initialise its devices once, quietly, with op determinism on.

    ``threads``: intra-op threads (default: $DREAMREEL_TF_THREADS, else TensorFlow's choice, every
    core). TensorFlow fixes its thread pools when it first runs an op; in a process where that has
    happened, the count cannot change any more: :func:`numerics` says what the process really runs
    with, and callers compare."""
    global _loaded
    if _loaded:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet = contextlib.nullcontext() if os.environ.get("DREAMREEL_DEBUG") else _stderr_silenced()
    with quiet:
        import tensorflow as tf

        wanted = threads or env_threads()
        if wanted:
            with contextlib.suppress(RuntimeError):  # already initialised: numerics() tells
                tf.config.threading.set_intra_op_parallelism_threads(wanted)
                if wanted < usable_cores():  # sharing the machine with other workers
                    tf.config.threading.set_inter_op_parallelism_threads(1)
        # Same input, same pixels, whatever else the machine is doing: without this, a few CPU
        # kernels add partial sums in the order their threads finish.
        tf.config.experimental.enable_op_determinism()
        tf.config.list_physical_devices()  # device discovery logs its failures here, not mid-bar
    _loaded = True


def _cpuinfo() -> tuple[str, set[str] | None]:
    """The processor's name and its flags (None where /proc/cpuinfo does not say: not Linux)."""
    name, flags = platform.processor() or platform.machine(), None
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    return name, flags


def _cpu_name() -> str:
    name, flags = _cpuinfo()
    isa = [f for f in _ISA_FLAGS if f in (flags or ())]
    return f"{name} [{' '.join(isa)}]" if isa else name


def bfloat16_hardware(flags: set[str] | None = None) -> bool | None:
    """Whether this CPU computes in bfloat16 (AVX512_BF16 or AMX-BF16); None where unknown."""
    flags = _cpuinfo()[1] if flags is None else flags
    return None if flags is None else bool(flags & {"avx512_bf16", "amx_bf16"})


@cache
def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU {details.get('device_name', gpus[0].name)}"
    return _cpu_name()


def numerics() -> dict[str, Any]:
    """What this process dreams with, beyond the config: two processes with the same layout give the
    same pixels for the same task."""
    import tensorflow as tf

    return {
        "arithmetic": ARITHMETIC,
        "tensorflow": tf.__version__,
        "device": _device(),
        "threads": tf.config.threading.get_intra_op_parallelism_threads() or usable_cores(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
    }


def layout_id(layout: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(layout, sort_keys=True).encode()).hexdigest()[:10]


def describe_layout(layout: dict[str, Any]) -> str:
    return (
        f"TensorFlow {layout['tensorflow']} on {layout['device']}, {layout['threads']} threads"
        + ("" if layout["onednn"] == "default" else f", oneDNN {layout['onednn']}")
        + f", engine arithmetic {layout.get('arithmetic', 1)}"
    )
