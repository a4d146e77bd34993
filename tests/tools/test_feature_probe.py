"""vqkit.tools.feature_probe: the probe's run over the synthetic rooms: one cache folder per encoder,
reused by a second probe of the same encoder; one view set per room; the same scores for the same seed;
rooms without their layout named in a one-line error."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import TINY_PRETRAIN_ENCODER

from vqkit.config import config_from_dict
from vqkit.errors import DataError
from vqkit.tools.feature_probe import probe_cache_dir, probe_features


def tiny_probe_config(**encoder):
    return config_from_dict({"model": {"encoder": {**TINY_PRETRAIN_ENCODER, **encoder}},
                             "data": {"num_views": 2, "image_size": 56}})


def rooms_of(path) -> int:
    return len({json.loads(line)["scene_id"] for line in open(path)})


def test_one_cache_folder_per_encoder(tmp_path):
    folder = probe_cache_dir(tiny_probe_config(), tmp_path)
    assert folder.parent == tmp_path / "feature_caches" and len(folder.name) == 12
    assert probe_cache_dir(tiny_probe_config(), tmp_path) == folder  # the same encoder finds its cache
    others = {probe_cache_dir(tiny_probe_config(**change), tmp_path)
              for change in ({"seed": 1}, {"layers": [0]}, {"depth": 2})}
    assert folder not in others and len(others) == 3  # another encoder never reads (or replaces) it


def test_probe_scores_the_rooms_and_reuses_its_cache(synth_dir, tmp_path):
    lines: list[str] = []
    cache = tmp_path / "cache"
    scores = probe_features(tiny_probe_config(), synth_dir, cache_dir=cache, epochs=2, seed=3, progress=False,
                            log=lines.append)
    train, val = rooms_of(synth_dir / "train.jsonl"), rooms_of(synth_dir / "val.jsonl")
    assert (scores["train_rooms"], scores["val_rooms"], scores["epochs"], scores["seed"]) == (train, val, 2, 3)
    assert lines[0].startswith(f"probe-features: {train} training and {val} validation rooms, features (2, ")
    assert lines[0].endswith("from a random aggregator (seed 0)")
    assert [line.split(":")[0] for line in lines[1:]] == ["epoch   2/2"]  # every 5th epoch and the last
    assert scores["cache"] == str(cache) and scores["data"] == str(synth_dir) and scores["image_size"] == 56
    assert (scores["layers"], scores["depth"], scores["embed_dim"]) == ([-1], 1, 32)
    shards = {p: p.stat().st_mtime_ns for p in cache.glob("shard_*.safetensors")}
    assert shards and json.loads((cache / "index.json").read_text())["stats"]["encoded_now"] > 0

    again = probe_features(tiny_probe_config(), synth_dir, cache_dir=cache, epochs=2, seed=3, progress=False,
                           log=lambda line: None)
    # the second probe encodes nothing: the shards are read, not rewritten, and none is added
    assert {p: p.stat().st_mtime_ns for p in cache.glob("shard_*.safetensors")} == shards
    assert json.loads((cache / "index.json").read_text())["stats"]["encoded_now"] == 0
    for key in ("colour_accuracy", "presence_accuracy", "colour_chance", "presence_chance"):
        assert again[key] == scores[key], key


def test_a_room_without_its_layout_is_named(synth_dir, tmp_path):
    data = shutil.copytree(synth_dir, tmp_path / "synth", ignore=shutil.ignore_patterns("feature_caches"))
    scene = json.loads((data / "val.jsonl").read_text().splitlines()[0])["scene_id"]
    (data / "scenes" / scene / "layout.json").unlink()
    with pytest.raises(DataError, match=rf"val\.jsonl.*field 'scene_id': no layout at .*{scene}.*vqkit synth"):
        probe_features(tiny_probe_config(), data, cache_dir=tmp_path / "cache", epochs=1, progress=False,
                       log=lambda line: None)
