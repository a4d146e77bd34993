"""``vqkit monitor RUN [--watch]``: where a run stands, from its files alone (see :mod:`vqkit.tools.monitor`)."""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from vqkit.tools.monitor import format_status, run_status

    parser = argparse.ArgumentParser(prog="vqkit monitor", description="Progress of a training run from its logs.")
    parser.add_argument("run_dir", help="run directory (train.output_dir)")
    parser.add_argument("--watch", action="store_true", help="refresh until the run finishes (Ctrl-C to stop)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between refreshes with --watch")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    args = parser.parse_args(argv)
    while True:
        status = run_status(args.run_dir)
        text = json.dumps(status) if args.json else format_status(status)
        if args.watch and sys.stdout.isatty():
            print("\033[2J\033[H", end="")
        print(text, flush=True)
        if not args.watch or status["finished"] or status["failed"]:
            return 0
        time.sleep(args.interval)
