"""The answer loss: the training loss of :class:`~vqkit.models.vqmodel.VQModel`.

The mean cross-entropy over the label tokens, with the LM head run only at the positions whose next
token is labelled in some sample of the batch (a question's answer and its end token; the vision and
prompt positions need no logits). Two ways, the same value:

- plain (the default): transformers' forward with ``logits_to_keep`` at those positions, then the
  cross-entropy in fp32;
- fused (``model.llm.liger_kernels: true``): the decoder's hidden states at those positions go to
  Liger's fused linear cross-entropy (:mod:`vqkit.models.liger`), which computes the LM head and the
  loss in chunks and never holds the ``[positions, vocabulary]`` logits (151,936 columns for Qwen3).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vqkit.models.liger import liger_fused_linear_cross_entropy


def _causal_lm(llm: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (the LoRA layers are inside it)."""
    return llm.get_base_model() if hasattr(llm, "get_base_model") else llm


def answer_loss(llm: nn.Module, inputs_embeds: torch.Tensor, attention_mask, labels: torch.Tensor,
                *, fused: bool = False, fused_loss: Callable | None = None, **llm_kwargs):
    """The mean cross-entropy over the label tokens (module docstring), as a transformers
    ``CausalLMOutputWithPast``: ``loss``, and ``logits`` [B, K, V] at the K positions whose next token is
    labelled in some sample (None when ``fused``).

    ``fused_loss(lm_head_weight [V, D], hidden [N, D], targets [N])``: the fused LM head + loss (default
    Liger's; tests pass a plain one to check the hidden-state path on the CPU). ``llm_kwargs``: further
    arguments of the LLM's forward (a packed batch's ``position_ids`` and varlen lengths).
    """
    targets = labels[:, 1:]
    keep = (targets != -100).any(dim=0).nonzero().flatten()  # position p predicts token p + 1
    if not fused:
        out = llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False, logits_to_keep=keep,
                  **llm_kwargs)
        logits = out.logits
        out.loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets[:, keep].reshape(-1),
                                   ignore_index=-100)
        return out
    from transformers.modeling_outputs import CausalLMOutputWithPast

    model = _causal_lm(llm)
    hidden = model.get_decoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False,
                                 **llm_kwargs).last_hidden_state
    hidden = hidden[:, keep]
    loss = (fused_loss or liger_fused_linear_cross_entropy)(
        model.get_output_embeddings().weight, hidden.reshape(-1, hidden.shape[-1]), targets[:, keep].reshape(-1))
    return CausalLMOutputWithPast(loss=loss, logits=None)


__all__ = ["answer_loss"]
