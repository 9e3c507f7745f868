"""Keyframed settings: parsed, interpolated, checked against the clip, and applied frame by frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dreamcore.config import VideoConfig
from pipeline.settings import build_job_settings, parse_set
from tests.clips import make_clip, make_pan, read_frames
from tests.jobs import dreamt_all, stored_pixels
from tests.test_video import FAST, run


def schedule(*sets: str):
    return build_job_settings(None, None, list(sets), {})


def test_keyframes_interpolate_linearly_and_hold_at_both_ends() -> None:
    cfg, vcfg, s = schedule("step=2:0.01,4:0.03", "iterations=0:1,1s:5", "video.carry=0.5s:0.5,1s:0.9")
    assert (cfg.step, cfg.iterations, vcfg.carry) == (0.01, 1, 0.5)  # the first values
    at = [s.apply(cfg, vcfg, i, i / 10, 10.0) for i in range(12)]
    assert [round(c.step, 6) for c, _ in at[:6]] == [0.01, 0.01, 0.01, 0.02, 0.03, 0.03]
    assert [c.iterations for c, _ in at[:11]] == [1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5]  # ints rounded (half to even)
    assert [round(v.carry, 6) for _, v in at[4:12]] == [0.5, 0.5, 0.58, 0.66, 0.74, 0.82, 0.9, 0.9]


def test_a_keyframe_list_on_the_command_line_is_not_read_as_yaml() -> None:
    """YAML 1.1 reads 1:30 as 90 (base 60): a keyframe list stays text."""
    assert parse_set(["step=0:0.01", "layers.mixed3=0:0,5s:2"]) == {"step": "0:0.01", "layers": {"mixed3": "0:0,5s:2"}}


def test_keyframes_in_a_config_file_as_a_mapping(tmp_path: Path) -> None:
    f = tmp_path / "k.yaml"
    f.write_text("step: {0: 0.005, 2s: 0.02}\nlayers: {mixed3: 1, mixed5: '0:0,10:2'}\n")
    cfg, _, s = build_job_settings(None, str(f), [], {})
    assert set(s.keys) == {"step", "layers.mixed5"} and cfg.layers == {"mixed3": 1.0, "mixed5": 0.0}
    assert s.apply(cfg, VideoConfig(), 48, 2.0, 24.0)[0].step == pytest.approx(0.02)


def test_a_later_plain_value_ends_the_keyframes() -> None:
    cfg, _, s = schedule("step=0:0.01,5:0.02", "step=0.03")
    assert not s and cfg.step == 0.03


@pytest.mark.parametrize(
    "sets, message",
    [
        (["step=0:0.01,3s:0.02"], "step: keyframe 3s:0.02 is past the end (1.001 s)"),
        (["step=0:0.01,40:0.02"], "step: keyframe 40:0.02 is past the end (frames 0 to 23)"),
        (["step=5:0.01,2:0.02"], "step: keyframe 2:0.02 is not after 5:0.01"),
        (["step=0:0.01,5:2"], "step: keyframe 5:2: "),
        (["stepp=0:0.01,5:0.02"], "unknown key 'stepp'"),
        (["video.flow_side=0:512,5:256"], "video.flow_side cannot change over time"),
        (["seed=0:1,5:2"], "seed cannot change over time"),
        (["step=0:0.01,x:0.02"], "--set: step: '0:0.01,x:0.02' is not allowed"),
    ],
)
def test_bad_keyframes_exit_2_with_one_line_naming_the_keyframe(
    sets: list[str], message: str, tmp_path: Path, capsys
) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=1.0, audio=False)
    args = [a for s in sets for a in ("--set", s)]
    code, err = run(["video", str(clip), "-o", str(tmp_path / "o.mp4"), *FAST, *args], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.mp4").exists()


def test_a_step_ramp_raises_the_dream_frame_by_frame(tmp_path: Path, capsys) -> None:
    """step from 0 (no dream: the source itself) to 0.05 over a still shot: each frame's strength
    (mean |dream - source|, on the dreamt frames before encoding) above the one before."""
    clip = make_pan(tmp_path / "c.mp4", frames=8, speed=0)
    work = tmp_path / "work"
    # No jitter: every frame climbs the same gradient, by its own step.
    code, err = run(
        [
            "video",
            str(clip),
            "-o",
            str(tmp_path / "o.mp4"),
            *FAST,
            "--coherence",
            "none",
            "--workdir",
            str(work),
            "--keep-frames",
            "--set",
            "jitter=0",
            "--set",
            "step=0:0,7:0.05",
        ],
        capsys,
    )
    assert code == 0, err
    src = read_frames(clip)
    strength = [float(np.abs(d.astype(np.float32) - s).mean()) for d, s in zip(dreamt_all(work), src, strict=True)]
    assert len(strength) == 8 and strength[0] == 0.0, strength
    assert all(b > a for a, b in zip(strength, strength[1:], strict=False)), np.round(strength, 2)
    assert strength[-1] > 3, strength


def test_a_keyframed_layer_switch_changes_the_dream_at_that_frame_and_not_before(tmp_path: Path, capsys) -> None:
    """mixed2 until frame 5, mixed3 from frame 6 (weights 1 -> 0 and 0 -> 1): frames 0-5 are those
    of a run that stays on mixed2, to the bit; from frame 6 they are not."""
    clip = make_clip(tmp_path / "c.mp4", size="128x96", seconds=0.5, audio=False)
    fast = [a for a in FAST if a not in ("--layers", "mixed2=1")]  # a --layers flag would end layer keyframes
    outs = {}
    for name, two, three in (("off", "1", "0"), ("switch", "0:1,5:1,6:0", "0:0,5:0,6:1")):
        work = tmp_path / name
        code, err = run(
            [
                "video",
                str(clip),
                "-o",
                str(tmp_path / f"{name}.mp4"),
                *fast,
                "--workdir",
                str(work),
                "--keep-frames",
                "--set",
                f"layers.mixed2={two}",
                "--set",
                f"layers.mixed3={three}",
                "--set",
                "step=0.03",
            ],
            capsys,
        )
        assert code == 0, err
        outs[name] = dreamt_all(work)
    for i in range(6):
        np.testing.assert_array_equal(outs["switch"][i], outs["off"][i], err_msg=f"frame {i}")
    for i in range(6, 12):
        assert np.abs(outs["switch"][i].astype(np.float32) - outs["off"][i]).mean() > 0.5, i


def test_keyframed_settings_reach_every_frame_through_zoom(tmp_path: Path, capsys, monkeypatch) -> None:
    """The same keyframes in zoom: a step of 0 after frame 0 leaves only the motion."""
    import cv2

    from pipeline.cli import main
    from pipeline.job.store import Store
    from pipeline.zoom import Motion, move
    from tests.media import synthetic_image

    monkeypatch.setattr(Store, "delete", lambda self, rel: None)  # keep every frame to read back

    pic = tmp_path / "p.png"
    cv2.imwrite(str(pic), synthetic_image(64, 96)[..., ::-1])
    work = tmp_path / "work"
    code = main(
        [
            "zoom",
            str(pic),
            "-o",
            str(tmp_path / "z.mp4"),
            "--frames",
            "4",
            "--workdir",
            str(work),
            "--keep-work",
            "--chunk-frames",
            "100",
            *FAST,
            "--set",
            "step=0:0.05,1:0",
        ]
    )
    assert code == 0, capsys.readouterr().err
    frames = [stored_pixels(work / "frames" / f"{i:06d}.rgb").reshape(64, 96, 3) for i in range(4)]
    for i in (2, 3):
        np.testing.assert_array_equal(frames[i], move(frames[i - 1], Motion()))
    assert np.abs(frames[0].astype(np.float32) - synthetic_image(64, 96)).mean() > 2  # frame 0 dreamt at 0.05


def test_a_frames_settings_keep_the_guide() -> None:
    """A guide is not a YAML key: a keyframed frame's config carries it over as it is (zoom applies
    keyframes to a guided config)."""
    cfg, vcfg, schedule = build_job_settings(None, None, ["step=0:0.01,10:0.02"], {})
    guided = cfg.replace(guide=np.full((4, 4, 3), 7, np.uint8))
    frame, _ = schedule.apply(guided, vcfg, 5, 5 / 24, 24.0)
    assert frame.step == pytest.approx(0.015) and frame.guide == guided.guide
