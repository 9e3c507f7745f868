"""Custom Keras models (`--model FILE`), channel targets and class targets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from tests.media import synthetic_image
from tests.models import shapes, tiny_cnn, trained_cnn


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> Path:
    """The tiny CNN, trained on circles vs squares and saved as .keras."""
    path = trained_cnn(tmp_path_factory.mktemp("models") / "shapes.keras")
    import keras

    model = keras.models.load_model(path)
    x, y = shapes(64, seed=1)
    assert (model.predict(x, verbose=0).argmax(1) == y).mean() >= 0.9  # it learnt the shapes
    return path


def activations(model_path: Path, layer: str, rgb: np.ndarray) -> np.ndarray:
    """The layer's activation (H, W, C) for an 8-bit RGB image, computed by Keras from the file."""
    import keras

    model = keras.models.load_model(model_path)
    probe = keras.Model(model.inputs[0], model.get_layer(layer).output)
    return np.asarray(probe(rgb[None].astype(np.float32)))[0]


def write_png(path: Path, rgb: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(rgb).save(path)
    return path


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_dreaming_through_the_cli_raises_the_chosen_layers_loss(cnn: Path, tmp_path: Path, capsys) -> None:
    src = write_png(tmp_path / "in.png", synthetic_image(96, 128))
    out = tmp_path / "out.png"
    code = main(
        [
            "image",
            str(src),
            "-o",
            str(out),
            "--model",
            str(cnn),
            "--layers",
            "conv2",
            "--set",
            "iterations=20",
            "--set",
            "step=0.02",
            "--set",
            "octaves=2",
            "--set",
            "max_loss=null",
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    before = activations(cnn, "conv2", read_png(src))
    after = activations(cnn, "conv2", read_png(out))
    b = 2  # the objective's border crop
    loss_before = float((before[b:-b, b:-b] ** 2).mean())
    loss_after = float((after[b:-b, b:-b] ** 2).mean())
    assert loss_after > 1.5 * loss_before, (loss_before, loss_after)
    assert "shapes.keras, " in capsys.readouterr().err  # the message names the model file


def test_layers_lists_a_model_files_layers_with_their_shapes(cnn: Path, capsys) -> None:
    assert main(["layers", "--model", str(cnn)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["conv1  (?, ?, ?, 8)", "pool1  (?, ?, ?, 8)", "conv2  (?, ?, ?, 16)"]
    assert out[3].startswith("class:N") and "2 classes" in out[3]
    assert main(["layers", "--model", str(cnn), "--all"]) == 0
    listed = capsys.readouterr().out
    assert "dense" in listed and "(?, 2)" in listed and "rescaling" in listed


def test_layers_channels_of_a_built_in(capsys) -> None:
    assert main(["layers", "--model", "vgg16_hed", "--channels"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "block4_conv3  (?, ?, ?, 512)  512 channels" in lines


def bad_models(tmp: Path) -> dict[str, tuple[list[str], str]]:
    import keras

    broken = tmp / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 this is not a zip archive at all")
    dense_in = tmp / "tabular.keras"
    inp = keras.Input((10,))
    keras.Model(inp, keras.layers.Dense(2)(inp)).save(dense_in)
    saved = tmp / "saved_model"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    return {
        "broken": ([str(broken)], "not a Keras model that loads"),
        "missing": ([str(tmp / "nothing.keras")], "model file not found"),
        "not an image model": ([str(dense_in)], "not an image model: its input is (None, 10)"),
        "SavedModel": ([str(saved)], "a TensorFlow SavedModel"),
    }


def test_files_that_do_not_fit_exit_2_with_one_line(cnn: Path, tmp_path: Path, capsys) -> None:
    src = write_png(tmp_path / "in.png", synthetic_image(64, 64))
    for why, (model, expected) in bad_models(tmp_path).items():
        out = tmp_path / f"{why}.png"
        code = main(["image", str(src), "-o", str(out), "--model", *model, "-q"])
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and expected in lines[0], (why, lines)
        assert not out.exists()
    cases = {
        "dense": ("is not a feature map: its output is (None, 2)", ["--layers", "dense"]),
        "unknown": (
            "unknown layer 'conv9' for shapes.keras; its dream layers: conv1, pool1, conv2",
            ["--layers", "conv9"],
        ),
        "channel": ("conv2 of", ["--layers", "conv2:16"]),  # 16 channels: 0 to 15
        "class": ("has 2 classes", ["--class", "2"]),
        "weights": ("a model file carries its own weights", ["--weights", "untrained"]),
        "input": ("model_input", ["--set", "model_input=0..9"]),
    }
    for why, (expected, args) in cases.items():
        code = main(["image", str(src), "-o", str(tmp_path / "x.png"), "--model", str(cnn), *args, "-q"])
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and expected in lines[0], (why, lines)
    code = main(["image", str(src), "-o", str(tmp_path / "x.png"), "--model", "inception_v3", "--class", "3", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "without its classifier top" in err


def channel_rises(
    model: str, layer: str, channels: tuple[int, int], img: np.ndarray, means: Callable[[np.ndarray], np.ndarray]
) -> dict[int, np.ndarray]:
    """Per targeted channel: how much each channel's mean activation rose when dreaming that channel."""
    from dreamcore import DreamConfig
    from dreamcore.engine import Engine

    before = means(img)
    rises = {}
    for c in channels:
        cfg = DreamConfig(model=model, layers={f"{layer}:{c}": 1.0}, iterations=8, octaves=1, max_loss=None)
        rises[c] = means(Engine(cfg).dream_rgb(img, uint8=True)) - before
    return rises


def check_targeted(rises: dict[int, np.ndarray]) -> None:
    """Each targeted channel rose several times more than the layer's other channels did on average,
    and more than it rose when the other channel was the target."""
    a, b = rises
    for c, other in ((a, b), (b, a)):
        rise = rises[c]
        assert rise[c] > 0 and rise[c] > 3 * np.delete(rise, c).mean(), (c, rise[c], np.delete(rise, c).mean())
        assert rise[c] > rises[other][c] + 0.5 * abs(rises[other][c]), (c, rise[c], rises[other][c])


def test_a_channel_target_raises_its_channel_more_than_the_others(cnn: Path) -> None:
    img = synthetic_image(96, 128)
    means = lambda rgb: activations(cnn, "conv2", rgb).mean(axis=(0, 1))  # noqa: E731
    live = [int(c) for c in np.argsort(-means(img))[1:6:4]]  # two channels that fire (a dead one has no gradient)
    check_targeted(channel_rises(str(cnn), "conv2", (live[0], live[1]), img, means))


def test_a_channel_target_on_a_trained_builtin_raises_that_channel() -> None:
    """vgg16_hed's block3_conv3 (a trained network), channels 17 and 40."""
    from dreamcore import DreamConfig
    from dreamcore.engine import Engine

    net = Engine(DreamConfig(model="vgg16_hed", layers={"block3_conv3": 1.0})).dreamer.net

    def means(rgb: np.ndarray) -> np.ndarray:
        return np.asarray(net(rgb.astype(np.float32)[None] / 127.5 - 1.0)[0])[0].mean(axis=(0, 1))

    check_targeted(channel_rises("vgg16_hed", "block3_conv3", (17, 40), synthetic_image(96, 96), means))


def test_class_target_raises_that_logit(cnn: Path, tmp_path: Path, capsys) -> None:
    import keras

    model = keras.models.load_model(cnn)
    logits = keras.Model(model.inputs[0], model.get_layer("dense").input)
    kernel, bias = model.get_layer("dense").get_weights()
    src = synthetic_image(64, 64)
    for cls in (0, 1):
        out = tmp_path / f"class{cls}.png"
        code = main(
            [
                "image",
                str(write_png(tmp_path / "in.png", src)),
                "-o",
                str(out),
                "--model",
                str(cnn),
                "--class",
                str(cls),
                "--set",
                "iterations=10",
                "--set",
                "octaves=1",
                "--set",
                "max_loss=null",
                "-q",
                "--overwrite",
            ]
        )
        assert code == 0, capsys.readouterr().err

        def logit(rgb: np.ndarray, cls: int = cls) -> float:
            return float((np.asarray(logits(rgb[None].astype(np.float32))) @ kernel + bias)[0, cls])

        assert logit(read_png(out)) > logit(src) + 1.0, (cls, logit(src), logit(read_png(out)))


def test_a_fixed_size_model_dreams_a_larger_image_through_tiles(tmp_path: Path) -> None:
    """A 48x48-input model dreams 100x150: every part of the picture changes (the tiles cover it,
    overlapping), the size is kept, and the chosen layer's loss rises."""
    import keras

    from dreamcore import DreamConfig
    from dreamcore.engine import Engine

    path = tmp_path / "fixed.keras"
    tiny_cnn(fixed=48).save(path)
    img = synthetic_image(100, 150)
    cfg = DreamConfig(
        model=str(path), layers={"conv2": 1.0}, iterations=12, step=0.02, octaves=1, max_loss=None, jitter=0
    )
    engine = Engine(cfg)
    assert engine.dreamer.net.fixed == (48, 48)
    out = engine.dream_rgb(img, uint8=True)
    assert out.shape == img.shape
    change = np.abs(out.astype(np.float32) - img).mean(axis=2)
    for y in (0, 50, 99):
        for x in (0, 75, 149):
            assert change[max(0, y - 4) : y + 5, max(0, x - 4) : x + 5].mean() > 0.5, (y, x)
    model = keras.models.load_model(path)
    probe = keras.Model(model.inputs[0], model.get_layer("conv2").output)

    def loss(rgb: np.ndarray) -> float:
        tiles = [rgb[y : y + 48, x : x + 48] for y in (0, 26, 52) for x in (0, 34, 68, 102)]
        return float(
            np.mean([np.square(np.asarray(probe(t[None].astype(np.float32)))[0, 2:-2, 2:-2]).mean() for t in tiles])
        )

    assert loss(out) > 1.5 * loss(img), (loss(img), loss(out))


def test_input_range_is_read_from_the_preprocessing_layer_or_said(tmp_path: Path, caplog) -> None:
    from dreamcore.backbones import KerasFile

    with_layer = tmp_path / "with.keras"
    tiny_cnn().save(with_layer)
    without = tmp_path / "without.keras"
    tiny_cnn(preprocessing=False).save(without)
    assert KerasFile(str(with_layer)).input_range() == ("0..255", None)
    rng, note = KerasFile(str(without)).input_range()
    assert rng == "0..1" and "no preprocessing layer" in note and "model_input" in note
    assert KerasFile(str(without), "-1..1").input_range() == ("-1..1", None)
    # The range reaches the network: fed 0..1 the image the model sees is the canonical one halved.
    import tensorflow as tf

    net = KerasFile(str(without)).build(None, ["conv1"])
    x = tf.constant(np.full((1, 8, 8, 3), 0.5, np.float32))
    assert np.allclose(np.asarray(net.preprocess(x)), 0.75)
    net255 = KerasFile(str(with_layer)).build(None, ["conv1"])
    assert np.allclose(np.asarray(net255.preprocess(x)), 191.25)


def test_loss_is_calibrated_per_layer(cnn: Path) -> None:
    """Each layer of a model file reads CALIBRATED_LOSS on the calibration image at weight 1, whatever
    its magnitude: conv1 and conv2 differ in raw scale, not in calibrated loss."""
    import tensorflow as tf

    from dreamcore.backbones import KerasFile
    from dreamcore.backbones.keras_file import CALIBRATED_LOSS, calibration_image
    from dreamcore.objective import dream_loss

    net = KerasFile(str(cnn)).build(None, ["conv1", "conv2"])
    acts = net(tf.constant(calibration_image(224, 224)[None]))
    raw = [float(dream_loss([a], [1.0], 1.0)) for a in acts]
    assert raw[0] / raw[1] > 2 or raw[1] / raw[0] > 2  # layers of different magnitude...
    for a, scale in zip(acts, net.scales, strict=True):  # ...read alike once scaled
        assert float(dream_loss([a], [1.0], scale)) == pytest.approx(CALIBRATED_LOSS, rel=1e-4)


@pytest.mark.parametrize("command", ["image", "images", "video", "zoom"])
def test_help_lists_the_objectives(command: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--guide FILE" in text and "--class N" in text and "Keras model file" in text and "NAME:C" in text
    assert ("--guide-end" in text) == (command == "video")


def test_a_whole_model_in_h5_works_too(tmp_path: Path, capsys) -> None:
    path = tmp_path / "legacy.h5"
    tiny_cnn().save(path)
    assert main(["layers", "--model", str(path)]) == 0
    assert "conv2  (?, ?, ?, 16)" in capsys.readouterr().out.splitlines()
    src = write_png(tmp_path / "in.png", synthetic_image(64, 64))
    assert (
        main(
            [
                "image",
                str(src),
                "-o",
                str(tmp_path / "o.png"),
                "--model",
                str(path),
                "--layers",
                "conv2",
                "--set",
                "iterations=3",
                "--set",
                "octaves=1",
                "-q",
            ]
        )
        == 0
    )
    assert np.abs(read_png(tmp_path / "o.png").astype(int) - read_png(src)).mean() > 0.5


def test_a_keras2_savedmodel_folder_dreams_through_tf_keras(tmp_path: Path, capsys) -> None:
    """A SavedModel folder written by Keras 2 (model.save("dir") before TensorFlow 2.16): its layers
    are listed and dreamt, the chosen layer's loss rises, and its classifier's logit can be the target."""
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.utils.set_random_seed(0)  # one network every run
    inp = tf_keras.Input((None, None, 3))
    x = tf_keras.layers.Rescaling(1 / 255.0)(inp)
    x = tf_keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = tf_keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(2, activation="softmax", name="dense")(x))
    folder = tmp_path / "saved"
    model.save(folder)
    assert (folder / "saved_model.pb").exists() and (folder / "keras_metadata.pb").exists()
    assert main(["layers", "--model", str(folder)]) == 0
    assert "conv2  (?, ?, ?, 16)" in capsys.readouterr().out.splitlines()
    src = write_png(tmp_path / "in.png", synthetic_image(64, 64))
    out = tmp_path / "o.png"
    assert (
        main(
            [
                "image",
                str(src),
                "-o",
                str(out),
                "--model",
                str(folder),
                "--layers",
                "conv2",
                "--set",
                "iterations=15",
                "--set",
                "step=0.03",
                "--set",
                "octaves=1",
                "--set",
                "max_loss=null",
                "-q",
            ]
        )
        == 0
    )
    probe = tf_keras.Model(model.inputs[0], model.get_layer("conv2").output)

    def loss(rgb: np.ndarray) -> float:
        return float(np.square(np.asarray(probe(rgb[None].astype(np.float32)))[0, 2:-2, 2:-2]).mean())

    assert loss(read_png(out)) > 1.2 * loss(read_png(src))
    assert main(["image", str(src), "-o", str(tmp_path / "c.png"), "--model", str(folder), "--class", "1", "-q"]) == 0
