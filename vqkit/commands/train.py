"""``vqkit-train`` / ``vqkit train`` / ``python -m vqkit.train``: parse arguments, call :func:`vqkit.train.run`."""

from __future__ import annotations

import argparse

from vqkit.commands.common import add_overrides_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqkit-train",
        description="Train a vqkit model. Works unchanged under torchrun, accelerate launch and deepspeed.",
        epilog="example: vqkit-train --config configs/demo.yaml --set train.max_steps=100 --output-dir runs/try",
    )
    parser.add_argument("--config", required=True, help="experiment YAML (see configs/)")
    add_overrides_argument(parser, "override a config value, e.g. --set train.lr=1e-4 (repeatable)")
    parser.add_argument("--output-dir", help="run directory (train.output_dir)")
    parser.add_argument("--resume", help="'auto' (newest complete checkpoint of the run dir) or a checkpoint folder")
    parser.add_argument("--deepspeed", help="DeepSpeed JSON, e.g. configs/deepspeed/zero3.json (train.deepspeed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    # The deepspeed launcher appends --local_rank; accelerate reads LOCAL_RANK from the environment.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vqkit.config import load_config
    from vqkit.train import run

    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"train.output_dir={args.output_dir}")
    if args.deepspeed:
        overrides.append(f"train.deepspeed={args.deepspeed}")
    cfg = load_config(args.config, overrides)
    if cfg.model.llm.gradient_checkpointing == "auto":  # the memory plan decides for this GPU (and says why)
        from vqkit.tools.checkpointing import resolve_gradient_checkpointing

        cfg, why = resolve_gradient_checkpointing(cfg)
        print(f"model.llm.gradient_checkpointing: {cfg.model.llm.gradient_checkpointing} ({why})", flush=True)
    result = run(cfg, resume=args.resume, progress=not args.no_progress)
    return 130 if result.interrupted else 0
