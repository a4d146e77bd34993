"""The cache writer's command-facing pieces: which splits a config can cache, and the summary line
(the cache itself is tested in tests/data/test_feature_cache.py)."""

from __future__ import annotations

import pytest
from helpers import tiny_config

from vqkit.errors import ConfigError
from vqkit.tools.cache_writer import build_feature_cache, format_cache_summary, splits_with_sources


def test_splits_with_sources(corpus, tokenizer_dir):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    assert splits_with_sources(cfg, "both") == ("train", "val")
    assert splits_with_sources(cfg, "val") == ("val",)
    cfg.data.val = []
    assert splits_with_sources(cfg, "both") == ("train",)
    with pytest.raises(ConfigError, match=r"^cfg.yaml: no data sources for --split val$"):
        splits_with_sources(cfg, "val", where="cfg.yaml")


def test_summary_line(corpus, tokenizer_dir, tmp_path):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    out = build_feature_cache(cfg, tmp_path / "fc", ("val",), progress=False)
    line = format_cache_summary(out)
    assert line.startswith(f"{out}: 2 view sets (2 encoded now, ") and " in 1 shard(s), features [" in line
