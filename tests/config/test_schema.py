"""vqkit.config.schema: the whole experiment's Config, its defaults (the design's model), the checks
that span sections, and the section classes it re-exports."""

from __future__ import annotations

import pytest

from vqkit.config import Config, config_from_dict
from vqkit.errors import ConfigError


def test_defaults_follow_the_design():
    cfg = Config()
    assert cfg.model.llm.name_or_path == "Qwen/Qwen3-4B-Instruct-2507"
    assert (cfg.model.projector.num_layers, cfg.model.projector.num_latents) == (6, 128)
    assert cfg.model.lora.r == 16 and cfg.model.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert cfg.model.encoder.embed_dim == 1024 and cfg.model.encoder.depth == 24


def test_checks_say_how_to_fix():
    with pytest.raises(ConfigError, match="multiple of 14.*try 224"):
        config_from_dict({"data": {"image_size": 225}})
    with pytest.raises(ConfigError, match="either enabled"):
        config_from_dict({"model": {"lora": {"enabled": True, "full_finetune": True}}})
    with pytest.raises(ConfigError, match="not one of"):
        config_from_dict({"data": {"on_error": "ignore"}})


def test_several_turns_need_an_attention_that_takes_a_4d_mask():
    with pytest.raises(ConfigError, match="data.turns > 1 keeps the turns apart with a 4D attention mask, which "
                                          "model.llm.attn_implementation='flash_attention_2' does not take"):
        config_from_dict({"data": {"turns": 4}, "model": {"llm": {"attn_implementation": "flash_attention_2"}}})
    for attention in ("sdpa", "eager"):
        cfg = config_from_dict({"data": {"turns": 4}, "model": {"llm": {"attn_implementation": attention}}})
        assert cfg.data.turns == 4
    assert config_from_dict({"model": {"llm": {"attn_implementation": "flash_attention_2"}}}).data.turns == 1


def test_schema_re_exports_every_section_class():
    """``from vqkit.config.schema import DataConfig`` works as before the sections moved to their modules."""
    from vqkit.config import data, eval, model, schema, train

    sections = {name: cls for m in (model, data, train, eval) for name, cls in vars(m).items()
                if name.endswith("Config") and getattr(cls, "__module__", None) == m.__name__}
    assert set(schema.__all__) == {"Config", *sections}
    assert all(getattr(schema, name) is cls for name, cls in sections.items())
