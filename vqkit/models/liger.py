"""The answer loss of the LLM, and Liger's kernels for it (``model.llm.liger_kernels``).

:func:`answer_loss` is the training loss of :class:`~vqkit.models.vqmodel.VQModel`: the mean
cross-entropy over the label tokens, with the LM head run only at the positions whose next token is
labelled in some sample of the batch (a question's answer and its end token; the vision and prompt
positions need no logits). Two ways, the same value:

- plain (the default): transformers' forward with ``logits_to_keep`` at those positions, then the
  cross-entropy in fp32;
- fused (``liger_kernels: true``): the decoder's hidden states at those positions go to Liger's fused
  linear cross-entropy, which computes the LM head and the loss in chunks and never holds the
  ``[positions, vocabulary]`` logits (151,936 columns for Qwen3).

:func:`apply_liger_kernels` swaps in Liger's RMSNorm, SwiGLU and RoPE kernels (Liger's own instance
patching, as its authors document it; its RoPE replacement is module-wide, so every model of that
architecture in the process uses it). Liger's kernels are Triton GPU kernels: asking for them on a CPU
run, or without the ``liger-kernel`` package (``pip install 'vqkit[gpu]'``), is a one-line
:class:`~vqkit.errors.ConfigError`, never a silent fallback.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vqkit.errors import ConfigError
from vqkit.utils.runtime import resolve_device

FIELD = "model.llm.liger_kernels"
# Liger's kernels that vqkit switches on; its cross-entropy patches stay off (vqkit computes the loss).
KERNELS = {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False,
           "fused_linear_cross_entropy": False}


def require_liger(device: str | torch.device | None = None) -> None:
    """Raise a one-line ConfigError unless Liger's kernels can run where training will run
    (``device``; None = this process's GPU when there is one)."""
    target = resolve_device(device)
    if target.type != "cuda":
        raise ConfigError(f"{FIELD}: Liger's kernels are Triton GPU kernels and this run is on the "
                          f"{target.type}; set {FIELD}=false there")
    if importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError(f"{FIELD}: the liger-kernel package is not installed (pip install 'vqkit[gpu]')")


def apply_liger_kernels(model: nn.Module, device: str | torch.device | None = None) -> nn.Module:
    """Liger's RMSNorm, SwiGLU and RoPE in a transformers causal LM (before LoRA is applied), in place."""
    require_liger(device)
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    model_type = getattr(model.config, "model_type", None)
    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model_type)
    if apply is None:
        raise ConfigError(f"{FIELD}: Liger has no kernels for model_type {model_type!r}")
    accepted = inspect.signature(apply).parameters
    apply(model=model, **{k: v for k, v in KERNELS.items() if k in accepted})
    return model


def _causal_lm(llm: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (the LoRA layers are inside it)."""
    return llm.get_base_model() if hasattr(llm, "get_base_model") else llm


_LIGER_LOSS: list = []


def liger_fused_linear_cross_entropy(weight: torch.Tensor, hidden: torch.Tensor, targets: torch.Tensor):
    """Liger's fused LM head + cross-entropy (mean over targets that are not -100)."""
    if not _LIGER_LOSS:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        _LIGER_LOSS.append(LigerFusedLinearCrossEntropyLoss(ignore_index=-100))
    return _LIGER_LOSS[0](weight, hidden, targets)


def answer_loss(llm: nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                *, fused: bool = False, fused_loss: Callable | None = None):
    """The mean cross-entropy over the label tokens (module docstring), as a transformers
    ``CausalLMOutputWithPast``: ``loss``, and ``logits`` [B, K, V] at the K positions whose next token is
    labelled in some sample (None when ``fused``).

    ``fused_loss(lm_head_weight [V, D], hidden [N, D], targets [N])``: the fused LM head + loss (default
    Liger's; tests pass a plain one to check the hidden-state path on the CPU).
    """
    targets = labels[:, 1:]
    keep = (targets != -100).any(dim=0).nonzero().flatten()  # position p predicts token p + 1
    if not fused:
        out = llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False, logits_to_keep=keep)
        logits = out.logits
        out.loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets[:, keep].reshape(-1),
                                   ignore_index=-100)
        return out
    from transformers.modeling_outputs import CausalLMOutputWithPast

    model = _causal_lm(llm)
    hidden = model.get_decoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                 use_cache=False).last_hidden_state
    hidden = hidden[:, keep]
    loss = (fused_loss or liger_fused_linear_cross_entropy)(
        model.get_output_embeddings().weight, hidden.reshape(-1, hidden.shape[-1]), targets[:, keep].reshape(-1))
    return CausalLMOutputWithPast(loss=loss, logits=None)


__all__ = ["answer_loss", "apply_liger_kernels", "require_liger"]
