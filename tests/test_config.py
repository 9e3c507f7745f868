"""The config schema, presets and the precedence of their sources."""

from __future__ import annotations

import pytest

from dreamcore.config import DreamConfig
from dreamcore.errors import ConfigError
from dreamcore.preset import load_preset, preset_names
from pipeline.settings import build_config, parse_layers, parse_set


def test_every_preset_loads_and_validates() -> None:
    names = preset_names()
    assert {"default", "seed", "keras-example", "tf-tutorial", "hed"} <= set(names)
    for name in names:
        build_config(name, None, [], {})


def test_seed_preset_keeps_the_seeds_valid_layers_and_values() -> None:
    cfg = build_config("seed", None, [], {})
    assert dict(cfg.layers) == {"mixed2": 0.2, "mixed3": 0.8, "mixed4": 2.0, "mixed5": 4.0, "mixed6": 5.0}
    assert (cfg.step, cfg.octaves, cfg.octave_scale, cfg.iterations, cfg.max_loss) == (0.025, 5, 1.4, 20, 10.0)


def test_keras_example_preset_matches_the_example() -> None:
    cfg = build_config("keras-example", None, [], {})
    assert dict(cfg.layers) == {"mixed4": 1.0, "mixed5": 1.5, "mixed6": 2.0, "mixed7": 2.5}
    assert (cfg.step, cfg.octaves, cfg.octave_scale, cfg.iterations, cfg.max_loss) == (0.01, 3, 1.4, 20, 15.0)


def test_precedence_flag_over_set_over_file_over_preset(tmp_path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("iterations: 7\nstep: 0.02\nseed: 3\n")
    cfg = build_config("seed", str(f), ["step=0.03", "seed=4"], {"seed": 5, "max_side": None})
    assert cfg.iterations == 7  # file over preset
    assert cfg.step == 0.03  # --set over file
    assert cfg.seed == 5  # flag over --set
    assert cfg.octaves == 5  # preset where nobody else spoke


def test_layers_are_replaced_whole_not_merged() -> None:
    cfg = build_config("seed", None, [], {"layers": {"mixed3": 1.0}})
    assert dict(cfg.layers) == {"mixed3": 1.0}


@pytest.mark.parametrize(
    ("sets", "words"),
    [
        (["octaves=99"], ["--set", "octaves", "99", "1 to 12"]),
        (["step=-1"], ["--set", "step", "-1", "from 0 to 1"]),
        (["iterations=abc"], ["iterations", "'abc'", "not an integer"]),
        (["max_loss=0"], ["max_loss", "null"]),
        (["tile=64"], ["tile", "64", "128 to 8192"]),
        (["nonsense=1"], ["unknown key", "nonsense"]),
        (["layers={}"], ["layers", "non-empty"]),
        (["layers={mixed3: 0}"], ["layers", "not all zero"]),
        (["model=resnet"], ["model", "resnet", "inception_v3"]),
        (["precision=float16"], ["precision", "float16", "bfloat16"]),
    ],
)
def test_bad_values_name_source_field_value_and_range(sets: list[str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        build_config(None, None, sets, {})
    for w in words:
        assert w in str(err.value)


def test_config_file_errors_name_the_file(tmp_path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("octave_scale: 9\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: octave_scale: 9"):
        build_config(None, str(f), [], {})
    f.write_text("layers: [mixed3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML at line"):
        build_config(None, str(f), [], {})
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        build_config(None, str(f), [], {})
    with pytest.raises(ConfigError, match="no such file"):
        build_config(None, str(tmp_path / "missing.yaml"), [], {})


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*keras-example"):
        load_preset("nope")


def test_parse_set_and_layers() -> None:
    assert parse_set(["max_loss=null", "step=0.5", "layers.mixed3=2"]) == {
        "max_loss": None,
        "step": 0.5,
        "layers": {"mixed3": 2},
    }
    assert parse_layers("mixed3=1, mixed5=1.5,mixed7") == {"mixed3": 1.0, "mixed5": 1.5, "mixed7": 1.0}
    with pytest.raises(ConfigError, match="weight must be a number"):
        parse_layers("mixed3=x")
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["iterations"])


def test_config_is_frozen_and_checked_when_built_in_python() -> None:
    cfg = DreamConfig()
    with pytest.raises(AttributeError):
        cfg.step = 0.5  # type: ignore[misc]
    with pytest.raises(ConfigError, match="octaves"):
        DreamConfig(octaves=0)
    assert cfg.replace(iterations=3).iterations == 3


def test_bfloat16_on_a_cpu_without_bfloat16_says_so(monkeypatch, caplog) -> None:
    """Without AVX512_BF16 or AMX the CPU emulates bfloat16 and can run slower than float32: the
    command says so once (it is never silent), and says nothing where the CPU has it or for float32."""
    import logging

    from pipeline import runtime
    from pipeline.settings import resolve_noted

    cfg = DreamConfig(model="inception_v3", weights="untrained")
    for flags, precision, warned in [
        ({"avx2", "avx512f"}, "bfloat16", True),
        ({"avx512_bf16"}, "bfloat16", False),
        ({"amx_bf16"}, "bfloat16", False),
        ({"avx2"}, "float32", False),
        (None, "bfloat16", False),
    ]:
        monkeypatch.setattr(runtime, "_cpuinfo", lambda flags=flags: ("a CPU", flags))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            resolve_noted(cfg.replace(precision=precision))
        said = [r.getMessage() for r in caplog.records if "bfloat16 instructions" in r.getMessage()]
        assert len(said) == (1 if warned else 0), (flags, precision, said)


@pytest.mark.parametrize(
    "weight, why", [(1e308, "float32's range"), (-1e39, "float32's range"), (1e-50, "not all zero in float32")]
)
def test_layer_weights_are_checked_as_float32_uses_them(weight: float, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        build_config(None, None, [], {"layers": {"mixed4": weight}})
    build_config(None, None, [], {"layers": {"mixed4": 3e38, "mixed5": 1e-50}})


def test_a_dream_whose_loss_overflows_is_an_error_not_a_black_picture(monkeypatch) -> None:
    """Weights within float32 can still overflow its sums (a trained network's large activations):
    the step that would turn the picture into NaN (black) stops the dream with one line instead."""
    import numpy as np

    from dreamcore import DreamConfig, dream_image
    from dreamcore.ascent import Dreamer
    from dreamcore.errors import DreamError

    real = Dreamer.gradient

    def overflowing(self, *args, **kwargs):
        loss, grad = real(self, *args, **kwargs)
        return float("inf"), grad * np.float32(np.inf)

    monkeypatch.setattr(Dreamer, "gradient", overflowing)
    img = np.full((48, 48, 3), 120, np.uint8)
    with pytest.raises(DreamError, match="the dream diverged"):
        dream_image(
            img, DreamConfig(model="inception_v3", weights="untrained", layers={"mixed2": 1.0}, octaves=1, iterations=1)
        )
