"""The LLM builder: tiny random Qwen3 from config, embedding resize, LoRA, the meta-device Qwen3-4B."""

import dataclasses

import pytest
import torch

from vqkit.config import LLMConfig, LoRAConfig
from vqkit.errors import ConfigError
from vqkit.models.llm import KNOWN_LLM_CONFIGS, apply_lora, build_llm, is_lora_param, resolve_dtype
from vqkit.models.llm_attention import turn_attention_mask

TINY = dict(model_type="qwen3", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128)


def tiny_cfg(**overrides):
    return LLMConfig(name_or_path="unused", from_config=True, config_overrides={**TINY, **overrides})


def test_from_config_uses_tokenizer_vocab_and_is_seedable():
    torch.manual_seed(3)
    a = build_llm(tiny_cfg(), vocab_size=300)
    torch.manual_seed(3)
    b = build_llm(tiny_cfg(), vocab_size=300)
    assert a.get_input_embeddings().num_embeddings == 300
    assert a.config.hidden_size == 64 and a.dtype == torch.float32
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), n
    logits = a(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 300)


def test_smaller_config_vocab_is_resized_to_the_tokenizer():
    model = build_llm(tiny_cfg(vocab_size=100), vocab_size=130)
    assert model.get_input_embeddings().num_embeddings >= 130
    # a tokenizer that fits is never resized (Qwen checkpoints keep their 151936 rows)
    model = build_llm(tiny_cfg(vocab_size=200), vocab_size=130)
    assert model.get_input_embeddings().num_embeddings == 200


def test_from_config_without_model_type_builds_the_named_architecture(tmp_path):
    # A known hub id works offline: its published architecture, random weights, overrides on top.
    small = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
             "num_key_value_heads": 1, "head_dim": 32, "vocab_size": 512}
    cfg = LLMConfig(name_or_path="Qwen/Qwen3-4B-Instruct-2507", from_config=True, config_overrides=small)
    model = build_llm(cfg, vocab_size=100)
    assert model.config.model_type == "qwen3" and model.config.num_hidden_layers == 1
    assert model.config.eos_token_id == 151645 and model.config.tie_word_embeddings  # from the known config
    assert model.get_input_embeddings().num_embeddings == 512  # the override, not the tokenizer's length
    # Anything else needs model_type in the overrides; the error says so.
    cfg = LLMConfig(name_or_path=str(tmp_path / "nope"), from_config=True, config_overrides={"hidden_size": 64})
    with pytest.raises(ConfigError, match="model_type"):
        build_llm(cfg, vocab_size=10)


def test_missing_local_model_is_a_config_error(tmp_path):
    cfg = LLMConfig(name_or_path=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="name_or_path"):
        build_llm(cfg, vocab_size=None)


