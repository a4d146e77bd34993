"""Mixing sources: VG-LLM's name%rate, weights honoured in every stretch of an epoch, the per-source table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_corpus

from vqkit.config import config_from_dict
from vqkit.data.dataset import build_dataloader, build_dataset
from vqkit.data.mixing import MixedDataset, ShardedSampler, describe_sources, source_table, stratified_order
from vqkit.errors import ConfigError


def test_stratified_order_spreads_each_stratum_evenly():
    strata = np.repeat([0, 1, 2], [600, 300, 100])
    order = stratified_order(strata, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(1000))
    for m in (16, 50, 320, 999):
        counts = np.bincount(strata[order[:m]], minlength=3)
        np.testing.assert_allclose(counts, m * np.array([0.6, 0.3, 0.1]), atol=2)


def test_weighted_mix_holds_its_shares_in_the_first_steps(tmp_path):
    a = make_corpus(tmp_path / "a", n=30, views=1)
    b = make_corpus(tmp_path / "b", n=10, views=1, seed=1)
    cfg = config_from_dict({"data": {"train": [{"path": str(a.path), "weight": 0.75, "name": "rooms"},
                                               {"path": str(b.path), "weight": 0.25, "name": "photos"}],
                                     "num_views": 1, "image_size": 28}})
    dataset = build_dataset(cfg.data, "train")
    assert isinstance(dataset, MixedDataset) and dataset.counts() == [30, 10]
    sampler = ShardedSampler(len(dataset), strata=dataset.epoch_plan(0)[0], seed=3)
    sources = [dataset.locate(i, 0)[0] for _, i, _ in sampler]
    for m in (8, 20, 40):
        assert abs(sources[:m].count(1) - m / 4) <= 1.5
    loader = build_dataloader(cfg, "train", None, batch_size=4, shuffle=True, dataset=dataset,
                              collate_fn=lambda samples: [s["meta"]["source_name"] for s in samples])
    assert isinstance(loader.sampler, ShardedSampler) and loader.sampler.strata is not None
    rows = source_table(dataset)
    assert [(r["name"], r["per_epoch"], round(r["share"], 2)) for r in rows] == [("rooms", 30, 0.75),
                                                                                   ("photos", 10, 0.25)]
    assert "data source photos: 10 samples -> 10 per epoch (25.0%)" in describe_sources(dataset)


def test_rates_take_a_share_of_each_source(tmp_path):
    a = make_corpus(tmp_path / "a", n=20, views=1)
    b = make_corpus(tmp_path / "b", n=8, views=1, seed=1)
    cfg = config_from_dict({"data": {"train": [f"{a.path}%25", {"path": str(b.path), "rate": 150}],
                                     "num_views": 1, "image_size": 28}})
    dataset = build_dataset(cfg.data, "train")
    assert dataset.counts() == [5, 12]  # a quarter of 20; 8 once and half of them again
    epoch0 = dataset.epoch_plan(0)[1][:5].tolist()
    assert epoch0 != dataset.epoch_plan(1)[1][:5].tolist()  # drawn anew each epoch
    with pytest.raises(ConfigError, match="mixes weights and rates"):
        bad = config_from_dict({"data": {"train": [f"{a.path}%25", {"path": str(b.path), "weight": 2}],
                                         "num_views": 1, "image_size": 28}})
        build_dataset(bad.data, "train")
    with pytest.raises(ConfigError, match="a %N suffix or rate:, not both"):
        config_from_dict({"data": {"train": [{"path": f"{a.path}%25", "rate": 30}]}})


def test_mix_shares_script_counts_what_the_sampler_draws(synth_dir, tmp_path):
    """scripts/mix_shares.py: a 3:1 mix of two record files gives 75% / 25% of the first steps' samples."""
    repo = Path(__file__).resolve().parents[2]
    mix = (f"data.train=[{{path: {synth_dir / 'train.jsonl'}, weight: 3}}, "
           f"{{path: {synth_dir / 'val.jsonl'}, weight: 1, name: other}}]")
    proc = subprocess.run([sys.executable, str(repo / "scripts" / "mix_shares.py"), "--config",
                           str(repo / "configs" / "first_demo.yaml"), "--set", mix, "--set", "data.feature_cache=null",
                           "--set", "train.batch_size_per_gpu=4", "--set", "train.grad_accum=1", "--steps", "5"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "first 5 steps (20 samples): " in proc.stdout
    assert proc.stdout.strip().endswith("75.00%, other 25.00%"), proc.stdout
