"""`dreamreel images`: a generated tree of awkward images and bad files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.images import output_for
from pipeline.io.imagefile import read_image
from pipeline.io.walk import walk
from tests.media import image_folder, png_header_only, synthetic_image

FAST = [
    "--model",
    "inception_v3",
    "--weights",
    "untrained",
    "--layers",
    "mixed2=1",
    "--set",
    "iterations=2",
    "--set",
    "octaves=1",
    "--max-side",
    "96",
    "-q",
]
BAD = {"bad/empty.png", "bad/notes.jpg", "bad/truncated.png", "bad/huge.png"}


def make_tree(root: Path) -> set[str]:
    """At least 20 good images of every awkward kind, 4 bad files, hidden files and a link loop."""
    good: set[str] = set()

    def add(rel: str, save) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        save(p)
        good.add(rel)

    for i in range(10):
        add(f"plain/{i:02d} photo.jpg", lambda p, i=i: Image.fromarray(synthetic_image(60, 80, seed=i)).save(p))
    add("ünï cødé/spaced name.png", lambda p: Image.fromarray(synthetic_image(50, 70)).save(p))
    add("kinds/gray.png", lambda p: Image.fromarray(synthetic_image(40, 60)).convert("L").save(p))
    add(
        "kinds/rgba.png",
        lambda p: Image.fromarray(np.dstack([synthetic_image(40, 60), np.full((40, 60), 90, np.uint8)])).save(p),
    )
    add("kinds/sixteen.png", lambda p: cv2.imwrite(str(p), synthetic_image(40, 60).astype(np.uint16) * 257))
    add("kinds/cmyk.jpg", lambda p: Image.fromarray(synthetic_image(40, 60)).convert("CMYK").save(p))

    def exif_rotated(p: Path) -> None:
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(synthetic_image(40, 60)).save(p, exif=exif)

    add("kinds/rotated.jpg", exif_rotated)

    def animated(p: Path) -> None:
        frames = [Image.fromarray(synthetic_image(40, 60, seed=s)) for s in range(3)]
        frames[0].save(p, save_all=True, append_images=frames[1:], duration=80)

    add("kinds/animated.gif", animated)
    add("deep/a/b/c/deep.webp", lambda p: Image.fromarray(synthetic_image(50, 50)).save(p))
    add("kinds/no-extension", lambda p: Image.fromarray(synthetic_image(40, 40)).save(p, format="PNG"))
    add("kinds/wrong-extension.txt", lambda p: Image.fromarray(synthetic_image(40, 40)).save(p, format="PNG"))
    (root / "bad").mkdir()
    (root / "bad/empty.png").write_bytes(b"")
    (root / "bad/notes.jpg").write_text("not an image at all\n")
    Image.fromarray(synthetic_image(200, 200)).save(root / "bad/full.png")
    data = (root / "bad/full.png").read_bytes()
    (root / "bad/truncated.png").write_bytes(data[: len(data) // 2])
    (root / "bad/full.png").unlink()
    (root / "bad/huge.png").write_bytes(png_header_only(60000, 60000))
    (root / ".hidden").mkdir()
    Image.fromarray(synthetic_image(20, 20)).save(root / ".hidden/skip.png")
    Image.fromarray(synthetic_image(20, 20)).save(root / "plain/.skip.png")
    os.symlink("..", root / "deep/a/loop")  # a symlink loop: must not trap the walk
    assert len(good) >= 20
    return good


def events(out: Path) -> list[str]:
    p = out / ".dreamreel-work" / "events.log"
    return p.read_text().splitlines() if p.exists() else []


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, set[str]]:
    root = tmp_path_factory.mktemp("tree") / "in"
    return root, make_tree(root)


def test_walk_skips_hidden_and_survives_link_loops(tree) -> None:
    root, good = tree
    rels = {p.relative_to(root).as_posix() for p in walk(root)[0]}
    assert good | BAD == {r for r in rels if "loop" not in r}
    assert not any(part.startswith(".") for r in rels for part in r.split("/"))


def test_output_names_mirror_and_never_collide() -> None:
    taken: set[str] = set()
    assert output_for(Path("a/b.jpg"), "same", taken) == "a/b.jpg"
    assert output_for(Path("a/b.gif"), "same", taken) == "a/b.png"
    assert output_for(Path("a/b.png"), "same", taken) == "a/b.png.png"  # b.gif took a/b.png
    assert output_for(Path("x"), "jpg", taken) == "x.jpg"


def test_tree_good_dreamt_bad_reported_exit_3_then_nothing_redone(tree, tmp_path: Path, capsys) -> None:
    root, good = tree
    out = tmp_path / "out"
    code = main(["images", str(root), "-o", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == 3, err
    for rel in BAD:
        assert f"failed: {rel}:" in err
    assert "empty file" in err and "not an image" in err and "60000x60000" in err and "truncated" in err
    assert f"{len(good)} dreamt, 0 already done, {len(BAD)} failed" in err
    outputs = {
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and ".dreamreel-work" not in p.parts
    }
    assert len(outputs) == len(good)
    assert "kinds/animated.png" in outputs and "ünï cødé/spaced name.png" in outputs
    assert "kinds/wrong-extension.png" in outputs and "kinds/no-extension.png" in outputs
    assert read_image(out / "kinds/rgba.png").pixels.shape[2] == 4
    assert read_image(out / "kinds/sixteen.png").pixels.dtype == np.uint16
    assert read_image(out / "kinds/rotated.jpg").pixels.shape[:2] == (60, 40)
    dreamt_first = [e for e in events(out) if e.startswith("dreamt")]
    assert len(dreamt_first) == len(good)

    code = main(["images", str(root), "-o", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == 3 and f"0 dreamt, {len(good)} already done" in err
    assert [e for e in events(out) if e.startswith("dreamt")] == dreamt_first


def test_same_image_through_images_and_image_is_identical(tree, tmp_path: Path, capsys) -> None:
    root, _ = tree
    src = root / "kinds/rgba.png"
    single = tmp_path / "single.png"
    assert main(["image", str(src), "-o", str(single), *FAST]) == 0
    out = tmp_path / "out"
    main(["images", str(root / "kinds"), "-o", str(out), *FAST])
    capsys.readouterr()
    assert np.array_equal(read_image(single).pixels, read_image(out / "rgba.png").pixels)


def test_changed_config_on_same_out_dir_is_refused(tree, tmp_path: Path, capsys) -> None:
    root, _ = tree
    out = tmp_path / "out"
    main(["images", str(root / "deep"), "-o", str(out), *FAST])
    code = main(["images", str(root / "deep"), "-o", str(out), *FAST, "--set", "step=0.02"])
    err = capsys.readouterr().err
    assert code == 2 and "config.step" in err
    assert main(["images", str(root / "deep"), "-o", str(out), *FAST, "--set", "step=0.02", "--restart"]) == 0


def test_bad_folders(tmp_path: Path, capsys) -> None:
    assert main(["images", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), *FAST]) == 2
    (tmp_path / "in").mkdir()
    assert main(["images", str(tmp_path / "in"), "-o", str(tmp_path / "in" / "out"), *FAST]) == 2
    assert "inside the input folder" in capsys.readouterr().err


def test_sigkill_mid_batch_leaves_whole_files_and_resumes(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "in", 16, name="{i:02d}.png")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "images",
        str(root),
        "-o",
        str(out),
        *FAST,
        "--set",
        "iterations=4",
        "--max-side",
        "160",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(events(out)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = set(events(out))
    assert 3 <= len(done_before) < 16
    for p in out.glob("*.png"):
        assert read_image(p).pixels.shape == (120, 160, 3)  # whole, decodable
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    after = Counter(events(out))
    assert max(after.values()) == 1  # nothing dreamt twice
    # every image is there (one may have been written just before the kill, then found done)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in root.glob("*.png"))


def test_a_link_to_the_output_folder_is_never_walked_so_dreams_are_not_dreamt_again(tmp_path: Path, capsys) -> None:
    photos = image_folder(tmp_path / "in", 2, 32, 48)
    out = tmp_path / "out"
    os.symlink(out, photos / "dreams-link", target_is_directory=True)  # points at OUT_DIR (made by the first run)
    os.symlink(out / "0.png", photos / "a-dream.png")
    for _ in range(2):
        code = main(["images", str(photos), "-o", str(out), *FAST])
        err = capsys.readouterr().err
        assert code == 3, err
        assert "skipped dreams-link: leads into" in err and "skipped a-dream.png: leads into" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if ".dreamreel-work" not in p.parts) == [
        "0.png",
        "1.png",
    ]


def test_an_input_folder_inside_the_output_folder_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    photos = image_folder(out / "in", 1, 32, 48)
    image_folder(photos / "in", 1, 32, 48)  # a subfolder named like IN_DIR: its dream would land on an input
    before = sorted(p.name for p in photos.rglob("*"))
    code = main(["images", str(photos), "-o", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "input folder may not be inside the output folder" in err, err
    assert sorted(p.name for p in photos.rglob("*")) == before


def test_a_fifo_and_a_link_to_nothing_are_reported_not_skipped_silently(tmp_path: Path, capsys) -> None:
    photos = image_folder(tmp_path / "in", 1, 32, 48)
    os.mkfifo(photos / "pipe.png")
    os.symlink(photos / "gone.png", photos / "dangling.png")
    code = main(["images", str(photos), "-o", str(tmp_path / "out"), *FAST])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "failed: pipe.png: a FIFO, not a file to read" in err
    assert "failed: dangling.png: a link to nothing" in err
    assert "1 dreamt" in err
