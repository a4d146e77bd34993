"""``vqkit probe-features``: what a frozen aggregator's features tell about the synthetic rooms' objects."""

from __future__ import annotations

import argparse

from vqkit.commands.common import add_overrides_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqkit probe-features",
        description="Train a small probe on the config encoder's features of the synthetic rooms to name "
                    "every object category's colour or say it is absent; print its accuracy on the "
                    "validation rooms. A few CPU-minutes: screen an encoder before training a model on it.",
        epilog="example: vqkit probe-features --config configs/demo.yaml "
               "--set model.encoder.weights=runs/demo_encoder/encoder/model.safetensors")
    parser.add_argument("--config", required=True, help="experiment YAML (its model.encoder and data.image_size)")
    add_overrides_argument(parser, "override a config value (repeatable)")
    parser.add_argument("--data", default="data/synth", help="synthetic rooms of `vqkit synth` (default data/synth)")
    parser.add_argument("--cache", default=None,
                        help="feature cache folder (default DATA/feature_caches/<key of the encoder>)")
    parser.add_argument("--epochs", type=int, default=30, help="passes over the training rooms (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe's init and data order")
    parser.add_argument("--out", default=None, help="also write the scores to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    from pathlib import Path

    from vqkit.config import load_config
    from vqkit.errors import ConfigError
    from vqkit.tools.feature_probe import format_scores, probe_features
    from vqkit.utils.files import write_json_atomic

    args = build_parser().parse_args(argv)
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
    if args.out and Path(args.out).exists() and not args.overwrite:
        raise ConfigError(f"{args.out} exists; pass --overwrite to replace it or choose another --out")
    cfg = load_config(args.config, args.overrides)
    scores = probe_features(cfg, args.data, cache_dir=args.cache, epochs=args.epochs, seed=args.seed,
                            progress=not args.no_progress)
    scores["config"], scores["overrides"] = args.config, args.overrides
    print(format_scores(scores))
    if args.out:
        write_json_atomic(args.out, scores)
        print(f"scores written to {args.out}")
    return 0
