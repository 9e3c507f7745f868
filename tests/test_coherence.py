"""The coherence module on frames with known motion: flow direction, the warp, the occlusion mask,
the three ways a frame starts, and where shots begin."""

from __future__ import annotations

import numpy as np
import pytest

from dreamcore.coherence import CutDetector, flow_size, optical_flow, start_frame, warp

H, W, SHIFT = 96, 128, 3


def texture(height: int = H, width: int = W + 16, seed: int = 0) -> np.ndarray:
    """Smooth random texture (RGB float in [0, 1]): something optical flow can lock on to."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 1, (height // 4, width // 4, 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), 0, 1)


@pytest.fixture(scope="module")
def pan() -> tuple[np.ndarray, np.ndarray]:
    """Two frames of a camera pan: the picture moves SHIFT pixels to the right."""
    big = texture()
    prev = big[:, 8 : 8 + W]
    cur = big[:, 8 - SHIFT : 8 - SHIFT + W]  # cur[y, x] = prev[y, x - SHIFT]
    return prev, cur


INNER = (slice(12, H - 12), slice(12, W - 12))


def test_backward_flow_points_where_each_pixel_came_from(pan) -> None:
    prev, cur = pan
    flow = optical_flow(prev, cur)
    dx, dy = flow.backward[..., 0][INNER], flow.backward[..., 1][INNER]
    assert np.median(dx) == pytest.approx(-SHIFT, abs=0.25)  # it came from SHIFT pixels to the left
    assert np.median(dy) == pytest.approx(0, abs=0.25)


def test_warp_lands_the_previous_frame_on_the_current_one(pan) -> None:
    prev, cur = pan
    flow = optical_flow(prev, cur)
    warped_err = np.abs(warp(prev, flow.backward) - cur)[INNER].mean()
    unwarped_err = np.abs(prev - cur)[INNER].mean()
    assert warped_err < 0.1 * unwarped_err
    # and the warp by a known, exact field is exact away from the border
    exact = np.zeros((H, W, 2), np.float32)
    exact[..., 0] = -SHIFT
    np.testing.assert_allclose(warp(prev, exact)[:, SHIFT:], cur[:, SHIFT:], atol=1e-6)


def test_occlusion_mask_hides_what_a_moving_square_uncovered() -> None:
    """A textured square moves 8 px right over a still background: the strip it uncovers was
    never seen in the previous frame, so it is masked; the still background far from it is not."""
    bg, fg = texture(seed=1)[:, :W], texture(seed=2)[:, :W]
    prev, cur = bg.copy(), bg.copy()
    y0, y1, x0, x1, step = 28, 68, 40, 80, 8
    prev[y0:y1, x0:x1] = fg[y0:y1, x0:x1]
    cur[y0:y1, x0 + step : x1 + step] = fg[y0:y1, x0:x1]
    visible = optical_flow(prev, cur).visible
    uncovered = visible[y0 + 4 : y1 - 4, x0 + 1 : x0 + step - 1]
    assert np.mean(uncovered > 0.5) < 0.3, np.round(uncovered, 2)
    still = visible[4:20, 4 : W - 4]
    assert np.mean(still > 0.5) > 0.95


def test_pixels_entering_at_the_border_are_masked(pan) -> None:
    prev, cur = pan
    visible = optical_flow(prev, cur).visible
    assert visible[INNER].mean() > 0.95
    assert visible[12:-12, : SHIFT - 1].mean() < 0.5  # the left edge came from outside the frame


def test_flow_at_a_working_size_is_computed_small_and_scaled_back(monkeypatch) -> None:
    """video.flow_side: a 512x384 pan moving 8 px, its flow computed at 128 px on the long side. DIS
    sees only the small frames, and the field comes back at full size in full-size pixels: the
    same motion, the same masked border, as the full-size flow finds."""
    import cv2

    big = texture(384, 512 + 32, seed=3)
    prev, cur = big[:, 16 : 16 + 512], big[:, 8 : 8 + 512]  # cur[y, x] = prev[y, x - 8]
    full = optical_flow(prev, cur)
    seen: list[tuple[int, ...]] = []
    real = cv2.DISOpticalFlow_create

    class Spy:
        def __init__(self, preset: int):
            self.dis = real(preset)

        def calc(self, a, b, flow):
            seen.append(a.shape)
            return self.dis.calc(a, b, flow)

    monkeypatch.setattr(cv2, "DISOpticalFlow_create", Spy)
    small = optical_flow(prev, cur, max_side=128)
    assert seen == [(96, 128), (96, 128)]
    assert small.backward.shape == full.backward.shape and small.visible.shape == full.visible.shape
    inner = (slice(32, -32), slice(32, -32))
    assert np.median(small.backward[..., 0][inner]) == pytest.approx(-8, abs=0.3)
    assert np.median(np.abs(small.backward[..., 1][inner])) < 0.3
    assert np.abs(small.backward - full.backward)[inner].mean() < 0.3
    assert small.visible[inner].mean() > 0.95 and small.visible[32:-32, :4].mean() < 0.5
    # a field already at or under the working size is computed as it is
    seen.clear()
    optical_flow(prev[:96, :128], cur[:96, :128], max_side=128)
    assert seen == [(96, 128), (96, 128)]


def test_flow_works_at_flow_side_capped_by_the_dreams_max_side() -> None:
    assert flow_size(768, None) == 768
    assert flow_size(768, 360) == 360
    assert flow_size(512, 1024) == 512
    assert flow_size(768, 32) == 64  # never below 64 px
    assert flow_size(0, 360) is None  # 0: full size, whatever the dream's size


def test_flow_start_carries_the_dream_moved_with_the_picture(pan) -> None:
    """The previous dream's residual lands where its picture went: start - cur equals the carried,
    shifted residual, not the residual where it was."""
    prev, cur = pan
    residual = 0.1 * (texture(seed=3)[:, :W] - 0.5)
    prev_dream = np.clip(prev + residual, 0, 1)
    carried = start_frame("flow", cur, prev, prev_dream, blend=0.5, carry=0.8) - cur
    shifted = np.roll(prev_dream - prev, SHIFT, axis=1)
    moved_err = np.abs(carried - 0.8 * shifted)[INNER].mean()
    still_err = np.abs(carried - 0.8 * (prev_dream - prev))[INNER].mean()
    assert moved_err < 0.15 * still_err
    assert np.abs(carried).mean() > 0.5 * 0.8 * np.abs(shifted).mean()


def test_blend_start_is_the_weighted_mix() -> None:
    cur, prev_src, prev_dream = (np.full((4, 4, 3), v, np.float32) for v in (0.2, 0.5, 0.9))
    out = start_frame("blend", cur, prev_src, prev_dream, blend=0.3, carry=0.9)
    np.testing.assert_allclose(out, 0.7 * 0.2 + 0.3 * 0.9, rtol=1e-6)


@pytest.mark.parametrize("mode", ["blend", "flow"])
def test_uint8_frames_start_like_float_ones(pan, mode: str) -> None:
    """Video frames stay uint8: their start is the float path's start, rounded (to one level)."""
    prev, cur = pan
    dream = np.clip(prev + 0.2 * (texture(seed=5)[:, :W] - 0.5), 0, 1)
    ref = start_frame(mode, cur, prev, dream, 0.3, 0.8)
    fast = start_frame(mode, u8(cur), u8(prev), u8(dream), 0.3, 0.8)
    assert fast.dtype == np.uint8
    exact = start_frame(mode, *(u8(a).astype(np.float32) / 255 for a in (cur, prev, dream)), 0.3, 0.8)
    assert np.abs(fast.astype(np.float32) - np.rint(exact * 255)).max() <= 1
    assert np.abs(fast.astype(np.float32) / 255 - ref).mean() < 1 / 255


