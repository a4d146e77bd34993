"""The ``vqkit`` command: a thin dispatcher to each stage's own ``main(argv)``.

Each subcommand lives in the module of its pipeline stage and parses its own arguments, so
``vqkit synth ...`` and ``python -m vqkit.data.synth ...`` are the same program. Known errors
(:class:`vqkit.errors.VQKitError`, a missing file) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Callable

# name -> (module with main(argv), one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("vqkit.data.synth", "generate the synthetic posed-room benchmark"),
    "train": ("vqkit.train", "train a model (same as vqkit-train)"),
    "eval": ("vqkit.eval.run", "predictions and metrics for a model on a record file"),
    "ask": ("vqkit.eval.ask", "answer a question about a set of photos"),
    "prep": ("vqkit.prep", "convert ScanQA / SQA3D / ARKitScenes to vqkit records"),
    "cache-features": ("vqkit.cache", "encode every view set once and store the features"),
    "bench": ("vqkit.bench", "measure data, step and memory performance"),
    "plan": ("vqkit.plan", "memory plan and batch size for a config on N GPUs"),
    "monitor": ("vqkit.monitor", "progress of a run from its logs"),
    "demo": ("vqkit.demo", "synthetic data -> train -> eval vs blind baseline, end to end on CPU"),
}


def add_overrides_argument(parser: argparse.ArgumentParser,
                           help: str = "override a config value, e.g. --set train.lr=1e-4 (repeatable)") -> None:
    """The ``--set KEY=VALUE`` option of every config-driven command (values are parsed as YAML)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None, prog: str) -> int:
    """Run a command's main, turning user errors into a one-line message and exit status 2."""
    from vqkit.errors import VQKitError

    try:
        return int(main(argv) or 0)
    except (VQKitError, FileNotFoundError, NotADirectoryError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqkit",
        description="vqkit: a notebook-first kit for 3D-aware vision-language models of indoor scenes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'vqkit COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, description) in COMMANDS.items():
        sub.add_parser(name, help=description, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] == "--version":
        from vqkit import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"vqkit: error: unknown command '{name}'{hint} (see vqkit --help)", file=sys.stderr)
        return 2
    module_name = COMMANDS[name][0]
    if importlib.util.find_spec(module_name) is None:
        print(f"vqkit {name}: not built yet (module {module_name} does not exist in this version)",
              file=sys.stderr)
        return 2
    module = importlib.import_module(module_name)
    return run_main(module.main, rest, f"vqkit {name}")


def train_entry() -> int:
    """Console script ``vqkit-train`` (same as ``vqkit train`` and ``python -m vqkit.train``)."""
    return main(["train", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
