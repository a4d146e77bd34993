"""vqkit.config.io: YAML over the typed defaults, ``--set`` overrides, errors that name where the bad value
is, the resolved config written back, and the ``include:`` key (shared blocks merged in first: mappings
merge, lists and values replace, the file's own keys win; paths relative to the including file)."""

from __future__ import annotations

import pytest
import yaml
from helpers import REPO

from vqkit.config import Config, load_config, save_config
from vqkit.config.io import merge_into, read_yaml_with_includes
from vqkit.errors import ConfigError


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


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


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


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


# ------------------------------------------------------------------ include:


def test_included_mappings_merge_and_lists_and_values_replace(tmp_path):
    write(tmp_path / "base.yaml", """\
model:
  encoder: {depth: 2, embed_dim: 64, num_heads: 4, layers: [0, -1]}
  projector: {num_latents: 8}
data:
  train: [a.jsonl, b.jsonl]
  num_views: 3
train:
  betas: [0.8, 0.9]
  lr: 0.01
""")
    top = write(tmp_path / "top.yaml", """\
include: base.yaml
model:
  encoder: {depth: 3, layers: [-1]}
data:
  train: [c.jsonl]
train:
  lr: 0.1
""")
    cfg = load_config(top)
    enc = cfg.model.encoder
    assert (enc.depth, enc.embed_dim, enc.num_heads) == (3, 64, 4)  # the file's value wins, the block's others stay
    assert enc.layers == [-1]  # a list replaces the block's list, it is not appended to
    assert [s.path for s in cfg.data.train] == ["c.jsonl"] and cfg.data.num_views == 3
    assert cfg.model.projector.num_latents == 8 and cfg.train.betas == [0.8, 0.9] and cfg.train.lr == 0.1
    # several includes merge in order, so a later block wins over an earlier one, and the file over both
    write(tmp_path / "later.yaml", "model:\n  encoder: {embed_dim: 96, num_heads: 3}\ntrain:\n  lr: 0.5\n")
    write(tmp_path / "both.yaml", "include: [base.yaml, later.yaml]\ntrain:\n  max_steps: 9\n")
    both = load_config(tmp_path / "both.yaml")
    assert (both.model.encoder.embed_dim, both.model.encoder.num_heads, both.model.encoder.depth) == (96, 3, 2)
    assert (both.train.lr, both.train.max_steps, both.train.betas) == (0.5, 9, [0.8, 0.9])
    # overrides go on top of everything
    assert load_config(top, ["model.encoder.embed_dim=32"]).model.encoder.embed_dim == 32


def test_merge_never_changes_its_inputs():
    base = {"model": {"encoder": {"layers": [0]}}, "data": {"train": ["a"]}}
    top = {"model": {"encoder": {"depth": 2}}, "data": {"train": ["b"]}}
    merged = merge_into(base, top)
    assert merged == {"model": {"encoder": {"layers": [0], "depth": 2}}, "data": {"train": ["b"]}}
    merged["data"]["train"].append("c")
    merged["model"]["encoder"]["layers"].append(1)
    assert top["data"]["train"] == ["b"] and base == {"model": {"encoder": {"layers": [0]}}, "data": {"train": ["a"]}}


def test_include_paths_are_relative_to_the_including_file_and_nest(tmp_path, monkeypatch):
    """experiments/a.yaml includes ../blocks/model.yaml, which includes llm.yaml from its own folder;
    the nearer file wins at every level, wherever the command runs."""
    write(tmp_path / "blocks" / "llm.yaml", "model:\n  llm: {from_config: true, name_or_path: tok}\n"
                                            "  encoder: {depth: 5}\ntrain:\n  lr: 0.001\n")
    write(tmp_path / "blocks" / "model.yaml", "include: llm.yaml\nmodel:\n  encoder: {depth: 4}\ntrain:\n  lr: 0.002\n")
    exp = write(tmp_path / "experiments" / "a.yaml", "include: ../blocks/model.yaml\ntrain:\n  lr: 0.003\n")
    monkeypatch.chdir(tmp_path / "blocks")  # not the experiment's folder: relative to the file, not the cwd
    cfg = load_config(exp)
    assert cfg.model.llm.from_config is True and cfg.model.llm.name_or_path == "tok"
    assert cfg.model.encoder.depth == 4 and cfg.train.lr == 0.003
    monkeypatch.chdir(tmp_path)
    assert load_config("experiments/a.yaml") == cfg