def test_a_shots_first_frame_and_none_start_from_the_source(pan) -> None:
    prev, cur = pan
    dream = np.clip(prev + 0.2, 0, 1)
    for mode in ("none", "blend", "flow"):
        assert start_frame(mode, cur, None, None, 0.5, 0.9) is cur
    assert start_frame("none", cur, prev, dream, 0.5, 0.9) is cur
    with pytest.raises(ValueError, match="unknown coherence"):
        start_frame("warp", cur, prev, dream, 0.5, 0.9)


def u8(img: np.ndarray) -> np.ndarray:
    return np.round(img * 255).astype(np.uint8)


def shots(frames: list[np.ndarray], kind: str = "adaptive", min_scene: int = 1) -> list[int]:
    detector = CutDetector(kind, min_scene=min_scene)
    for i, frame in enumerate(frames):
        detector.feed(i, frame)
    return detector.shots()


def test_both_detectors_find_a_hard_cut_where_it_is_and_nothing_in_a_still() -> None:
    a, b = u8(texture(seed=4)[:, :W]), u8(texture(seed=5)[:, :W])
    for kind in ("adaptive", "content"):
        assert shots([a] * 5 + [b] * 5, kind) == [0, 5]
        assert shots([a] * 10, kind) == [0]


def test_adaptive_detector_does_not_cut_a_fast_pan_that_the_content_score_would() -> None:
    """A fast pan over fine, colourful detail changes every frame's colours a lot: a fixed threshold
    reads each frame as a cut; comparing a frame's change with its neighbours' does not."""
    rng = np.random.default_rng(3)
    small = rng.uniform(0, 1, (H // 6 + 2, 600 // 6 + 2, 3)).astype(np.float32)
    import cv2

    big = u8(np.clip(cv2.resize(small, (600, H), interpolation=cv2.INTER_CUBIC), 0, 1))
    pan = [big[:, 4 * i : 4 * i + W] for i in range(40)]
    assert len(shots(pan, "content")) > 30
    assert shots(pan, "adaptive") == [0]


def test_min_scene_frames_reaches_the_detector() -> None:
    a, b = u8(texture(seed=4)[:, :W]), u8(texture(seed=5)[:, :W])
    pattern = [a, b, b, a, b, b, b, a, a, a, a, a]  # changes at 1, 3, 4 and 7
    assert shots(pattern, "content", 1) == [0, 1, 3, 4, 7]
    assert shots(pattern, "content", 2) == [0, 3, 7]
    with pytest.raises(ValueError, match="unknown scene detector"):
        CutDetector("histogram")
