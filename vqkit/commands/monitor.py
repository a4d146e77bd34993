"""``vqkit monitor RUN [--watch]``: where a run stands, from its files alone (see :mod:`vqkit.tools.monitor`)."""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from vqkit.tools.monitor import exit_code, format_status, run_status

    parser = argparse.ArgumentParser(
        prog="vqkit monitor", description="Progress of a training run from its logs, its finished model and its "
                                          "evaluations; or what a model folder (RUN/final) is.",
        epilog="exit status: 0 for a run in progress or finished (or a model folder), 1 for a run whose last "
               "attempt failed, 2 for a folder that is neither a run nor a model")
    parser.add_argument("run_dir", help="run directory (train.output_dir), or a model folder (RUN/final)")
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
            return exit_code(status)
        time.sleep(args.interval)
