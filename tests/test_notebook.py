"""The example notebook (examples/dreamreel.ipynb) runs top to bottom as a person runs it: in a
Jupyter kernel started in examples/, small (DREAMREEL_NOTEBOOK_SIZE), with nothing to install, and
it shows a picture and a film."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from tests.media import REPO

NOTEBOOK = REPO / "examples" / "dreamreel.ipynb"
CELL_TIMEOUT_S = 300


def this_python_kernel(folder: Path) -> KernelManager:
    """A kernel on this test's interpreter (the venv's, where dreamreel is installed), whatever
    kernels the machine's Jupyter folders name ``python3``."""
    spec = folder / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    return KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(folder)]))


def test_the_notebook_runs_and_shows_a_picture_and_a_film(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DREAMREEL_NOTEBOOK_SIZE", "128")
    monkeypatch.setenv("DREAMREEL_NOTEBOOK_OUT", str(tmp_path / "out"))  # not into the checkout
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        km=this_python_kernel(tmp_path / "kernels"),
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # the kernel's cwd, as Jupyter's
    )
    client.execute()  # CellExecutionError names the cell that failed

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)

    def text(cell) -> str:  # what the cell printed (its progress bars go to stderr)
        return "".join(out.text for out in cell.outputs if out.output_type == "stream" and out.name == "stdout")

    assert "already installed" in text(code[0]) and "installing" not in text(code[0])
    bundles = [out.get("data", {}) for cell in code for out in cell.outputs]
    assert any("image/png" in data for data in bundles)
    assert sum("<video" in data.get("text/html", "") for data in bundles) == 2  # the clip and the zoom
    assert any(text(cell).startswith("Cancelled:") for cell in code)
    resumed = re.search(r"resumed (\d+) frames", text(code[-1]))
    assert resumed and int(resumed.group(1)) >= 3, text(code[-1])
    assert "as the uninterrupted run of section 3: True" in text(code[-1])
