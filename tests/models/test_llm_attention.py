"""Attention over a packed row: per sample (SDPA in length groups) equals SDPA with the row's block-diagonal
mask, turns included; flash-attention's varlen path gets transformers' kwargs; unpacked batches (evaluation,
generation) run transformers' SDPA unchanged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import TINY_QWEN3

from vqkit.errors import ConfigError
from vqkit.models import llm_attention
from vqkit.models.answer_loss import answer_loss
from vqkit.models.llm_attention import (
    ATTENTION,
    PackedLayout,
    build_layout,
    flash_kwargs,
    packed_llm_inputs,
    packed_sdpa,
    turn_attention_mask,
)


def _row(lengths, turns=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    turn_of = None
    if turns:  # each sample: a shared prompt (0), then turns 1, 2, ... of 3 tokens
        turn_of = torch.cat([torch.tensor([0] * (n // 3) + [1 + k // 3 for k in range(n - n // 3)]) for n in lengths])
    return cu, turn_of, g


def _block_diagonal_reference(q, k, v, cu, turn_of):
    """SDPA over the whole row with the dense mask: same sample, causal, and the turn rule."""
    T = q.shape[2]
    sample = torch.repeat_interleave(torch.arange(len(cu) - 1), cu[1:] - cu[:-1])
    allowed = (sample[:, None] == sample[None, :]) & torch.ones(T, T, dtype=torch.bool).tril()
    if turn_of is not None:
        allowed &= (turn_of[None, :] == 0) | (turn_of[None, :] == turn_of[:, None])
    return F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), attn_mask=allowed)


@pytest.mark.parametrize("turns", [False, True])
def test_packed_sdpa_equals_the_block_diagonal_mask(turns):
    lengths = [17, 5, 30, 29, 12, 1, 23]
    cu, turn_of, g = _row(lengths, turns)
    T = sum(lengths)
    q = torch.randn(1, 4, T, 8, generator=g, requires_grad=True)
    k = torch.randn(1, 2, T, 8, generator=g, requires_grad=True)  # grouped-query: 2 key heads for 4
    v = torch.randn(1, 2, T, 8, generator=g, requires_grad=True)
    layout = build_layout(cu, T, turn_of)
    assert len(layout.groups) > 1 and sorted(layout.flat.tolist()) == list(range(T))
    out, _ = packed_sdpa(None, q, k, v, layout)
    ref = _block_diagonal_reference(q, k, v, cu, turn_of).transpose(1, 2)
    assert out.shape == (1, T, 4, 8)
    assert torch.allclose(out, ref, atol=1e-6)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), grad)
    want = torch.autograd.grad(ref, (q, k, v), grad)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want, strict=True))


def test_groups_hold_similar_lengths():
    layout = build_layout(torch.tensor([0, 100, 180, 190, 290, 370]), 370)
    widths = [int(g.index.shape[1]) for g in layout.groups]
    members = [int(g.index.shape[0]) for g in layout.groups]
    assert widths == [100, 10] and members == [4, 1]  # 100, 100, 80, 80 | 10 (80 >= 0.75 x 100)
    assert layout.needed == 2 * 100**2 + 2 * 80**2 + 10**2 and layout.attended == 4 * 100**2 + 10**2
    assert abs(layout.attention_padding_share - (1 - 32900 / 40100)) < 1e-9


def _tiny_llm(implementation):
    from transformers import AutoConfig, AutoModelForCausalLM

    llm_attention.llm_attention("sdpa")  # registers vqkit's attention
    torch.manual_seed(0)
    config = AutoConfig.for_model(vocab_size=64, **TINY_QWEN3)
    return AutoModelForCausalLM.from_config(config, attn_implementation=implementation).eval()


def test_unpacked_batches_run_transformers_sdpa_unchanged():
    ours, theirs = _tiny_llm(ATTENTION), _tiny_llm("sdpa")
    ids = torch.randint(1, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, :3] = 0  # left padding, as generation has it
    logits = [llm(input_ids=ids, attention_mask=mask).logits for llm in (ours, theirs)]
    assert torch.equal(*logits)
    kwargs = {"attention_mask": mask, "max_new_tokens": 5, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(ours.generate(input_ids=ids, **kwargs), theirs.generate(input_ids=ids, **kwargs))
    packed = {"position_ids": torch.arange(9)[None], "cu_seqlens": torch.tensor([0, 4, 9]),
              "input_ids": ids[:1]}
    assert isinstance(packed_llm_inputs(ours, packed)[0]["full_attention"], PackedLayout)
    with pytest.raises(ConfigError, match="transformers' own would attend across the packed samples"):
        packed_llm_inputs(theirs, packed)


def _varlen_reference(module, query, key, value, attention_mask, dropout=0.0, scaling=None, cu_seq_lens_q=None,
                      max_length_q=None, **kwargs):
    """A varlen attention in plain torch (what flash-attention's kernel computes), for the CPU."""
    assert attention_mask is None and cu_seq_lens_q is not None and max_length_q > 0
    key, value = (x.repeat_interleave(query.shape[1] // x.shape[1], 1) for x in (key, value))
    parts = [F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True,
                                            scale=scaling) for a, b in zip(cu_seq_lens_q[:-1], cu_seq_lens_q[1:],
                                                                            strict=True)]
    return torch.cat(parts, dim=2).transpose(1, 2), None


def test_flash_attention_gets_the_varlen_kwargs(monkeypatch):
    """The flash-attention path, with a plain-torch varlen kernel in flash-attention's place: the packed
    loss equals the padded batch's."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register("test_varlen", _varlen_reference)
    AttentionMaskInterface.register("test_varlen", flash_attention_mask)
    monkeypatch.setattr(llm_attention, "VARLEN", ("test_varlen",))
    varlen, padded_llm = _tiny_llm("test_varlen"), _tiny_llm("sdpa")
    g = torch.Generator().manual_seed(2)
    lengths = [7, 12, 4]
    embeds = [torch.randn(n, 32, generator=g) for n in lengths]
    labels = [torch.where(torch.rand(n, generator=g) < 0.5, torch.randint(0, 64, (n,), generator=g), -100)
              for n in lengths]
    for lab in labels:
        lab[0] = -100
    L = max(lengths)
    padded = torch.zeros(3, L, 32)
    padded_labels = torch.full((3, L), -100)
    mask = torch.zeros(3, L, dtype=torch.long)
    for i, n in enumerate(lengths):
        padded[i, :n], padded_labels[i, :n], mask[i, :n] = embeds[i], labels[i], 1
    batch = {"position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
             "cu_seqlens": torch.tensor([0, 7, 19, 23]), "input_ids": torch.zeros(1, 23, dtype=torch.long)}
    attention, kwargs = packed_llm_inputs(varlen, batch)
    assert attention is None and kwargs["max_length_q"] == 12
    assert kwargs["cu_seq_lens_q"].tolist() == [0, 7, 19, 23]
    assert kwargs["cu_seq_lens_k"].tolist() == flash_kwargs(batch["cu_seqlens"])["cu_seq_lens_q"].tolist()
    packed_loss = answer_loss(varlen, torch.cat(embeds)[None], attention, torch.cat(labels)[None], **kwargs).loss
    padded_loss = answer_loss(padded_llm, padded, mask, padded_labels).loss
    assert torch.allclose(packed_loss, padded_loss, atol=1e-6)
    with pytest.raises(Exception, match="4D attention mask"):
        packed_llm_inputs(varlen, {**batch, "turn_of": torch.zeros(1, 23, dtype=torch.long)})


def test_turn_mask_of_a_group_is_the_unpacked_turn_mask():
    """A sample's mask in its group is exactly the mask its own padded row would get."""
    lengths = [9, 8]
    cu, turn_of, _ = _row(lengths, turns=True)
    layout = build_layout(cu, 17, turn_of)
    group = layout.groups[0]
    assert group.index.shape == (2, 9)
    own = turn_attention_mask(group.valid.long(), group.turn_of, torch.float32)
    assert torch.equal(group.mask(torch.float32), own)
    assert group.mask(torch.float32) is group.mask(torch.float32)  # built once per forward
