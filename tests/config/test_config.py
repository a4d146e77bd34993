"""Typed configs: defaults, YAML, overrides, helpful errors, round trip, every shipped YAML."""

from pathlib import Path

import pytest
import yaml

from vqkit.config import Config, config_from_dict, load_config, save_config
from vqkit.errors import ConfigError
from vqkit.tokenizer import vision_token_count

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_defaults_follow_the_design():
    cfg = Config()
    assert cfg.model.llm.name_or_path == "Qwen/Qwen3-4B-Instruct-2507"
    assert (cfg.model.projector.num_layers, cfg.model.projector.num_latents) == (6, 128)
    assert cfg.model.lora.r == 16 and cfg.model.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert cfg.model.encoder.embed_dim == 1024 and cfg.model.encoder.depth == 24


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_round_trips(path, tmp_path):
    cfg = load_config(path)
    out = tmp_path / "resolved.yaml"
    save_config(cfg, out)
    assert load_config(out) == cfg


def test_stage1_matches_the_seed():
    cfg = load_config(REPO / "configs" / "stage1_3d.yaml")
    assert [s.weight for s in cfg.data.train] == [0.7, 0.3]
    assert (cfg.data.num_views, cfg.data.image_size, cfg.data.max_length, cfg.data.view_dropout) == (8, 448, 512, 0.3)
    assert (cfg.train.batch_size_per_gpu, cfg.train.grad_accum) == (16, 12)
    assert (cfg.train.lr, cfg.train.proj_lr, cfg.train.max_steps, cfg.train.save_every_steps) == (5e-6, 1e-4, 30000, 1500)


def test_typo_names_the_key_and_the_nearest_valid_one(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_stpes: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert "train.max_stpes" in str(e.value) and "max_steps" in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(ConfigError, match="did you mean 'projector'"):
        load_config(None, ["model.projektor.num_latents=4"])


def test_overrides_parse_yaml_values_and_check_types():
    cfg = load_config(REPO / "configs" / "stage1_3d.yaml", ["train.max_steps=7", "train.lr=3e-4",
                                                       "model.encoder.layers=[-2]", "data.train=[{path: x.jsonl}]"])
    assert cfg.train.max_steps == 7 and cfg.train.lr == 3e-4 and cfg.model.encoder.layers == [-2]
    assert cfg.data.train[0].path == "x.jsonl"
    with pytest.raises(ConfigError, match="train.max_steps: expected an integer"):
        load_config(None, ["train.max_steps=many"])
    with pytest.raises(ConfigError, match="must look like a.b=c"):
        load_config(None, ["train.max_steps"])


def test_checks_say_how_to_fix():
    with pytest.raises(ConfigError, match="multiple of 14.*try 224"):
        config_from_dict({"data": {"image_size": 225}})
    with pytest.raises(ConfigError, match="either enabled"):
        config_from_dict({"model": {"lora": {"enabled": True, "full_finetune": True}}})
    with pytest.raises(ConfigError, match="not one of"):
        config_from_dict({"data": {"on_error": "ignore"}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_vision_token_count():
    cfg = Config()
    assert vision_token_count(cfg.model, 8, has_geometry=True) == 128 + 8
    assert vision_token_count(cfg.model, 8, has_geometry=False) == 128
    cfg.model.geometry.enabled = False
    assert vision_token_count(cfg.model, 8, has_geometry=True) == 128


def test_saved_yaml_is_plain_and_complete(tmp_path):
    save_config(Config(), tmp_path / "c.yaml")
    data = yaml.safe_load((tmp_path / "c.yaml").read_text())
    assert set(data) == {"model", "data", "train", "eval", "encoder_pretrain"}
    assert data["train"]["save_every_steps"] == 500


def test_errors_name_where_the_bad_value_is(tmp_path):
    """A bad --set value used to be blamed on the YAML file, and a YAML syntax error gave no line."""
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  max_steps: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(good, ["train.max_steps=4", "train.lr=fast"])
    assert str(e.value) == "--set train.lr=fast: train.lr: expected a number, got 'fast'"
    with pytest.raises(ConfigError, match=r"^--set train.lrr=1: unknown config key 'train.lrr'; did you mean 'lr'"):
        load_config(good, ["train.lrr=1"])
    # a cross-field check fails with the override that broke it, and passes when a later one fixes it
    with pytest.raises(ConfigError, match=r"^--set model.encoder.num_heads=3: model.encoder.embed_dim"):
        load_config(good, ["model.encoder.num_heads=3"])
    assert load_config(good, ["model.encoder.num_heads=3", "model.encoder.embed_dim=96"]).model.encoder.embed_dim == 96
    # the file is blamed for its own bad value, overrides or not
    bad_value = tmp_path / "bad_value.yaml"
    bad_value.write_text("train:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=rf"^{bad_value}: train.lr: expected a number"):
        load_config(bad_value, ["train.max_steps=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoder:\n    img_size: [1\ntrain: {\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert str(e.value) == (f"{bad}:4:6: not valid YAML (expected ',' or ']', but got ':' while parsing a flow "
                            f"sequence that starts at line 3)")


def test_a_plain_path_is_a_list_of_one_source():
    """`--set data.train=X` used to need the undocumented `[{path: X}]`."""
    cfg = load_config(None, ["data.train=data/x.jsonl", "data.val=[a.jsonl, {path: b.jsonl, weight: 2}]"])
    assert [(s.path, s.weight) for s in cfg.data.train] == [("data/x.jsonl", 1.0)]
    assert [(s.path, s.weight) for s in cfg.data.val] == [("a.jsonl", 1.0), ("b.jsonl", 2.0)]
    with pytest.raises(ConfigError, match="data.train: expected a list"):
        load_config(None, ["data.train=3"])
