"""Notebook 04 in a real browser: JupyterLab from this environment, Debian's chromium driven by npm's
playwright-core (tests/browser/package.json; never a browser download).

Notebooks 01 and 03 run first with papermill in a temporary folder (the data and the 20-step run that
04 evaluates); JupyterLab then opens 04 there, runs all its cells, and the answer viewer is used as a
person would: next, next until another room, a qtype filter. The first open must be clean: no "Build
Recommended" dialog, no pop-up (JupyterLab's offer to fetch news among them), no console error (dash's
"Exception opening new comm" among them), no widget error, no open3d / DeepSpeed banner in the outputs;
and after the viewer's steps JupyterLab's Log Console, where the kernel's output outside any cell goes
(a figure a widget step left open, a warning), is empty. The legend colours of notebook 01's pose figure
are all different. The screenshots are left in the test's tmp folder.

Setup: ``apt-get install chromium`` and ``npm ci --prefix tests/browser``. ``.ci/run`` does both, and CI
(``CI`` set) runs this test (marked ``ci``) and fails it when either is missing; elsewhere it is skipped
with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.ci]  # about a minute; CI runs it

HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
KERNEL = "vqkit"
BANNERS = ("WebVisualizer", "WebRTC", "Setting accelerator", "Traceback")


def _skip_or_fail(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (.ci/run installs chromium and playwright-core)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pose_legend(notebook: dict) -> dict[str, str]:
    """Legend entry -> line colour of the interactive pose figure in an executed notebook 01."""
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            figure = output.get("data", {}).get("application/vnd.plotly.v1+json")
            if figure:
                return {t["name"]: t["line"]["color"] for t in figure["data"]
                        if t.get("showlegend", True) and t.get("mode") == "lines"}
    raise AssertionError("notebook 01 drew no interactive pose figure")


@pytest.fixture
def notebook_04(tmp_path) -> Path:
    """Notebooks 01 and 03 executed in ``tmp_path`` (its data and run), and 04 with ``work_dir``
    pointing there, not executed: what a person opens."""
    import papermill

    configs = REPO / "configs"
    for name, extra in (("01_data_inspection", {}),
                        ("03_debug_run", {"config_path": str(configs / "first_demo.yaml")})):
        papermill.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.out.ipynb"),
                                   kernel_name=KERNEL, parameters={"work_dir": str(tmp_path), **extra},
                                   cwd=str(tmp_path), progress_bar=False)
    target = tmp_path / "04_evaluation.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "04_evaluation.ipynb"), str(target), kernel_name=KERNEL,
                               parameters={"work_dir": str(tmp_path)}, prepare_only=True)
    return target


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab serving ``tmp_path`` on a free localhost port with no token; this environment's
    own settings (sys-prefix), none of the user's. Yields the base URL."""
    port = _free_port()
    home = tmp_path / "jupyter"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "HF_HUB_OFFLINE": "1"}
    env.pop("JUPYTERLAB_DIR", None)
    args = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={tmp_path}",
            "--LabApp.expose_app_in_browser=True"] + (["--allow-root"] if os.geteuid() == 0 else [])
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, (tmp_path / "jupyterlab.log").read_text()
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def browser_tools():
    node = shutil.which("node")
    if not CHROMIUM.is_file() or node is None:
        _skip_or_fail(f"needs {CHROMIUM} (apt-get install chromium) and node")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        _skip_or_fail("needs playwright-core: npm ci --prefix tests/browser")
    return node


def test_notebook_04_in_jupyterlab(browser_tools, notebook_04, jupyterlab, tmp_path):
    screenshot = tmp_path / "answer_viewer.png"
    result = subprocess.run([browser_tools, str(HERE / "viewer_in_jupyterlab.js"),
                             f"{jupyterlab}/lab/tree/{notebook_04.name}", str(screenshot), "600000"],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.stdout.strip(), result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert "failure" not in seen, f"{seen.get('failure')}\ncell errors: {seen.get('errors')}\n{seen.get('console')}"

    # A clean first open: no build dialog, no console error (no comm without a handler), no widget error.
    assert seen["dialogs"] == []
    errors = [m["text"] for m in seen["console"] if m["type"] == "error"]
    assert errors == [], errors
    assert seen["pageErrors"] == [] and seen["widgetErrors"] == 0
    assert seen["toasts"] == [], seen["toasts"]  # no news offer (make setup turns it off), nothing else
    printed = "\n".join(seen["outputText"])
    assert not [b for b in BANNERS if b in printed], printed

    # The viewer: the slider and the counter agree; next shows the next example; stepping on reaches
    # another room with other pictures; a filter changes what is shown.
    first, second, other, settled = seen["first"], seen["second"], seen["otherRoom"], seen["settled"]
    shown = "of 16"  # the notebook's 16 questions (a Stage 1 model is asked for no layouts)
    assert (first["readout"], first["count"]) == ("1", shown)
    assert (second["readout"], second["count"]) == ("2", shown) and second["html"] != first["html"]
    scene = first["html"].split()[0].split("_")[0]
    assert other["html"].split()[0].split("_")[0] != scene, other["html"]
    assert other["pictureHash"] != first["pictureHash"]
    # After the filter (and anything the browser sent back): its first example, of fewer.
    n = int(settled["count"].split()[-1])
    assert settled["readout"] == "1" and 1 <= n < 16 and f"qtype {seen['qtypeChoice']}" in settled["html"]
    assert settled["html"] == seen["filtered"]["html"]
    assert screenshot.stat().st_size > 10_000

    # Nothing reached JupyterLab's Log Console (no figure a widget step left open, no warning); the
    # probe's control, code run outside any cell, shows there.
    assert seen["logConsole"] == [] and seen["logConsoleImages"] == 0, seen["logConsole"]
    assert any("log console probe" in entry for entry in seen["logConsoleControl"]), seen["logConsoleControl"]

    # Notebook 01's pose figure: every legend entry (views, element kinds, object categories) in a
    # colour of its own.
    legend = _pose_legend(json.loads((tmp_path / "01_data_inspection.out.ipynb").read_text()))
    assert {"view 0", "wall"} <= set(legend) and len(legend) >= 6, legend
    assert len(set(legend.values())) == len(legend), legend
