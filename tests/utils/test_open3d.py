"""vqkit.utils.open3d: importing open3d opens no frontend comm and prints nothing, in a fresh process
(open3d and dash import once per process)."""

from __future__ import annotations

import subprocess
import sys

# A kernel replaces comm.create_comm with its own factory; record what is created through it.
PROBE = r"""
import contextlib, io, os, sys
import comm

opened = []
def kernel_factory(*args, **kwargs):
    opened.append(kwargs.get("target_name"))
    return comm.DummyComm(*args, **kwargs)
comm.create_comm = kernel_factory

out = io.StringIO()
with contextlib.redirect_stdout(out):
    from vqkit.utils.open3d import import_open3d
    o3d = import_open3d()
    o3d.geometry.PointCloud()
assert "dash" in sys.modules, "open3d imports dash; the test would prove nothing without it"
assert opened == [], f"comms opened through the kernel's factory: {opened}"
assert comm.create_comm is kernel_factory, "the kernel's comm factory was not restored"
assert os.environ["OPEN3D_DISABLE_WEB_VISUALIZER"] == "true"
assert out.getvalue() == "", f"printed: {out.getvalue()!r}"
import dash  # a later import of dash by the user still works
print("clean")
"""


def test_import_open3d_opens_no_comm_and_prints_nothing():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "clean"


def test_a_users_web_visualizer_choice_is_kept():
    probe = ("import os; os.environ['OPEN3D_DISABLE_WEB_VISUALIZER'] = 'false'\n"
             "from vqkit.utils.open3d import import_open3d; import_open3d()\n"
             "print(os.environ['OPEN3D_DISABLE_WEB_VISUALIZER'])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "false"
