"""What every command shares: the ``--set`` option and turning user errors into one line."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from vqkit.errors import VQKitError


def add_overrides_argument(parser: argparse.ArgumentParser,
                           help: str = "override a config value, e.g. --set train.lr=1e-4 (repeatable)") -> None:
    """The ``--set KEY=VALUE`` option of every config-driven command (values are parsed as YAML)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None, prog: str) -> int:
    """Run a command's main, turning user errors into a one-line message and exit status 2."""
    try:
        return int(main(argv) or 0)
    except (VQKitError, FileNotFoundError, NotADirectoryError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
