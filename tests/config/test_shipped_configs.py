"""Every shipped config: each experiment YAML in configs/ loads, validates and round-trips through the
resolved file a run saves (which spells every value out, with no include); every shared block in
configs/base/ is included by some experiment and holds only config sections; the DeepSpeed files parse."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import REPO

from vqkit.config import load_config, save_config
from vqkit.config.io import INCLUDE_KEY, read_yaml_with_includes

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
BLOCKS = sorted((REPO / "configs" / "base").glob("*.yaml"))
SECTIONS = {"model", "data", "train", "eval", "encoder_pretrain"}


def includes_of(path) -> set:
    """Every file ``path`` includes, directly or through another include."""
    found = set()
    listed = yaml.safe_load(path.read_text()).get(INCLUDE_KEY) or []
    for name in [listed] if isinstance(listed, str) else listed:
        block = (path.parent / name).resolve()
        found |= {block} | includes_of(block)
    return found


def test_there_are_configs_and_blocks():
    names = {p.name for p in CONFIGS}
    assert {"demo.yaml", "first_demo.yaml", "demo_encoder.yaml", "stage1_3d.yaml", "stage2_demo.yaml"} <= names
    assert BLOCKS, "configs/base/ holds the blocks several configs share"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_round_trips(path, tmp_path):
    cfg = load_config(path)
    out = tmp_path / "resolved.yaml"
    save_config(cfg, out)
    assert load_config(out) == cfg


def test_stage1_keeps_its_recipe():
    cfg = load_config(REPO / "configs" / "stage1_3d.yaml")
    assert [s.weight for s in cfg.data.train] == [0.7, 0.3]
    assert (cfg.data.num_views, cfg.data.image_size, cfg.data.max_length, cfg.data.view_dropout) == (8, 448, 512, 0.3)
    assert (cfg.train.global_batch_size, cfg.train.batch_size_per_gpu, cfg.train.grad_accum) == (192, 12, None)
    # the same global batch on 1, 2, 4, 8 or 16 GPUs (docs/cluster.md)
    assert [cfg.train.accumulation(n) for n in (1, 2, 4, 8, 16)] == [16, 8, 4, 2, 1]
    assert (cfg.train.lr, cfg.train.proj_lr) == (5e-6, 1e-4)
    assert (cfg.train.max_steps, cfg.train.save_every_steps) == (30000, 1500)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_the_saved_config_spells_out_every_value(path, tmp_path):
    """A run's config.yaml names no block: it reads the same after configs/base/ changes."""
    save_config(load_config(path), tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert set(saved) == SECTIONS and INCLUDE_KEY not in saved
    resolved = read_yaml_with_includes(path)
    assert INCLUDE_KEY not in resolved and set(resolved) <= SECTIONS


def test_every_block_is_included_by_some_config():
    used = set().union(*(includes_of(p) for p in CONFIGS))
    unused = [b.name for b in BLOCKS if b.resolve() not in used]
    assert not unused, f"configs/base/ blocks no config includes: {unused}"


@pytest.mark.parametrize("path", BLOCKS, ids=lambda p: p.name)
def test_blocks_are_partial_configs(path):
    """A block holds config sections only (known keys, checked when an experiment includes it) and
    says in a comment what it is."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and set(data) - {INCLUDE_KEY} <= SECTIONS
    assert path.read_text().startswith("#"), f"{path.name}: start with a comment saying what the block is"


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_deepspeed_files_parse(path):
    assert json.loads(path.read_text())["zero_optimization"]["stage"] in (2, 3)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_a_deepspeed_file_a_config_names_exists(path):
    named = load_config(path).train.deepspeed
    assert named is None or (REPO / named).is_file(), f"train.deepspeed {named} is not in the repository"
