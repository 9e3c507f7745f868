"""How a video frame starts from the previous dream, and where shots begin.

Pure array functions (OpenCV and PySceneDetect used as array libraries here): where shots begin,
optical flow between source frames with an occlusion mask, and the three ways a follow-up frame is
prepared before dreaming:

- ``none``: the source frame alone;
- ``blend``: the source mixed with the previous dreamt frame (the DeepDreamVideo way);
- ``flow``: the previous dream's residual (dream - source) warped along the optical flow onto the
  current frame, occluded pixels masked out, added to the current source frame.

Frames are float32 RGB in [0, 1], shape (H, W, 3), or uint8 RGB: a video's frames stay uint8 from
decoder to encoder, and :func:`start_frame` then works in OpenCV's saturating 8-bit arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dreamcore.config import COHERENCE as COHERENCE_MODES


class CutDetector:
    """Where shots begin, from frames fed in order (PySceneDetect's detectors, given arrays).

    ``adaptive`` (the default) compares each frame's change (mean HSV difference, 0..255) with the
    changes around it, so a fast pan or a flash of motion does not read as a cut; ``content`` cuts
    wherever the change passes ``threshold``. Frames are RGB uint8 of any size; a small one (256 px
    wide) is enough, since cuts are global changes.
    """

    def __init__(
        self, kind: str = "adaptive", threshold: float = 27.0, adaptive_threshold: float = 3.0, min_scene: int = 1
    ):
        from scenedetect.detectors import AdaptiveDetector, ContentDetector

        if kind == "adaptive":
            self._detector = AdaptiveDetector(adaptive_threshold=adaptive_threshold, min_scene_len=min_scene)
        elif kind == "content":
            self._detector = ContentDetector(threshold=threshold, min_scene_len=min_scene)
        else:
            raise ValueError(f"unknown scene detector {kind!r}; allowed: adaptive, content")
        self._cuts: list[int] = []
        self._last = -1

    def feed(self, index: int, rgb: np.ndarray) -> None:
        self._cuts += self._detector.process_frame(index, np.ascontiguousarray(rgb[..., ::-1]))
        self._last = index

    def shots(self) -> list[int]:
        """The first frame of every shot, 0 included, after the last frame was fed."""
        self._cuts += self._detector.post_process(self._last)
        return sorted({0, *(int(c) for c in self._cuts)})


@dataclass(frozen=True)
class Flow:
    """Backward flow (current -> previous) and the mask of pixels visible in both frames."""

    backward: np.ndarray  # (H, W, 2): where each current pixel was in the previous frame
    visible: np.ndarray  # (H, W) float32 in [0, 1]


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    u8 = rgb if rgb.dtype == np.uint8 else np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(u8), cv2.COLOR_RGB2GRAY)


def optical_flow(prev_rgb: np.ndarray, cur_rgb: np.ndarray, max_side: int | None = None) -> Flow:
    """DIS optical flow both ways on the source frames (RGB float in [0, 1] or uint8); a
    forward-backward consistency check (Sundaram et al. 2010) marks the pixels that the previous
    frame cannot explain. With ``max_side``, larger frames are shrunk to it first (area average) and
    the field and mask are scaled back up: the cost falls with the area, and the dream's carried
    residual moves a little less exactly (``benchmarks.flow`` and ``benchmarks.video`` measure
    both; docs/video.md)."""
    import cv2

    prev_g, cur_g = _gray(prev_rgb), _gray(cur_rgb)
    h, w = prev_g.shape
    if not max_side or max(h, w) <= max_side:
        return _flow(prev_g, cur_g)
    k = max_side / max(h, w)
    size = (max(8, round(w * k)), max(8, round(h * k)))
    small = _flow(
        cv2.resize(prev_g, size, interpolation=cv2.INTER_AREA), cv2.resize(cur_g, size, interpolation=cv2.INTER_AREA)
    )
    backward = cv2.resize(small.backward, (w, h), interpolation=cv2.INTER_LINEAR)
    backward[..., 0] *= w / size[0]
    backward[..., 1] *= h / size[1]
    visible = np.clip(cv2.resize(small.visible, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return Flow(backward=backward, visible=visible)


def flow_size(flow_side: int, max_side: int | None) -> int | None:
    """The long side optical flow works at: ``video.flow_side`` (0: full size), and no more than
    the dream's own ``max_side``, since the carried dream has no finer detail than that; at least
    64 px."""
    if not flow_side:
        return None
    return max(64, min(flow_side, max_side)) if max_side else flow_side


def _flow(prev_g: np.ndarray, cur_g: np.ndarray) -> Flow:
    import cv2

    # The module-level factory (tests spy on it): cv2 has it, its stubs list only DISOpticalFlow.create.
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]  # see above
    backward = dis.calc(cur_g, prev_g, None)
    forward = dis.calc(prev_g, cur_g, None)
    # The forward flow, read where each current pixel came from, should cancel the backward flow.
    h, w = backward.shape[:2]
    came_from = _grid(h, w) + backward
    fw_at = cv2.remap(forward, came_from, None, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    bx, by, fx, fy = backward[..., 0], backward[..., 1], fw_at[..., 0], fw_at[..., 1]
    ex, ey = bx + fx, by + fy
    err = ex * ex + ey * ey
    bound = 0.01 * ((bx * bx + by * by) + (fx * fx + fy * fy)) + 0.5
    visible = (err <= bound).astype(np.float32)
    # Pixels that came from outside the previous frame are not visible either.
    src_x, src_y = came_from[..., 0], came_from[..., 1]
    visible *= (src_x >= 0) & (src_x <= w - 1) & (src_y >= 0) & (src_y <= h - 1)
    # Soften the mask's edges a little so a masked region does not leave a hard outline.
    visible = cv2.GaussianBlur(visible, (0, 0), 1.0)
    return Flow(backward=backward, visible=visible)


_grids: dict[tuple[int, int], np.ndarray] = {}


def _grid(h: int, w: int) -> np.ndarray:
    """(H, W, 2) float32: each pixel's (x, y). Kept per size (a clip's frames share one), read-only."""
    grid = _grids.get((h, w))
    if grid is None:
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        grid = np.dstack([xs, ys])
        grid.flags.writeable = False
        if len(_grids) >= 4:
            _grids.clear()
        _grids[(h, w)] = grid
    return grid


def warp(image: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Sample ``image`` (the previous frame's) at x + backward(x): it lands on the current frame."""
    import cv2

    h, w = backward.shape[:2]
    return cv2.remap(
        np.ascontiguousarray(image, dtype=np.float32),
        _grid(h, w) + backward,
        None,
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def start_frame(
    mode: str,
    cur_src: np.ndarray,
    prev_src: np.ndarray | None,
    prev_dream: np.ndarray | None,
    blend: float,
    carry: float,
    flow: Flow | None = None,
) -> np.ndarray:
    """The image a frame's dream starts from. With no previous frame (a shot's first), the source.
    ``flow``: the flow between the source frames when already computed, else computed here."""
    if mode == "none" or prev_dream is None or prev_src is None:
        return cur_src
    if cur_src.dtype == np.uint8:
        return _start_uint8(mode, cur_src, prev_src, prev_dream, blend, carry, flow)
    if mode == "blend":
        return (1.0 - blend) * cur_src + blend * prev_dream
    if mode == "flow":
        # cur + carry * visible * residual, in place (frames are large; the same products and sums)
        start = _carried(cur_src, prev_src, prev_dream, carry, flow)
        start += cur_src
        return np.clip(start, 0.0, 1.0, out=start)
    raise ValueError(f"unknown coherence mode {mode!r}; allowed: {', '.join(COHERENCE_MODES)}")


def _start_uint8(
    mode: str,
    cur_src: np.ndarray,
    prev_src: np.ndarray,
    prev_dream: np.ndarray,
    blend: float,
    carry: float,
    flow: Flow | None,
) -> np.ndarray:
    """:func:`start_frame` of uint8 frames, as uint8 (rounded half to even): the same sums as the
    float path in four full-size passes instead of ten, for video frames."""
    import cv2

    if mode == "blend":
        return cv2.addWeighted(cur_src, 1.0 - blend, prev_dream, blend, 0.0, dtype=cv2.CV_8U)
    if mode == "flow":
        return cv2.add(cur_src, _carried(cur_src, prev_src, prev_dream, carry, flow), dtype=cv2.CV_8U)
    raise ValueError(f"unknown coherence mode {mode!r}; allowed: {', '.join(COHERENCE_MODES)}")


def _carried(
    cur_src: np.ndarray, prev_src: np.ndarray, prev_dream: np.ndarray, carry: float, flow: Flow | None
) -> np.ndarray:
    """carry x visible x the previous dream's residual moved along the flow: float32, in the
    frames' own units (1/255 steps for uint8 frames)."""
    flow = flow or optical_flow(prev_src, cur_src)
    residual = np.subtract(prev_dream, prev_src, dtype=np.float32)
    carried = warp(residual, flow.backward)
    carried *= (carry * flow.visible)[..., None]
    return carried


def warping_error(prev_residual: np.ndarray, residual: np.ndarray, flow: Flow) -> tuple[float, float]:
    """(masked mean squared difference between the residual and the previous residual warped onto
    this frame, mean power of the residual): their ratio is the dream's instability."""
    warped = warp(prev_residual, flow.backward)
    m = flow.visible[..., None]
    err = float(np.sum(m * (residual - warped) ** 2) / max(np.sum(m) * residual.shape[2], 1.0))
    power = float(np.mean(residual**2))
    return err, power


def frame_instability(prev_src: np.ndarray, prev_dream: np.ndarray, src: np.ndarray, dream: np.ndarray) -> float:
    """How much a frame's dream jumps from the previous frame's, where the picture did not: the
    warping error of the residual over its power (0: the pattern moved exactly with the picture;
    about 1 or more: a new pattern, as when every frame is dreamt alone)."""
    err, power = warping_error(prev_dream - prev_src, dream - src, optical_flow(prev_src, src))
    return err / max(power, 1e-12)