def test_a_cycle_is_one_line_naming_the_files(tmp_path):
    a = write(tmp_path / "a.yaml", "include: b.yaml\n")
    b = write(tmp_path / "b.yaml", "include: [c.yaml, a.yaml]\n")
    write(tmp_path / "c.yaml", "train:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(a)
    assert str(e.value) == f"{a}: include cycle: {a} -> {b} -> {a}"
    me = write(tmp_path / "me.yaml", "include: ./me.yaml\n")
    with pytest.raises(ConfigError, match=r"include cycle: .*me\.yaml -> .*me\.yaml$"):
        load_config(me)
    # the same block included twice, side by side, is not a cycle
    write(tmp_path / "twice.yaml", "include: [c.yaml, c.yaml]\n")
    assert load_config(tmp_path / "twice.yaml").train.lr == 0.1


def test_a_missing_or_bad_include_is_one_line_naming_the_files(tmp_path):
    top = write(tmp_path / "top.yaml", "include: [blocks/there.yaml]\n")
    write(tmp_path / "blocks" / "there.yaml", "include: gone.yaml\n")
    with pytest.raises(ConfigError) as e:
        load_config(top)
    message = str(e.value)
    assert "\n" not in message
    assert message == (f"config file not found: {tmp_path / 'blocks' / 'gone.yaml'} "
                       f"(included by {tmp_path / 'blocks' / 'there.yaml'})")
    for bad in ("include: 3\n", "include: {a: b.yaml}\n", "include: [a.yaml, 4]\n"):
        path = write(tmp_path / "bad.yaml", bad)
        with pytest.raises(ConfigError, match=rf"^{path}: include must be a path or a list of paths, got "):
            load_config(path)
    write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: the top level must be a mapping"):
        load_config(write(tmp_path / "top2.yaml", "include: list.yaml\n"))
    write(tmp_path / "broken.yaml", "train: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:2:1: not valid YAML"):  # the included file and its line
        load_config(write(tmp_path / "top3.yaml", "include: broken.yaml\n"))


def test_include_is_a_file_key_not_a_config_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'include'"):
        load_config(None, ["include=base.yaml"])
    nested = write(tmp_path / "nested.yaml", "model:\n  include: base.yaml\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.include'"):
        load_config(nested)


def test_the_resolved_config_is_the_fully_spelled_out_one(tmp_path):
    """What a run saves has no include: every value is spelled out, and loading it, or a file written
    out by hand with the same values, gives the same config."""
    write(tmp_path / "blocks" / "enc.yaml", "model:\n  encoder: {depth: 2, embed_dim: 64, num_heads: 4, seed: 3}\n")
    write(tmp_path / "blocks" / "data.yaml", "data:\n  train: [x.jsonl]\n  num_views: 2\n  image_size: 56\n")
    top = write(tmp_path / "top.yaml", "include: [blocks/enc.yaml, blocks/data.yaml]\n"
                                       "model:\n  encoder: {seed: 7}\ndata:\n  image_size: 112\n")
    spelled = write(tmp_path / "spelled.yaml", """\
model:
  encoder: {depth: 2, embed_dim: 64, num_heads: 4, seed: 7}
data:
  train: [{path: x.jsonl}]
  num_views: 2
  image_size: 112
""")
    cfg = load_config(top)
    assert cfg == load_config(spelled)
    assert read_yaml_with_includes(top) == {"model": {"encoder": {"depth": 2, "embed_dim": 64, "num_heads": 4,
                                                                  "seed": 7}},
                                            "data": {"train": ["x.jsonl"], "num_views": 2, "image_size": 112}}
    save_config(cfg, tmp_path / "run" / "config.yaml")
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert "include" not in text and "blocks/" not in text
    saved = yaml.safe_load(text)
    assert set(saved) == {"model", "data", "train", "eval", "encoder_pretrain"}
    assert saved["model"]["encoder"]["seed"] == 7 and saved["data"]["image_size"] == 112
    assert load_config(tmp_path / "run" / "config.yaml") == cfg
    assert Config() != cfg


def test_a_bad_value_is_blamed_on_the_file_that_wrote_it(tmp_path):
    """A block's bad value names the block and who included it, not only the file the command was given."""
    block = write(tmp_path / "blocks" / "train.yaml", "train:\n  lr: fast\n  max_steps: 4\n")
    mid = write(tmp_path / "blocks" / "model.yaml", "model:\n  encodr: {depth: 2}\n")
    top = write(tmp_path / "top.yaml", "include: blocks/train.yaml\ntrain:\n  max_steps: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(top)
    assert str(e.value) == f"{block} (included by {top}): train.lr: expected a number, got 'fast'"
    with pytest.raises(ConfigError, match=rf"^{mid} \(included by {tmp_path / 'nested.yaml'}\): unknown config "
                                          r"key 'model\.encodr'; did you mean 'encoder'"):
        load_config(write(tmp_path / "nested.yaml", "include: blocks/model.yaml\n"))
    via = write(tmp_path / "blocks" / "via.yaml", "include: train.yaml\n")  # two includes deep: the direct includer
    with pytest.raises(ConfigError, match=rf"^{block} \(included by {via}\): train.lr"):
        load_config(write(tmp_path / "deep.yaml", "include: blocks/via.yaml\n"))
    # the file's own value wins, and so is blamed; a file with no bad value of its own is never named
    fixed = write(tmp_path / "fixed.yaml", "include: blocks/train.yaml\ntrain:\n  lr: 0.1\n")
    assert load_config(fixed).train.lr == 0.1
    own = write(tmp_path / "own.yaml", "include: blocks/train.yaml\ntrain:\n  lr: [1]\n")
    with pytest.raises(ConfigError, match=rf"^{own}: train.lr: expected a number, got \[1\]"):
        load_config(own)
    with pytest.raises(ConfigError, match=r"^--set train.max_steps=x: train.max_steps: expected an integer"):
        load_config(fixed, ["train.max_steps=x"])
