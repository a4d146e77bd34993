"""``vqkit pretrain-encoder``: parse arguments, call :func:`vqkit.train.encoder_pretrain.pretrain_encoder`."""

from __future__ import annotations

import argparse

from vqkit.commands.common import add_run_arguments, load_run_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqkit pretrain-encoder",
        description="Train VGGT (the config's model.encoder aggregator with camera and depth heads) on records "
                    "with poses and depth maps, with VGGT's losses; writes RUN/encoder/model.safetensors in the "
                    "official layout (model.encoder.weights loads it). Run folder, checkpoints and --resume as "
                    "vqkit train; works under torchrun, accelerate launch and deepspeed.",
        epilog="examples:\n"
               "  vqkit pretrain-encoder --config configs/camera_depth_heads.yaml\n"
               "  vqkit eval-geometry --encoder runs/camera_depth_heads/encoder/model.safetensors "
               "--data data/synth/val.jsonl\n"
               "  vqkit train --config configs/first_demo.yaml "
               "--set model.encoder.weights=runs/camera_depth_heads/encoder/model.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser, set_example="train.max_steps=100", deepspeed_example="configs/deepspeed/zero2.json",
                      config_help="experiment YAML with an encoder_pretrain section (configs/camera_depth_heads.yaml)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from vqkit.train.encoder_pretrain import pretrain_encoder

    args = build_parser().parse_args(argv)
    cfg = load_run_config(args)
    result = pretrain_encoder(cfg, resume=args.resume, progress=not args.no_progress)
    return 130 if result.interrupted else 0
