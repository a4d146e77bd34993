"""Feature cache: build, read back exactly what the encoder gives, refuse stale or mismatched caches."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import make_corpus, tiny_config

from vqkit.commands.cache_features import main
from vqkit.commands.common import run_main
from vqkit.data.dataset import build_dataloader, build_dataset
from vqkit.data.feature_cache import FeatureCache, read_index
from vqkit.errors import CheckpointError, DataError
from vqkit.models.builder import build_model
from vqkit.tokenizer import load_tokenizer
from vqkit.tools.cache_writer import build_feature_cache


def first_batch(cfg, tokenizer, **kw):
    return next(iter(build_dataloader(cfg, "train", tokenizer, batch_size=8, shuffle=False, **kw)))


def test_cache_matches_encoder_and_dedupes_view_sets(corpus, tokenizer_dir, tmp_path):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    out = build_feature_cache(cfg, tmp_path / "fc", progress=False, shard_rows=5)
    index = read_index(out)
    # 6 distinct view sets (the duplicates share record 0's), val repeats train's first two.
    assert len(index["entries"]) == 6
    assert index["stats"]["records"] == 10
    assert index["feature_shape"] == [1 + 4 + 2 * 2, 2 * 16 * 2]  # camera + registers + 2x2 patches; 2 layers
    assert len(index["shards"]) >= 2  # shard_rows=5 with 12 views

    tok = load_tokenizer(cfg.model.llm)
    model = build_model(cfg, tokenizer=tok).eval()
    images = first_batch(cfg, tok)
    cfg_c = tiny_config(corpus.root, tokenizer_dir, feature_cache=str(out))
    cached = first_batch(cfg_c, tok)
    assert "images" not in cached and cached["features"].dtype == torch.float16
    want = model.encode_views(images["images"], images["view_mask"])
    torch.testing.assert_close(cached["features"].float(), want, atol=2e-2, rtol=1e-2)
    for key in ("R", "t", "K", "depth_hist"):
        torch.testing.assert_close(cached["geometry"][key], images["geometry"][key])
    assert cached["geometry"]["image_hw"] == images["geometry"]["image_hw"]
    assert torch.equal(cached["input_ids"], images["input_ids"])
    with torch.no_grad():
        a, b = model(images).loss, model(cached).loss
    assert abs(a.item() - b.item()) < 1e-2


def test_view_dropout_picks_rows_of_cached_views(corpus, tokenizer_dir, tmp_path):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    out = build_feature_cache(cfg, tmp_path / "fc", splits=("train",), progress=False)
    cfg_c = tiny_config(corpus.root, tokenizer_dir, feature_cache=str(out), view_dropout=0.5)
    ds = build_dataset(cfg_c.data, "train", seed=1)
    from vqkit.data.feature_cache import attach_feature_cache

    cache = attach_feature_cache(ds, cfg_c)
    full = FeatureCache(out, cfg)
    dropped = 0
    for i in range(len(ds)):
        s = ds[i]
        rec = ds.records[i]
        views = s["meta"]["views"]
        all_feats, _, _ = full.features(rec, full.entry(rec)[3])
        cached_views = full.entry(rec)[3]
        assert torch.equal(s["features"], all_feats[[cached_views.index(v) for v in views]])
        dropped += len(views) < len(cached_views)
    assert dropped > 0 and cache is ds.feature_cache


def test_stale_and_mismatched_caches_are_refused(corpus, tokenizer_dir, tmp_path):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    out = build_feature_cache(cfg, tmp_path / "fc", splits=("train",), progress=False)
    tok = load_tokenizer(cfg.model.llm)
    # Another encoder seed: the key differs and the message names the field.
    other = tiny_config(corpus.root, tokenizer_dir, feature_cache=str(out))
    other.model.encoder.seed = 4
    with pytest.raises(CheckpointError, match=r"encoder\.seed: 3 in the cache, 4 in the config.*cache-features"):
        first_batch(other, tok)
    other = tiny_config(corpus.root, tokenizer_dir, feature_cache=str(out), image_size=42)
    with pytest.raises(CheckpointError, match="image_size: 28 in the cache, 42"):
        first_batch(other, tok)
    # A changed image file: that record's view set is no longer in the cache.
    img = corpus.root / corpus.records[3]["images"][0]
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    fresh = tiny_config(corpus.root, tokenizer_dir, feature_cache=str(out))
    with pytest.raises(DataError, match=f"record '{corpus.records[3]['id']}'.*not in the feature cache"):
        first_batch(fresh, tok)
    # Other num_views: the hint says what the cache was built with.
    fewer = tiny_config(corpus.root, tokenizer_dir, feature_cache=str(out), num_views=1)
    with pytest.raises(DataError, match="built with data.num_views=2"):
        first_batch(fewer, tok)
    with pytest.raises(CheckpointError, match="no index.json"):
        first_batch(tiny_config(corpus.root, tokenizer_dir, feature_cache=str(tmp_path / "nothing")), tok)


def test_extend_encodes_only_new_view_sets_and_workers_read(corpus, tokenizer_dir, tmp_path):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    out = build_feature_cache(cfg, tmp_path / "fc", splits=("train",), progress=False)
    first = read_index(out)
    shard0 = (out / first["shards"][0]).read_bytes()
    more = make_corpus(corpus.root / "more", n=2, views=3, seed=7)
    cfg.data.train.append(type(cfg.data.train[0])(path=str(more.path)))
    build_feature_cache(cfg, out, splits=("train",), progress=False)
    second = read_index(out)
    assert second["stats"]["encoded_now"] == 2 and len(second["entries"]) == 8
    assert (out / first["shards"][0]).read_bytes() == shard0  # untouched
    cfg.data.feature_cache = str(out)
    cfg.data.num_workers = 2
    tok = load_tokenizer(cfg.model.llm)
    n = sum(b["features"].shape[0] for b in build_dataloader(cfg, "train", tok, batch_size=4, shuffle=True,
                                                                      drop_last=False))
    assert n == 10  # the 8 records and the 2 new ones, read by two workers


def test_cli(corpus, tokenizer_dir, tmp_path, capsys):
    import yaml

    from vqkit.config import to_dict

    cfg = tiny_config(corpus.root, tokenizer_dir)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    assert main(["--config", str(path), "--out", str(tmp_path / "fc"), "--no-progress", "--split", "val"]) == 0
    assert "2 view sets" in capsys.readouterr().out
    assert json.loads((tmp_path / "fc" / "index.json").read_text())["data"]["num_views"] == 2
    rc = run_main(main, ["--config", str(path), "--out", str(tmp_path / "fc"), "--no-progress",
                         "--set", "model.encoder.layers=[-1]"], "vqkit cache-features")
    assert rc == 2
    assert "another encoder/config" in capsys.readouterr().err
    assert main(["--config", str(path), "--out", str(tmp_path / "fc"), "--no-progress", "--overwrite",
                 "--set", "model.encoder.layers=[-1]", "--dtype", "bfloat16"]) == 0
    assert read_index(tmp_path / "fc")["dtype"] == "bfloat16"
