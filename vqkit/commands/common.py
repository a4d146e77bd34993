"""What every command shares: the ``--set`` option, the arguments of the commands that start a run
(``vqkit train``, ``vqkit pretrain-encoder``), and turning user errors into one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from vqkit.errors import VQKitError


def add_overrides_argument(parser: argparse.ArgumentParser,
                           help: str = "override a config value, e.g. --set train.lr=1e-4 (repeatable)") -> None:
    """The ``--set KEY=VALUE`` option of every config-driven command (values are parsed as YAML)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_run_arguments(parser: argparse.ArgumentParser, *, set_example: str, deepspeed_example: str,
                      config_help: str = "experiment YAML (see configs/)") -> None:
    """``--config``, ``--set``, ``--output-dir``, ``--resume``, ``--deepspeed``, ``--no-progress`` of a command
    that starts (or resumes) a run, and the ``--local_rank`` the deepspeed launcher appends (accelerate
    reads LOCAL_RANK from the environment instead)."""
    parser.add_argument("--config", required=True, help=config_help)
    add_overrides_argument(parser, f"override a config value, e.g. --set {set_example} (repeatable)")
    parser.add_argument("--output-dir", help="run directory (train.output_dir)")
    parser.add_argument("--resume", help="'auto' (newest complete checkpoint of the run dir) or a checkpoint folder")
    parser.add_argument("--deepspeed", help=f"DeepSpeed JSON, e.g. {deepspeed_example} (train.deepspeed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


def load_run_config(args: argparse.Namespace):
    """The config of a run command: ``--config`` with ``--set``, ``--output-dir`` and ``--deepspeed`` applied."""
    from vqkit.config import load_config

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"train.output_dir={args.output_dir}")
    if args.deepspeed:
        overrides.append(f"train.deepspeed={args.deepspeed}")
    return load_config(args.config, overrides)


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
