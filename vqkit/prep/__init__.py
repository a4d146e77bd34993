"""``vqkit prep scanqa|sqa3d|arkit``: converters from the official datasets to vqkit records.

Each converter lives in its own module with its own ``main(argv)``; this one dispatches on the first
argument. See ``docs/real_data.md`` for where to get the data, the commands and the output layout.
"""

from __future__ import annotations

import importlib
import sys

CONVERTERS = {
    "scanqa": ("vqkit.prep.scanqa", "ScanQA questions + ScanNet frames"),
    "sqa3d": ("vqkit.prep.sqa3d", "SQA3D situated questions + ScanNet frames"),
    "arkit": ("vqkit.prep.arkit", "ARKitScenes 3DOD scans -> Stage 2 RoomPlan records"),
}

USAGE = "usage: vqkit prep {scanqa,sqa3d,arkit} [options]   (vqkit prep NAME --help for its options)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        for name, (_, what) in CONVERTERS.items():
            print(f"  {name:8s} {what}")
        return 0 if argv else 2
    name = argv[0]
    if name not in CONVERTERS:
        from vqkit.errors import ConfigError

        raise ConfigError(f"unknown dataset '{name}'; choose from {', '.join(CONVERTERS)}")
    return importlib.import_module(CONVERTERS[name][0]).main(argv[1:])


if __name__ == "__main__":
    from vqkit.cli import run_main

    sys.exit(run_main(main, None, "vqkit prep"))
