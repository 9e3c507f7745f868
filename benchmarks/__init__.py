"""Benchmarks: figures for the README, each printed side by side from one run on one machine.

Not installed with the package; run from a checkout, after `pip install -e .`:

    python -m benchmarks.engine              # fp32 ceiling, GFLOP/s per step, s/image vs the keras.io loop
    python -m benchmarks.trials              # each speed idea against the engine, each in a fresh process
    python -m benchmarks.video CLIP          # none / blend / flow: s/frame, instability, strength, time split
    python -m benchmarks.images              # `images` batch vs a loop of `image`
    python -m benchmarks.scheduling          # Dask overhead per task
    python -m benchmarks.threads             # does TensorFlow's thread count change a dream's pixels?
    python -m benchmarks.mutants             # does the default test run catch a broken dream?

They call the product's own functions; what only a benchmark needs (the keras.io reference loop,
XLA and retracing variants of the step) lives here, not in `dreamcore` or `pipeline`.
"""
