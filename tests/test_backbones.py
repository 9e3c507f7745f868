"""Backbones: one suite run against each network, plus weights, layer names and the fallback rule."""

from __future__ import annotations

import numpy as np
import pytest

from dreamcore import backbones
from dreamcore.backbones.inception import WEIGHTS_FILE
from dreamcore.backbones.keras_ops import stable_layer_names
from dreamcore.errors import LayerError, WeightsError
from tests.media import synthetic_image

ALL = sorted(backbones.REGISTRY)


@pytest.mark.parametrize("name", ALL)
def test_untrained_network_builds_truncated_and_is_repeatable(name: str) -> None:
    b = backbones.get(name)
    layers = b.dream_layers()[3:5]
    net1 = b.build("untrained", layers)
    net2 = b.build("untrained", layers)
    x = synthetic_image(net1.min_side + 10, net1.min_side + 30)[None].astype(np.float32) / 127.5 - 1
    a1, a2 = net1(x), net2(x)
    assert len(a1) == 2
    for u, v in zip(a1, a2, strict=True):
        assert np.array_equal(u.numpy(), v.numpy())
    # Truncated: nothing deeper than the deepest requested layer is in the model.
    # (every layer above the deepest requested one feeds it, in both networks)
    real = [la for la in net1.model.layers if type(la).__name__ != "InputLayer"]
    names = [n for n in b.layer_names() if not n.startswith("input_layer")]
    assert len(real) == names.index(layers[-1]) + 1 < len(names)


@pytest.mark.parametrize("name", ALL)
def test_default_layers_are_valid_and_unknown_names_listed(name: str) -> None:
    b = backbones.get(name)
    b.check_layers(list(b.default_layers))
    with pytest.raises(LayerError) as err:
        b.check_layers(["mixed27"])
    assert "mixed27" in str(err.value)
    assert b.dream_layers()[0] in str(err.value) and b.dream_layers()[-1] in str(err.value)


@pytest.mark.parametrize("name", ALL)
def test_min_side_is_the_smallest_size_the_layers_accept(name: str) -> None:
    b = backbones.get(name)
    net = b.build("untrained", [b.dream_layers()[-1]])
    for side in (net.min_side, net.min_side + 1):
        (act,) = net(np.zeros((1, side, side, 3), np.float32))
        assert act.shape[1] > 4
    (act,) = net(np.zeros((1, net.min_side - 1, net.min_side - 1, 3), np.float32)) if net.min_side > 8 else (None,)
    assert act is None or act.shape[1] <= 4


def test_inception_layer_names_are_stable_across_builds() -> None:
    b = backbones.get("inception_v3")
    first, second = b.layer_names(), b.layer_names()
    assert first == second
    assert first[1] == "conv2d" and "conv2d_93" in first and "mixed9_1" in first
    # a non-mixed name dreams too
    net = b.build("untrained", ["activation_20"])
    assert net.layers == ("activation_20",)


def test_weights_file_saved_from_the_same_architecture_loads_exactly(tmp_path) -> None:
    import keras

    keras.utils.set_random_seed(123)  # not the untrained seed: the file must really be what is used
    full = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(None, None, 3))
    path = tmp_path / "mine.weights.h5"
    full.save_weights(str(path))
    net = backbones.get("inception_v3").build(str(path), ["mixed2"])
    x = synthetic_image(120, 150)[None].astype(np.float32) / 127.5 - 1
    by_name = stable_layer_names(full)
    expected = keras.Model(full.input, by_name["mixed2"].output)(x, training=False)
    assert np.array_equal(net(x)[0].numpy(), expected.numpy())
    untrained = backbones.get("inception_v3").build("untrained", ["mixed2"])
    assert not np.array_equal(untrained(x)[0].numpy(), expected.numpy())


def test_weights_file_of_another_architecture_is_a_clear_error(tmp_path) -> None:
    import keras

    other = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(str(path))
    with pytest.raises(WeightsError, match="other.weights.h5"):
        backbones.get("inception_v3").build(str(path), ["mixed2"])
    with pytest.raises(WeightsError, match="not found"):
        backbones.get("inception_v3").build(str(tmp_path / "missing.weights.h5"), ["mixed2"])


def test_imagenet_unavailable_is_a_weights_error_naming_file_and_ways_out() -> None:
    with pytest.raises(WeightsError) as err:
        backbones.get("inception_v3").build("imagenet", ["mixed3"])
    msg = str(err.value)
    assert WEIGHTS_FILE in msg and "`weights=FILE`" in msg and "`model=vgg16_hed`" in msg  # the CLI says the flags
    assert "\n" not in msg


def test_auto_falls_back_to_vgg16_hed_in_one_note_with_its_own_layers() -> None:
    res = backbones.resolve("auto", None, {"mixed4": 1.0, "mixed5": 1.5})
    assert res.backbone.name == "vgg16_hed"
    assert res.layers == backbones.get("vgg16_hed").default_layers
    assert len(res.notes) == 1 and "vgg16_hed" in res.notes[0]


def test_forced_model_does_not_fall_back() -> None:
    res = backbones.resolve("inception_v3", None, {"mixed4": 1.0})
    assert res.backbone.name == "inception_v3" and not res.notes  # fails later, at build, with WeightsError


def test_auto_reports_a_typo_against_inception() -> None:
    with pytest.raises(LayerError, match="'mixed27' for inception_v3.*mixed10"):
        backbones.resolve("auto", None, {"mixed27": 9.0})


def test_layers_of_another_network_travel_with_a_note() -> None:
    res = backbones.resolve("inception_v3", "untrained", {"block4_conv3": 1.0})
    assert res.layers == backbones.get("inception_v3").default_layers
    assert "block4_conv3" in res.notes[0]


def test_vgg16_hed_sees_caffe_bgr_minus_mean() -> None:
    net = backbones.get("vgg16_hed").build("hed", ["block1_conv1"])
    white = np.ones((1, 4, 4, 3), np.float32)
    out = net.preprocess(white).numpy()
    np.testing.assert_allclose(out[0, 0, 0], [255 - 104.00699, 255 - 116.66877, 255 - 122.67892], rtol=1e-6)
    red = np.array([1.0, -1.0, -1.0], np.float32).reshape(1, 1, 1, 3)
    assert net.preprocess(red).numpy()[0, 0, 0, 2] == pytest.approx(255 - 122.67892)
