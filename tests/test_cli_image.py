"""`dreamreel image`, `layers` and `presets` in-process: exit codes, messages, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from tests.media import png_header_only, synthetic_image

FAST = [
    "--weights",
    "untrained",
    "--model",
    "inception_v3",
    "--layers",
    "mixed3=1",
    "--max-side",
    "160",
    "--set",
    "iterations=2",
    "--set",
    "octaves=2",
    "-q",
]


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    p = tmp_path / "photo.png"
    Image.fromarray(synthetic_image(120, 180)).save(p)
    return p


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_image_writes_a_dream(photo: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.png"
    code, _, err = run(["image", str(photo), "-o", str(out), *FAST], capsys)
    assert code == 0, err
    dreamt = np.asarray(Image.open(out))
    assert dreamt.shape == (120, 180, 3)
    assert np.abs(dreamt.astype(int) - np.asarray(Image.open(photo)).astype(int)).mean() > 1
    assert "wrote" in err and "inception_v3/untrained" in err


def test_same_seed_twice_gives_identical_files(photo: Path, tmp_path: Path, capsys) -> None:
    for name in ("a.png", "b.png"):
        assert run(["image", str(photo), "-o", str(tmp_path / name), *FAST, "--seed", "9"], capsys)[0] == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_existing_output_is_refused_without_overwrite(photo: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    code, _, err = run(["image", str(photo), "-o", str(out), *FAST], capsys)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == b"precious"
    assert run(["image", str(photo), "-o", str(out), *FAST, "--overwrite"], capsys)[0] == 0
    assert out.read_bytes() != b"precious"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"this is text", "not an image"),
        (b"", "empty file"),
        (png_header_only(60000, 60000), "60000x60000"),
        (None, "truncated"),
    ],
    ids=["text", "empty", "bomb", "truncated"],
)
def test_bad_input_exit_2_one_line_no_output(content: bytes | None, words: str, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    if content is None:
        Image.fromarray(synthetic_image(200, 200)).save(tmp_path / "good.png")
        data = (tmp_path / "good.png").read_bytes()
        content = data[: len(data) // 2]
    bad.write_bytes(content)
    out = tmp_path / "out.png"
    code, stdout, err = run(["image", str(bad), "-o", str(out), *FAST], capsys)
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.png"] + (
        ["good.png"] if (tmp_path / "good.png").exists() else []
    )


def test_imagenet_unavailable_exit_2_one_line(photo: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.png"
    code, _, err = run(
        ["image", str(photo), "-o", str(out), "--model", "inception_v3", "--weights", "imagenet"], capsys
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5" in lines[0]
    assert "--weights FILE" in lines[0] and "--model vgg16_hed" in lines[0]
    assert not out.exists()


def test_unknown_layer_exit_2_lists_valid_names(photo: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run(["image", str(photo), "-o", str(tmp_path / "o.png"), "--layers", "mixed27=9"], capsys)
    assert code == 2 and "mixed27" in err and "mixed0" in err and "mixed10" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_config_value_exit_2(photo: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run(["image", str(photo), "-o", str(tmp_path / "o.png"), "--set", "step=5"], capsys)
    assert code == 2 and "step: 5" in err


def test_unknown_output_extension_exit_2_before_any_work(photo: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run(["image", str(photo), "-o", str(tmp_path / "o.xyz"), *FAST], capsys)
    assert code == 2 and ".xyz" in err


def test_default_falls_back_to_vgg16_hed_in_one_warning_line(photo: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.jpg"
    code, _, err = run(
        ["image", str(photo), "-o", str(out), "--max-side", "96", "--set", "iterations=1", "--set", "octaves=1", "-q"],
        capsys,
    )
    assert code == 0
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "vgg16_hed" in warnings[0]
    assert Image.open(out).size == (180, 120)


def test_rgba_and_16bit_keep_alpha_and_depth(tmp_path: Path, capsys) -> None:
    import cv2

    rgba16 = np.dstack([synthetic_image(90, 100), np.full((90, 100), 123, np.uint8)]).astype(np.uint16) * 257
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), rgba16[..., [2, 1, 0, 3]])
    out = tmp_path / "out.png"
    assert run(["image", str(src), "-o", str(out), *FAST], capsys)[0] == 0
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == (90, 100, 4)
    assert np.array_equal(back[..., 3], rgba16[..., 3])


def test_unicode_and_spaces_in_names(photo: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "ünï cødé -x.png"
    src.write_bytes(photo.read_bytes())
    out = tmp_path / "рез ульт.png"
    assert run(["image", str(src), "-o", str(out), *FAST], capsys)[0] == 0
    assert out.exists()


def test_presets_one_line_each(capsys) -> None:
    code, out, _ = run(["presets"], capsys)
    lines = out.strip().splitlines()
    assert code == 0 and any(line.startswith("keras-example ") for line in lines)
    assert all(len(line.split(None, 1)) == 2 for line in lines)


def test_layers_lists_valid_names(capsys) -> None:
    code, out, _ = run(["layers"], capsys)
    assert code == 0 and out.split() == [f"mixed{i}" for i in range(11)]
    code, out, _ = run(["layers", "--model", "vgg16_hed"], capsys)
    assert code == 0 and "block4_conv3" in out.split()
    code, _, err = run(["layers", "--model", "resnet"], capsys)
    assert code == 2 and "resnet" in err


def test_help_has_examples(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["image", "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out
