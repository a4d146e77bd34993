"""The language model: ``transformers.AutoModelForCausalLM`` from a hub id, a local folder, or a config
(random init, no download), plus peft LoRA adapters.

Everything here is driven by :class:`vqkit.config.LLMConfig` / :class:`vqkit.config.LoRAConfig`;
:func:`vqkit.models.vqmodel.build_model` calls these in order and owns the freeze.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vqkit.errors import ConfigError
from vqkit.models.llm_attention import llm_attention

# Configs of LLMs the kit plans for, used instead of the hub where no weights are loaded (the meta-device
# memory plan, random-weight benchmarks), so `vqkit plan` needs no network. Values from the published
# config.json.
KNOWN_LLM_CONFIGS: dict[str, dict] = {
    "Qwen/Qwen3-4B-Instruct-2507": dict(
        model_type="qwen3", hidden_size=2560, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, intermediate_size=9728, vocab_size=151936,
        tie_word_embeddings=True, rope_theta=5000000.0, max_position_embeddings=262144,
        rms_norm_eps=1e-6, hidden_act="silu", attention_bias=False, bos_token_id=151643,
        eos_token_id=151645,
    ),
}


def resolve_dtype(llm_cfg, device: str | torch.device | None = None) -> torch.dtype:
    """``llm.dtype`` as a torch dtype; ``auto`` = bfloat16 on CUDA, float32 elsewhere (CPU, meta).

    ``device=None`` means "where training will run": CUDA when available.
    """
    if llm_cfg.dtype != "auto":
        return getattr(torch, llm_cfg.dtype)
    if device is None:
        on_cuda = torch.cuda.is_available()
    else:
        on_cuda = torch.device(device).type == "cuda"
    return torch.bfloat16 if on_cuda else torch.float32


def llm_config(llm_cfg, vocab_size: int | None = None, allow_known: bool = False):
    """The transformers config of the LLM.

    ``from_config`` with ``model_type`` in the overrides: ``AutoConfig.for_model(**config_overrides)``,
    no hub access; vocab_size defaults to ``vocab_size`` (the tokenizer's length). Otherwise the config
    of ``name_or_path`` with the overrides applied. With ``allow_known`` or ``from_config`` (no weights
    are loaded: the meta-device plan, random weights of the real architecture), a hub id listed in
    :data:`KNOWN_LLM_CONFIGS` that is not a local folder takes its known values without contacting the hub
    (offline by default: no retries when there is no network).
    """
    from transformers import AutoConfig

    overrides = dict(llm_cfg.config_overrides)
    allow_known = allow_known or llm_cfg.from_config
    if llm_cfg.architecture_from_overrides:
        if vocab_size is not None:
            overrides.setdefault("vocab_size", vocab_size)
        try:
            return AutoConfig.for_model(**overrides)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"model.llm.config_overrides: {e}") from e
    name = llm_cfg.name_or_path
    if allow_known and name in KNOWN_LLM_CONFIGS and not Path(name).expanduser().exists():
        config = AutoConfig.for_model(**KNOWN_LLM_CONFIGS[name])
    else:
        try:
            config = AutoConfig.from_pretrained(name)
        except (OSError, ValueError) as e:
            hint = ("; with from_config, model.llm.config_overrides.model_type builds from the overrides alone"
                    if llm_cfg.from_config else "")
            raise ConfigError(f"model.llm.name_or_path: cannot read the config of "
                              f"{name!r} ({str(e).splitlines()[0]}){hint}") from e
    for key, value in overrides.items():
        if key != "model_type":
            setattr(config, key, value)
    return config


def build_llm(llm_cfg, vocab_size: int | None, device: str | torch.device | None = None) -> nn.Module:
    """The causal LM, in ``resolve_dtype(llm_cfg, device)``.

    - ``device="meta"``: the architecture only (no weights read), for parameter and memory plans.
    - ``from_config``: random init from :func:`llm_config` (seed it from the caller).
    - otherwise ``AutoModelForCausalLM.from_pretrained(name_or_path, dtype, attn_implementation)``.

    When the tokenizer has more tokens than the embedding table (a small tokenizer with the vision
    tokens added), the embeddings are resized; Qwen tokenizers already hold the vision tokens, so
    Qwen checkpoints are never resized.
    """
    from transformers import AutoModelForCausalLM

    dtype = resolve_dtype(llm_cfg, device)
    is_meta = device is not None and torch.device(device).type == "meta"
    attention = llm_attention(llm_cfg.attn_implementation)  # sdpa: vqkit's, which also runs packed rows
    if llm_cfg.from_config or is_meta:
        config = llm_config(llm_cfg, vocab_size, allow_known=is_meta)
        if is_meta:
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
        else:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(
                llm_cfg.name_or_path, dtype=dtype, attn_implementation=attention,
                **{k: v for k, v in llm_cfg.config_overrides.items() if k != "model_type"})
        except OSError as e:
            raise ConfigError(f"model.llm.name_or_path: cannot load {llm_cfg.name_or_path!r} "
                              f"({str(e).splitlines()[0]})") from e
    if vocab_size is not None and vocab_size > model.get_input_embeddings().num_embeddings:
        # pad_to_multiple_of keeps the matmul shapes friendly; the extra rows are never produced.
        model.resize_token_embeddings(vocab_size, pad_to_multiple_of=8)
    if llm_cfg.liger_kernels and not is_meta:
        from vqkit.models.liger import apply_liger_kernels

        apply_liger_kernels(model, device)
    if device is not None and not is_meta:
        model.to(device)
    return model


def apply_lora(model: nn.Module, lora_cfg) -> nn.Module:
    """Wrap the LLM with peft LoRA adapters when ``lora.enabled``; otherwise return it unchanged.

    The freeze itself is done (and asserted) by the VQModel; peft's own freezing is not relied on.
    """
    if not lora_cfg.enabled:
        return model
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in lora_cfg.target_modules if m not in names]
    if missing:
        raise ConfigError(f"model.lora.target_modules: {missing} not found in the LLM "
                          f"(linear layers there include q_proj, k_proj, v_proj, o_proj, gate_proj, "
                          f"up_proj, down_proj)")
    config = LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                        target_modules=list(lora_cfg.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def is_lora_param(name: str) -> bool:
    """True for the LoRA adapter weights of a peft-wrapped LLM."""
    return "lora_" in name
