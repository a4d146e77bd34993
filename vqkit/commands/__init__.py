"""The command line: ``vqkit COMMAND ...`` dispatches to ``vqkit.commands.<command>.main(argv)``.

Each command module only parses arguments and calls the library; library modules have no ``main``.
Known errors (:class:`vqkit.errors.VQKitError`, a missing file) are printed as one line and exit with
status 2 (:func:`vqkit.commands.common.run_main`). ``python -m vqkit COMMAND`` is the same program, also
under a launcher: ``torchrun --nproc_per_node 8 -m vqkit eval ...``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vqkit.commands.common import run_main

# name -> (module with main(argv), one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("vqkit.commands.synth", "generate the synthetic posed-room benchmark"),
    "train": ("vqkit.commands.train", "train a model (same as vqkit-train)"),
    "eval": ("vqkit.commands.eval", "predictions and metrics for a model on a record file"),
    "ask": ("vqkit.commands.ask", "answer a question about a set of photos"),
    "prep": ("vqkit.commands.prep", "convert ScanQA / SQA3D / ARKitScenes to vqkit records"),
    "cache-features": ("vqkit.commands.cache_features", "encode every view set once and store the features"),
    "bench": ("vqkit.commands.bench", "measure data, step and memory performance"),
    "plan": ("vqkit.commands.plan", "memory plan and batch size for a config on N GPUs"),
    "monitor": ("vqkit.commands.monitor", "progress of a run from its logs"),
    "demo": ("vqkit.commands.demo", "synthetic data -> train -> eval vs blind baseline, end to end on CPU"),
    "pretrain-encoder": ("vqkit.commands.pretrain_encoder", "train VGGT's aggregator with camera and depth heads"),
    "eval-geometry": ("vqkit.commands.eval_geometry", "pose and depth errors of a VGGT's heads vs untrained"),
    "probe-features": ("vqkit.commands.probe_features",
                       "how well an encoder's features tell the synthetic objects' colours"),
}


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
        from vqkit.version import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"vqkit: error: unknown command '{name}'{hint} (see vqkit --help)", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return run_main(module.main, rest, f"vqkit {name}")


def train_entry() -> int:
    """Console script ``vqkit-train`` (same as ``vqkit train`` and ``python -m vqkit.train``)."""
    return main(["train", *sys.argv[1:]])

