"""Import open3d quietly and without side effects on the notebook frontend.

Three things happen when open3d is imported that vqkit does not want:

- open3d's wheel links against libusb-1.0 (for RealSense) even on the CPU build; headless servers
  often lack it. The ``libusb-package`` wheel ships the library, so we preload it before importing.
- Inside a Jupyter kernel open3d switches its GUI to the WebRTC "WebVisualizer" and prints three
  lines saying so. vqkit only builds geometry and ray-casts; it never opens open3d's viewer, so it
  sets open3d's own switch ``OPEN3D_DISABLE_WEB_VISUALIZER=true`` unless the user chose a value.
- ``open3d.visualization`` imports ``dash`` (for ``draw_plotly_server``), and dash opens a ``dash``
  comm to the frontend as soon as it is imported in a kernel. Its handler lives in dash's JupyterLab
  source extension, which JupyterLab 4's prebuilt application does not contain (``make setup``
  removes the tarball so JupyterLab stops asking for a rebuild), so the browser logs "Exception opening
  new comm" for every kernel. dash is therefore imported once with the ``comm`` package's own
  frontend-less comm (``comm.DummyComm``): dash apps still run (``app.run()`` in a cell shows them
  inline); only dash's ``jupyter_mode="jupyterlab"`` tab, which needs that extension, is unavailable.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys


def _import_dash_without_frontend_comm() -> None:
    """Import dash (when installed) with ``comm.create_comm`` returning the comm package's
    frontend-less ``DummyComm``, then restore the kernel's comm factory. No-op once dash is imported."""
    if "dash" in sys.modules:
        return
    try:
        import comm
    except ImportError:
        return
    kernel_factory = comm.create_comm
    comm.create_comm = comm.DummyComm
    try:
        import dash  # noqa: F401  (open3d imports it next; this import is the one that opens the comm)
    except ImportError:
        pass
    finally:
        comm.create_comm = kernel_factory


@functools.lru_cache(maxsize=1)
def import_open3d():
    """Return the open3d module: no WebVisualizer banner, no dash comm, and libusb preloaded from
    ``libusb-package`` when the system has none."""
    os.environ.setdefault("OPEN3D_DISABLE_WEB_VISUALIZER", "true")
    _import_dash_without_frontend_comm()
    try:
        import open3d
    except ImportError as first_error:
        if "libusb" not in str(first_error):
            raise
        try:
            import libusb_package
        except ImportError:
            raise ImportError("open3d needs libusb-1.0: pip install libusb-package "
                              "(or apt-get install libusb-1.0-0)") from first_error
        ctypes.CDLL(str(libusb_package.get_library_path()), mode=ctypes.RTLD_GLOBAL)
        import open3d
    return open3d
