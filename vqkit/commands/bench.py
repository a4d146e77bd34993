"""``vqkit bench --config FILE [--json]``: performance figures of a config (see :mod:`vqkit.tools.bench`)."""

from __future__ import annotations

import argparse
import json

from vqkit.commands.common import add_overrides_argument
from vqkit.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    from vqkit.config import load_config
    from vqkit.tools.bench import ensure_data, run_bench, run_encoder_bench
    from vqkit.tools.bench_report import format_encoder, format_table
    from vqkit.tools.checkpointing import resolve_gradient_checkpointing

    parser = argparse.ArgumentParser(
        prog="vqkit bench",
        description="DataLoader throughput, training step breakdown with and without the feature cache, "
                    "model and hardware FLOPs per part with their utilisation of the card's bf16 peak (MFU), "
                    "the attention kernels, the padding share, the aggregator's 8 x 518 px forward, tokens/s "
                    "and peak memory for a config.",
        epilog="example: vqkit bench --config configs/first_demo.yaml --json")
    parser.add_argument("--config", required=True, help="experiment YAML")
    add_overrides_argument(parser, "override a config value (repeatable)")
    parser.add_argument("--data", help="synthetic data folder (train.jsonl, val.jsonl, tokenizer/) to use instead")
    parser.add_argument("--cache", help="feature cache folder (built when missing), used instead of the config's "
                                        "data.feature_cache; default data.feature_cache or a temporary one")
    parser.add_argument("--batch-size", type=int, help="per-step batch (default train.batch_size_per_gpu)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--data-batches", type=int, default=8, help="batches timed per DataLoader")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--peak-tflops", type=float,
                        help="dense bf16 peak for the utilisation figures (default: the GPU's, from a table)")
    parser.add_argument("--encoder-only", action="store_true",
                        help="only the aggregator's forward on 8 frames of 518 px (builds the encoder alone)")
    parser.add_argument("--encoder-repeats", type=int, default=5, help="timed aggregator forwards")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.data_batches < 1 or args.encoder_repeats < 1:
        raise ConfigError("--steps, --data-batches and --encoder-repeats must be >= 1, --warmup >= 0")
    cfg = load_config(args.config, args.overrides)
    if args.data:
        cfg, _ = ensure_data(cfg, args.data)
    if args.encoder_only:
        result = run_encoder_bench(cfg, args.device, repeats=args.encoder_repeats, warmup=args.warmup,
                                   peak_tflops=args.peak_tflops)
        result["config"] = args.config
        print(json.dumps(result) if args.json else format_encoder(result))
        return 0
    cfg, decided_by = resolve_gradient_checkpointing(cfg, gpus=1, batch_size=args.batch_size, device=args.device)
    result = run_bench(cfg, steps=args.steps, warmup=args.warmup, data_batches=args.data_batches,
                       batch_size=args.batch_size, device=args.device, cache_dir=args.cache,
                       progress=not args.json, peak_tflops=args.peak_tflops, encoder_repeats=args.encoder_repeats)
    result["config"] = args.config
    result["gradient_checkpointing_decided_by"] = decided_by
    print(json.dumps(result) if args.json else format_table(result))
    return 0
