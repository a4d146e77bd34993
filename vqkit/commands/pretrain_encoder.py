"""``vqkit pretrain-encoder``: parse arguments, call :func:`vqkit.train.encoder_pretrain.pretrain_encoder`."""

from __future__ import annotations

import argparse

from vqkit.commands.common import add_overrides_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqkit pretrain-encoder",
        description="Train VGGT (the config's model.encoder aggregator with camera and depth heads) on records "
                    "with poses and depth maps, with VGGT's losses; writes RUN/encoder/model.safetensors in the "
                    "official layout (model.encoder.weights loads it). Run folder, checkpoints and --resume as "
                    "vqkit train; works under torchrun, accelerate launch and deepspeed.",
        epilog="examples:\n"
               "  vqkit pretrain-encoder --config configs/encoder_pretrain_demo.yaml\n"
               "  vqkit eval-geometry --encoder runs/encoder_pretrain_demo/encoder/model.safetensors "
               "--data data/synth/val.jsonl\n"
               "  vqkit train --config configs/demo.yaml "
               "--set model.encoder.weights=runs/encoder_pretrain_demo/encoder/model.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="experiment YAML with an encoder_pretrain section "
                                                        "(configs/encoder_pretrain_demo.yaml)")
    add_overrides_argument(parser, "override a config value, e.g. --set train.max_steps=100 (repeatable)")
    parser.add_argument("--output-dir", help="run directory (train.output_dir)")
    parser.add_argument("--resume", help="'auto' (newest complete checkpoint of the run dir) or a checkpoint folder")
    parser.add_argument("--deepspeed", help="DeepSpeed JSON, e.g. configs/deepspeed/zero2.json (train.deepspeed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vqkit.config import load_config
    from vqkit.train.encoder_pretrain import pretrain_encoder

    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"train.output_dir={args.output_dir}")
    if args.deepspeed:
        overrides.append(f"train.deepspeed={args.deepspeed}")
    cfg = load_config(args.config, overrides)
    result = pretrain_encoder(cfg, resume=args.resume, progress=not args.no_progress)
    return 130 if result.interrupted else 0
