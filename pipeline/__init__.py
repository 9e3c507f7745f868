"""dreamreel's pipeline: the jobs (video, images, zoom), their files, processes and cluster, and
the command line.

The Python API (pipeline/api.py) is importable from here, loaded on first use so that importing
the package stays light:

    from pipeline import dream_video, dream_folder, dream_zoom, VideoRequest, BatchRequest, ZoomRequest

Layout: ``io/`` reads and writes media and files (ffmpeg, decoders, images, atomic writes, the folder
walk); ``job/`` is a job's life in its store (store, record, session, frame layout, integrity,
locations, assembly of the output); ``cluster/`` runs tasks on Dask (schedule, client, what workers
need); ``video/`` is the video command (plan, graph, tasks, job); ``images.py``, ``zoom.py``,
``preview.py`` and ``guide.py`` the other commands and guides; ``api.py`` the Python API the CLI
(``cli.py``) calls.
"""

from __future__ import annotations

from typing import Any

_API = {
    "dream_video": "pipeline.api",
    "dream_folder": "pipeline.api",
    "dream_zoom": "pipeline.api",
    "VideoRequest": "pipeline.video.job",
    "VideoResult": "pipeline.video.job",
    "BatchRequest": "pipeline.images",
    "BatchReport": "pipeline.images",
    "ZoomRequest": "pipeline.zoom",
    "ZoomResult": "pipeline.zoom",
    "Motion": "pipeline.zoom",
    "Progress": "pipeline.progress",
    "Cancel": "pipeline.progress",
    "Cancelled": "pipeline.progress",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_API[name]), name)
