"""``vqkit cache-features``: encode every view set once with the frozen aggregator and store the features."""

from __future__ import annotations

import argparse

from vqkit.commands.common import add_overrides_argument
from vqkit.data.feature_cache import DTYPES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqkit cache-features",
        description="Run the frozen aggregator once per unique (scene, view set) and store its features, "
                    "so training with data.feature_cache: DIR skips the encoder.",
        epilog="example: vqkit cache-features --config configs/first_demo.yaml --out data/synth/features "
               "&& vqkit-train --config configs/first_demo.yaml --set data.feature_cache=data/synth/features")
    parser.add_argument("--config", required=True, help="experiment YAML")
    parser.add_argument("--out", required=True, help="cache folder (index.json + shards)")
    add_overrides_argument(parser, "override a config value (repeatable)")
    parser.add_argument("--split", choices=["train", "val", "both"], default="both", help="which sources")
    parser.add_argument("--batch-size", type=int, default=16, help="view sets per encoder call")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float16", help="storage dtype")
    parser.add_argument("--workers", type=int, default=None, help="image decoding workers (default data.num_workers)")
    parser.add_argument("--shard-rows", type=int, default=8192, help="views per shard file")
    parser.add_argument("--overwrite", action="store_true", help="replace a cache built for another encoder/config")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    from vqkit.config import load_config
    from vqkit.tools.cache_writer import build_feature_cache, format_cache_summary, splits_with_sources
    from vqkit.utils import distributed

    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    splits = splits_with_sources(cfg, args.split, where=args.config)
    with distributed.process_group() as (rank, _):
        out = build_feature_cache(cfg, args.out, splits, batch_size=args.batch_size, dtype=args.dtype,
                                  overwrite=args.overwrite, shard_rows=args.shard_rows, num_workers=args.workers,
                                  progress=not args.no_progress)
        if rank == 0:
            print(format_cache_summary(out))
    return 0
