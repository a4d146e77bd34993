"""Each training source's share of the samples a run's first steps draw, counted from the training sampler.

    .venv/bin/python scripts/mix_shares.py --config configs/demo.yaml \
        --set "data.train=[{path: data/synth/train.jsonl, weight: 0.7}, {path: conv/llava_2d.json, weight: 0.3}]"

Builds the training set as ``vqkit train`` does (no images are read), orders epoch 0 as rank 0 of one
process does, and prints the shares over the first ``--steps`` steps (samples per step: the per-GPU batch
times the accumulation, or train.global_batch_size).
"""

from __future__ import annotations

import argparse

import numpy as np

from vqkit.config import load_config
from vqkit.data.dataset import build_dataset
from vqkit.data.mixing import MixedDataset, ShardedSampler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", type=int, nargs="+", default=[20, 100, 1000])
    args = p.parse_args()
    cfg = load_config(args.config, args.set)
    dataset = build_dataset(cfg.data, "train", geometry_cfg=cfg.model.geometry, seed=cfg.train.seed)
    if not isinstance(dataset, MixedDataset) or dataset.weights is None:
        raise SystemExit(f"{args.config}: data.train is one source or a mix by rates; nothing to share")
    strata = dataset.epoch_plan(0)[0]
    sampler = ShardedSampler(len(dataset), shuffle=True, seed=cfg.train.seed, drop_last=False, epoch=0,
                             strata=strata)
    order = np.asarray([index for _, index, _ in sampler])
    per_step = cfg.train.global_batch(1)  # one process: train.global_batch_size, or batch x grad_accum
    names = [src.name or src.path for src in cfg.data.train]
    wanted = np.asarray(dataset.weights) / sum(dataset.weights)
    print("weights: " + ", ".join(f"{n} {100 * w:.2f}%" for n, w in zip(names, wanted, strict=True)))
    for steps in args.steps:
        drawn = strata[order[: steps * per_step]]
        shares = ", ".join(f"{n} {100 * np.mean(drawn == k):.2f}%" for k, n in enumerate(names))
        print(f"first {steps} steps ({len(drawn)} samples): {shares}")


if __name__ == "__main__":
    main()
