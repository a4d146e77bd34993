"""The answer loss with Liger's kernels off (the CPU path): transformers' own loss on the same inputs; the
fused path's plumbing (decoder hidden states at the answer positions -> LM head + loss) gives the same
value and gradients with a plain fused loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config

from vqkit.data.dataset import build_dataloader
from vqkit.models.answer_loss import answer_loss
from vqkit.models.builder import build_model
from vqkit.tokenizer import load_tokenizer


@pytest.fixture
def lora_model_and_batch(corpus, tokenizer_dir):
    """A tiny model with LoRA adapters (peft-wrapped LLM, as at real size) and a batch of 4."""
    cfg = tiny_config(corpus.root, tokenizer_dir)
    cfg.model.lora.enabled, cfg.model.lora.full_finetune, cfg.model.lora.dropout = True, False, 0.0
    tokenizer = load_tokenizer(cfg.model.llm)
    model = build_model(cfg, tokenizer).train()
    batch = next(iter(build_dataloader(cfg, "train", tokenizer, batch_size=4, shuffle=False)))
    return model, batch


def plain_fused_loss(weight: torch.Tensor, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """What Liger's fused linear cross-entropy computes, unfused."""
    return F.cross_entropy((hidden @ weight.T).float(), targets, ignore_index=-100)


def test_loss_with_liger_off_is_transformers_own_loss(lora_model_and_batch):
    model, batch = lora_model_and_batch
    assert model.config.model.llm.liger_kernels is False
    with torch.no_grad():
        ours = model(batch).loss
        embeds = model.embed_inputs(batch)
        # transformers' causal-LM loss: logits everywhere, shifted labels, mean over labelled tokens
        theirs = model.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"],
                           use_cache=False).loss
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_fused_path_gives_the_same_loss_and_gradients(lora_model_and_batch):
    model, batch = lora_model_and_batch
    results = []
    for fused in (False, True):
        model.zero_grad(set_to_none=True)
        embeds = model.embed_inputs(batch)
        out = answer_loss(model.llm, embeds, batch["attention_mask"], batch["labels"], fused=fused,
                          fused_loss=plain_fused_loss)
        out.loss.backward()
        assert (out.logits is None) == fused
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.loss.detach(), grads))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
    assert results[0][1].keys() == results[1][1].keys() and any("lora_" in n for n in results[0][1])
    for name, grad in results[0][1].items():
        torch.testing.assert_close(grad, results[1][1][name], rtol=1e-5, atol=1e-7)
