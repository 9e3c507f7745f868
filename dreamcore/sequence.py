"""One frame of a sequence (a clip's frames, a zoom's): the frame policy, in one place.

A frame's settings are a function of its index and time only (the config, its keyframes, and the
guide that steers it), so a resumed job, a chunk dreamt on another worker, and a preview all give a
frame the same settings. Its start image is the source (a chain's first frame, or coherence
``none``), or the previous dream carried onto it (coherence ``blend`` or ``flow``); its effort is the
whole config for a chain's first frame and the follow-up effort for the others.

The video tasks, the zoom and the preview ask this module; none of them assembles a frame's policy
itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dreamcore import coherence
from dreamcore.coherence import Flow, flow_size, start_frame
from dreamcore.config import DreamConfig, VideoConfig
from dreamcore.guide import Guide
from dreamcore.keyframes import Schedule


@dataclass(frozen=True)
class Frame:
    """One frame's settings: what it dreams with (``config``) and how it follows the frame before
    (``video``)."""

    index: int
    config: DreamConfig
    video: VideoConfig
    followup: tuple[int, int | None] | None = None  # (iterations, octaves) overriding the video's

    def effort(self, fresh: bool) -> tuple[int, int | None]:
        """Gradient steps per octave and the octaves dreamt (None: all): the whole config for a chain's
        first frame, the follow-up effort for a frame that goes on from the one before."""
        if fresh:
            return self.config.iterations, None
        if self.followup is not None:
            return self.followup
        return self.video.followup_iterations, self.video.followup_octaves or None

    @property
    def flow_side(self) -> int | None:
        """The side the optical flow is computed at (None: the frame's own size)."""
        return flow_size(self.video.flow_side, self.config.max_side)

    @property
    def uses_flow(self) -> bool:
        return self.video.coherence == "flow"

    def flow(self, prev_src: np.ndarray, src: np.ndarray) -> Flow | None:
        """The flow a follow-up frame's start is warped along (None without flow coherence)."""
        return coherence.optical_flow(prev_src, src, self.flow_side) if self.uses_flow else None

    def start(
        self, src: np.ndarray, prev_src: np.ndarray | None, prev_dream: np.ndarray | None, flow: Flow | None = None
    ) -> np.ndarray:
        """The image the dream starts from: the source, or the previous dream carried onto it."""
        v = self.video
        return start_frame(v.coherence, src, prev_src, prev_dream, v.blend, v.carry, flow)


@dataclass(frozen=True)
class Sequence:
    """The settings of every frame of one job: parsed once, asked per frame."""

    config: DreamConfig
    video: VideoConfig = field(default_factory=VideoConfig)
    keyframes: Schedule = field(default_factory=lambda: Schedule({}))
    fps: float = 24.0  # frame numbers in keyframes read as times at this rate when mixed with seconds
    followup: tuple[int, int | None] | None = None  # a zoom's own (steps, octaves) after its first frame

    def frame(self, index: int, seconds: float, guide: Guide | None = None) -> Frame:
        """Frame ``index`` at ``seconds`` from the first frame, steered by ``guide`` when given."""
        cfg, vcfg = self.keyframes.apply(self.config, self.video, index, seconds, self.fps)
        if guide is not None:
            cfg = cfg.replace(guide=guide)
        return Frame(index, cfg, vcfg, self.followup)

    @property
    def fresh_always(self) -> bool:
        """Every frame dreamt from its source alone (coherence ``none``)."""
        return self.video.coherence == "none"
