"""``vqkit-train`` / ``vqkit train`` / ``python -m vqkit.train``: parse arguments, call :func:`vqkit.train.run`."""

from __future__ import annotations

import argparse

from vqkit.commands.common import add_run_arguments, load_run_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqkit-train",
        description="Train a vqkit model. Works unchanged under torchrun, accelerate launch and deepspeed.",
        epilog="example: vqkit-train --config configs/first_demo.yaml --set train.max_steps=100 --output-dir runs/try",
    )
    add_run_arguments(parser, set_example="train.lr=1e-4", deepspeed_example="configs/deepspeed/zero3.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    from vqkit.train import run

    args = build_parser().parse_args(argv)
    cfg = load_run_config(args)
    if cfg.model.llm.gradient_checkpointing == "auto":  # the memory plan decides for this GPU (and says why)
        from vqkit.tools.checkpointing import resolve_gradient_checkpointing

        cfg, why = resolve_gradient_checkpointing(cfg)
        print(f"model.llm.gradient_checkpointing: {cfg.model.llm.gradient_checkpointing} ({why})", flush=True)
    result = run(cfg, resume=args.resume, progress=not args.no_progress)
    return 130 if result.interrupted else 0
