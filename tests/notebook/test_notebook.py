"""notebooks/serving_chain.ipynb: committed without outputs, and executed so it never rots.

The execution test runs the notebook the way a reader would (its directory as the working
directory) in a kernel on this venv's Python, then checks what a reader would see: version 1
served, then version 2 after the hot swap, a BLESSED canary with its plots, the refused model.
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "serving_chain.ipynb"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cell(nb, tag: str):
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def _text(cell) -> str:
    """Returns everything a reader sees as text in a cell's outputs (stdout, reprs, errors)."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append("\n".join(output.traceback))
    return "\n".join(parts)


def test_committed_notebook_is_valid_and_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code_cells) > 10
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, f"cells {dirty} have outputs: strip them before committing"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch) -> str:
    """A `python3` kernelspec running this interpreter (the venv's), found first via JUPYTER_PATH.

    TMPDIR points into tmp_path, so the notebook's temporary working directory goes there even
    if a cell fails before the notebook removes it.
    """
    from ipykernel.kernelspec import install

    prefix = tmp_path / "jupyter-prefix"
    install(kernel_name="python3", prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    kernel_tmp = tmp_path / "kernel-tmp"
    kernel_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))
    return "python3"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_notebook_runs_the_chain_and_shows_the_hot_swap_and_the_canary(venv_kernel, tmp_path):
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    spec = KernelSpecManager().get_kernel_spec(venv_kernel)
    assert spec.argv[0] == sys.executable

    nb = nbformat.read(NOTEBOOK, as_version=4)
    before = set(NOTEBOOK.parent.iterdir())
    started = time.monotonic()
    NotebookClient(
        nb,
        kernel_name=venv_kernel,
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()  # raises CellExecutionError, with the failing cell's traceback, on any error
    seconds = time.monotonic() - started
    print(f"notebook executed in {seconds:.0f} s")

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "ename" in o]
    assert not errors

    # Version 1 served after the first run, version 2 after the second (the hot swap).
    assert "served version: 1" in _text(_cell(nb, "served-before"))
    after = _text(_cell(nb, "served-after"))
    assert "served version: 2" in after
    assert "versions on the volume: [1, 2]" in after
    assert "AVAILABLE" in after

    # The model without body_mass_g is refused, and the report says why.
    refusal = _text(_cell(nb, "refusal"))
    assert "blessed: False" in refusal
    assert "body_mass_g" in refusal

    # The warmup file: 50 predict records for each of the two signatures.
    warmup = _text(_cell(nb, "warmup"))
    assert "100 records" in warmup
    assert "serving_default" in warmup and "predict_features" in warmup

    # The canary of the second run (candidate vs baseline) blessed the model, with its plots.
    assert "verdict: BLESSED" in _text(_cell(nb, "canary-verdict"))
    images = [
        base64.b64decode(o.data["image/png"])
        for o in _cell(nb, "canary-plots").outputs
        if "image/png" in o.get("data", {})
    ]
    assert len(images) >= 3, "expected latency, latency-over-time and agreement plots"
    assert all(image.startswith(PNG_MAGIC) for image in images)

    # The server was stopped and the working directory removed; nothing was left beside it.
    assert "Server stopped" in _text(_cell(nb, "stop"))
    assert not list((tmp_path / "kernel-tmp").glob("serving-chain-*"))
    assert set(NOTEBOOK.parent.iterdir()) == before


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_failing_cell_stops_the_notebooks_model_server(venv_kernel):
    """The notebook's server cell, on a planted model, then a failing cell: the port closes."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell

    committed = nbformat.read(NOTEBOOK, as_version=4)
    nb = nbformat.v4.new_notebook(metadata=committed.metadata)
    nb.cells = [
        _cell(committed, "setup"),
        new_code_cell(
            "from tfx_serving_ext.testing.half_plus_two import build_half_plus_two\n"
            "build_half_plus_two(SERVING_DIR / '1')"
        ),
        _cell(committed, "served-before"),
        new_code_cell("raise RuntimeError('a cell fails')"),
        new_code_cell(
            "import socket\n"
            "host, port = server.grpc_address.rsplit(':', 1)\n"
            "try:\n"
            "    socket.create_connection((host, int(port)), timeout=2).close()\n"
            "    print('still listening')\n"
            "except ConnectionRefusedError:\n"
            "    print('port closed')\n"
            "shutil.rmtree(WORKDIR)"
        ),
    ]
    NotebookClient(
        nb,
        kernel_name=venv_kernel,
        timeout=180,
        allow_errors=True,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()

    assert "served version: 1" in _text(nb.cells[2])
    failing = _text(nb.cells[3])
    assert "a cell fails" in failing
    assert "A cell failed: stopping the model server." in failing
    assert _text(nb.cells[4]).strip() == "port closed"
