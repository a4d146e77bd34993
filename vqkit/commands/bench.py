"""``vqkit bench --config FILE [--json]``: performance figures of a config (see :mod:`vqkit.tools.bench`)."""

from __future__ import annotations

import argparse
import json

from vqkit.commands.common import add_overrides_argument
from vqkit.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    from vqkit.config import load_config
    from vqkit.tools.bench import GPU_PEAK_BF16, format_table, run_bench

    parser = argparse.ArgumentParser(
        prog="vqkit bench",
        description="DataLoader throughput, training step breakdown with and without the feature cache, "
                    "tokens/s, peak memory and (on a GPU) MFU for a config.",
        epilog="example: vqkit bench --config configs/demo.yaml --json")
    parser.add_argument("--config", required=True, help="experiment YAML")
    add_overrides_argument(parser, "override a config value (repeatable)")
    parser.add_argument("--data", help="synthetic data folder (train.jsonl, val.jsonl, tokenizer/) to use instead")
    parser.add_argument("--cache", help="feature cache folder (built when missing); default data.feature_cache "
                                        "or a temporary one")
    parser.add_argument("--batch-size", type=int, help="per-step batch (default train.batch_size_per_gpu)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--data-batches", type=int, default=8, help="batches timed per DataLoader")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--peak-tflops", type=float, help="GPU dense bf16 peak for MFU (default: known cards)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.data_batches < 1:
        raise ConfigError("--steps and --data-batches must be >= 1, --warmup >= 0")
    cfg = load_config(args.config, args.overrides)
    if args.peak_tflops:
        GPU_PEAK_BF16.clear()
        GPU_PEAK_BF16[""] = args.peak_tflops * 1e12
    result = run_bench(cfg, steps=args.steps, warmup=args.warmup, data_batches=args.data_batches,
                       batch_size=args.batch_size, data_dir=args.data, device=args.device, cache_dir=args.cache,
                       progress=not args.json)
    result["config"] = args.config
    print(json.dumps(result) if args.json else format_table(result))
    return 0
