"""Shared set-up. Every test runs offline by construction: Keras' cache is an empty temporary
folder and the ImageNet download points at a port that refuses, whatever this machine has. Set
at import, before any test module can import Keras (which reads KERAS_HOME once)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="dreamreel-keras-home-")
atexit.register(shutil.rmtree, os.environ["KERAS_HOME"], ignore_errors=True)
os.environ["DREAMREEL_INCEPTION_WEIGHTS_URL"] = "http://127.0.0.1:9/inception_v3_notop.h5"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
