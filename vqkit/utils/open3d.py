"""Import open3d on machines without a system libusb.

open3d's wheel links against libusb-1.0 (for RealSense) even on the CPU build; headless servers
often lack it. The ``libusb-package`` wheel ships the library, so we preload it before importing.
"""

from __future__ import annotations

import ctypes
import functools


@functools.lru_cache(maxsize=1)
def import_open3d():
    """Return the open3d module, preloading libusb from ``libusb-package`` when the system has none."""
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
