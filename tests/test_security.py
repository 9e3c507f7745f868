"""What a hostile or careless input can't do: expand a tiny config into gigabytes, make a photo folder
read a huge file whole, or leak a password from a URL into a job record or a message."""

from __future__ import annotations

import http.server
import json
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.clips import make_clip
from tests.test_video import FAST, run

# Nine levels of nine: 394 bytes of YAML, 9**9 items once written out.
LAUGHS = (
    "[&a [1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], "
    "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e,*e], "
    "&g [*f,*f,*f,*f,*f,*f,*f,*f,*f], &h [*g,*g,*g,*g,*g,*g,*g,*g,*g], &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]]"
)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a blow-up fails fast instead of swapping


@pytest.mark.parametrize("where", ["config", "set", "keyframe"])
def test_a_value_built_from_nested_aliases_is_refused_in_one_short_line(where: str, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "pipeline.cli", "image", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png")]
    if where == "config":
        (tmp_path / "bomb.yaml").write_text(f"step: {LAUGHS}\n")
        argv += ["--config", str(tmp_path / "bomb.yaml")]
    elif where == "set":
        argv += ["--set", f"step={LAUGHS}"]
    else:
        (tmp_path / "bomb.yaml").write_text(f"step: {{0: 0.01, 5: {LAUGHS}}}\n")
        argv += ["--config", str(tmp_path / "bomb.yaml")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, preexec_fn=_limited)
    assert proc.returncode == 2, proc.stderr[-500:]
    assert len(proc.stderr) < 1000 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[:500]
    assert "step" in proc.stderr


def test_every_message_is_one_bounded_line(tmp_path: Path, capsys) -> None:
    code = main(["image", str(tmp_path / "x.png"), "-o", str(tmp_path / "o.png"), "--set", "k" * 100_000 + "=1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err) < 1200 and len(err.strip().splitlines()) == 1


def test_a_huge_file_that_is_no_image_is_refused_from_its_first_bytes(tmp_path: Path) -> None:
    import tracemalloc

    from pipeline.errors import InputError
    from pipeline.io.imagefile import read_image

    big = tmp_path / "huge.bin"
    with open(big, "wb") as f:  # sparse: 1 GB that takes no disk
        f.truncate(1 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="not an image"):
            read_image(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving tmp_path (it asks for no password; the URL gives one)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path), **k)

        def log_message(self, *a):  # noqa: ANN002
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def test_a_password_in_an_input_url_is_kept_out_of_the_job_and_messages(server: str, tmp_path: Path, capsys) -> None:
    pytest.importorskip("aiohttp")
    make_clip(tmp_path / "clip.mp4", seconds=0.2)
    url = server.replace("http://", "http://someone:s3cret@") + "/clip.mp4"
    work = tmp_path / "work"
    code, err = run(["video", url, "-o", str(tmp_path / "d.mp4"), "--workdir", str(work), "--keep-work", *FAST], capsys)
    assert code == 0, err
    record = json.loads((work / "job.json").read_text())
    assert record["identity"]["input"]["path"] == server.replace("http://", "http://***@") + "/clip.mp4"
    assert not any(b"s3cret" in p.read_bytes() for p in work.rglob("*") if p.is_file())
    code, err = run(["video", url.replace("clip.mp4", "missing.mp4"), "-o", str(tmp_path / "e.mp4"), *FAST], capsys)
    assert code == 2 and "missing.mp4" in err and "s3cret" not in err, err


def test_redact_hides_credentials_in_any_url() -> None:
    from pipeline.job.store import redact

    assert (
        redact("s3://KEY:SECRET@bucket/a and http://u:p@h:1/x?y=1 and /plain/path")
        == "s3://***@bucket/a and http://***@h:1/x?y=1 and /plain/path"
    )