def test_lora_adds_adapters_on_the_configured_modules():
    model = build_llm(tiny_cfg(), vocab_size=50)
    lora = LoRAConfig(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    wrapped = apply_lora(model, lora)
    names = [n for n, _ in wrapped.named_parameters() if is_lora_param(n)]
    # 2 layers x 2 modules x (A, B)
    assert len(names) == 8
    assert all(("q_proj" in n or "v_proj" in n) for n in names)
    a = next(p for n, p in wrapped.named_parameters() if "q_proj.lora_A" in n)
    assert a.shape == (4, 64)
    with pytest.raises(ConfigError, match="target_modules"):
        apply_lora(build_llm(tiny_cfg(), vocab_size=50), dataclasses.replace(lora, target_modules=["qkv"]))
    assert apply_lora(model, LoRAConfig(enabled=False)) is model


def test_dtype_resolution():
    assert resolve_dtype(LLMConfig(dtype="auto"), "cpu") == torch.float32
    assert resolve_dtype(LLMConfig(dtype="auto"), "cuda") == torch.bfloat16
    assert resolve_dtype(LLMConfig(dtype="auto"), "meta") == torch.float32
    assert resolve_dtype(LLMConfig(dtype="bfloat16"), "cpu") == torch.bfloat16


def test_qwen3_4b_on_the_meta_device():
    """The real stage-1 LLM architecture, offline: no weights, exact parameter count."""
    cfg = LLMConfig(name_or_path="Qwen/Qwen3-4B-Instruct-2507")
    assert cfg.name_or_path in KNOWN_LLM_CONFIGS
    model = build_llm(cfg, vocab_size=None, device="meta")
    assert next(model.parameters()).device.type == "meta"
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
            c.intermediate_size, c.vocab_size) == (2560, 36, 32, 8, 128, 9728, 151936)
    assert c.tie_word_embeddings
    # embeddings (tied) + 36 x (attention + MLP + norms) + final norm
    per_layer = 2560 * 4096 * 2 + 2560 * 1024 * 2 + 3 * 2560 * 9728 + 2 * 2560 + 2 * 128
    assert sum(p.numel() for p in model.parameters()) == 151936 * 2560 + 36 * per_layer + 2560
    wrapped = apply_lora(model, LoRAConfig())
    lora = sum(p.numel() for n, p in wrapped.named_parameters() if is_lora_param(n))
    # r=16 on q, k, v, o: (in + out) * r each
    assert lora == 36 * 16 * ((2560 + 4096) + 2 * (2560 + 1024) + (4096 + 2560))


def test_a_known_architecture_is_planned_without_the_hub(monkeypatch):
    """`vqkit plan` used to ask the hub for a known id's config unless HF_HUB_OFFLINE was set (24 s of
    retries without network); a known id is now read from KNOWN_LLM_CONFIGS without any hub call."""
    import socket

    import transformers

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_hub(*args, **kwargs):
        raise AssertionError(f"contacted the hub: {args}")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_hub)
    monkeypatch.setattr(socket, "create_connection", no_hub)
    model = build_llm(LLMConfig(name_or_path="Qwen/Qwen3-4B-Instruct-2507"), vocab_size=None, device="meta")
    assert model.config.num_hidden_layers == 36


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_turns_see_the_shared_prompt_and_themselves_only(attn):
    """The multi-turn mask (data.turns): changing turns 1 and 2 leaves turn 3's logits exactly as they
    were, while changing the shared prompt moves them; one turn equals the plain padding mask."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    torch.manual_seed(0)
    llm = AutoModelForCausalLM.from_config(Qwen3Config(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8), attn_implementation=attn).eval()
    ids = torch.randint(0, 50, (2, 12))
    attention = torch.ones(2, 12, dtype=torch.long)
    attention[1, 9:] = 0  # right padding
    turn_of = torch.tensor([[0] * 4 + [1] * 2 + [2] * 3 + [3] * 3, [0] * 4 + [1] * 2 + [2] * 3 + [0] * 3])

    def logits(tokens, turns):
        embeds = llm.get_input_embeddings()(tokens)
        return llm(inputs_embeds=embeds, attention_mask=turn_attention_mask(attention, turns, embeds.dtype)).logits

    base = logits(ids, turn_of)
    other_turns = ids.clone()
    other_turns[:, 4:9] = (other_turns[:, 4:9] + 7) % 50
    moved = logits(other_turns, turn_of)
    assert torch.equal(moved[0, 9:], base[0, 9:])
    assert (moved[0, 4:9] - base[0, 4:9]).abs().max() > 1e-3
    other_prompt = ids.clone()
    other_prompt[0, 1] = (other_prompt[0, 1] + 7) % 50
    assert (logits(other_prompt, turn_of)[0, 9:] - base[0, 9:]).abs().max() > 1e-3
    plain = llm(input_ids=ids, attention_mask=attention).logits
    one_turn = logits(ids, torch.zeros_like(turn_of))
    assert torch.allclose(one_turn[0], plain[0], atol=1e-6) and torch.allclose(one_turn[1, :9], plain[1, :9], atol=1e-6)
