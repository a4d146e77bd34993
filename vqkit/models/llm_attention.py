"""How the LLM's attention keeps apart what must not see each other: the turns of a multi-turn sample
(``data.turns``: :func:`turn_attention_mask`) and the samples of a packed row (``data.packing``).

A packed training batch (``data.packing``, :func:`vqkit.data.packing.pack_tokens`) holds its samples one after
another in one row of tokens: ``cu_seqlens`` [N + 1] says where each starts (cumulative token counts) and
``position_ids`` restart at 0 with every sample, so the rotary embedding sees each sample as it would alone.
Attention never crosses samples, by one of two paths (:func:`packed_llm_inputs`):

- **flash-attention** (``model.llm.attn_implementation: flash_attention_2`` / ``_3``, CUDA): transformers'
  own packed path, the varlen kernel over ``cu_seq_lens_q`` / ``cu_seq_lens_k`` and ``max_length_q`` /
  ``max_length_k``, which transformers hands to every attention layer;
- **SDPA** (everywhere else): the LLM's attention is :data:`ATTENTION` (``vqkit_packed``, registered with
  transformers' ``AttentionInterface``; :func:`packed_sdpa`). Given a :class:`PackedLayout` it runs attention per
  sample: the samples' queries, keys and values are gathered into groups of similar length (each padded to
  its group's longest), one ``scaled_dot_product_attention`` per group with each sample's own mask (causal,
  and with ``data.turns`` the turn mask of :func:`turn_attention_mask`), and scattered
  back. That is SDPA with the block-diagonal mask of the row, without computing the blocks off the
  diagonal, so a row's length costs nothing in attention and one row per micro-batch has no padding at
  all. Any other mask (evaluation, generation: unpacked batches) goes to transformers' SDPA unchanged.

Both paths warn once on CUDA when an attention call would run PyTorch's math kernel
(:func:`vqkit.utils.attention.warn_math_fallback`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vqkit.data.packing import is_packed
from vqkit.errors import ConfigError
from vqkit.utils.attention import warn_math_fallback

ATTENTION = "vqkit_packed"
"""The attention implementation vqkit gives an SDPA LLM (``model.llm.attn_implementation: sdpa``)."""
VARLEN = ("flash_attention_2", "flash_attention_3", "flash_attention_4")
"""Implementations that take packed rows through transformers' varlen kwargs (no mask)."""
GROUP_RATIO = 0.75
"""A group of samples holds lengths down to this fraction of its longest: few SDPA calls, little padding."""


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, packed_sdpa)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # unpacked batches get transformers' own SDPA mask


def llm_attention(attn_implementation: str) -> str:
    """The implementation name to build the LLM with: :data:`ATTENTION` for ``sdpa`` (registered here),
    any other unchanged."""
    if attn_implementation != "sdpa":
        return attn_implementation
    _register()
    return ATTENTION


def turn_attention_mask(attention_mask: torch.Tensor, turn_of: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The 4D additive mask [B, 1, L, L] of a multi-turn training batch (``data.turns``): each token sees
    the earlier tokens of the first turn's prompt (question and views) and of its own turn, never another
    turn's question or answer, so no answer can be copied from a neighbour: every turn reads the views
    as a sample of its own would. ``turn_of`` [B, L]: 0 for the shared prompt, k for turn k's tokens.
    transformers passes a 4D mask to the attention as it is (sdpa and eager; flash-attention takes none)."""
    L = turn_of.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=turn_of.device).tril()
    same_turn = (turn_of[:, None, :] == 0) | (turn_of[:, None, :] == turn_of[:, :, None])
    allowed = causal & same_turn & attention_mask.bool()[:, None, :]
    # Padding rows see themselves only, so their softmax stays finite (their outputs are never read).
    allowed |= torch.eye(L, dtype=torch.bool, device=turn_of.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=turn_of.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


@dataclass
class _Group:
    index: torch.Tensor
    """[n, L] the token (in the flattened row) at each slot; padding slots repeat the sample's first token."""
    valid: torch.Tensor
    """[n, L] bool: the slot holds one of the sample's tokens."""
    turn_of: torch.Tensor | None
    """[n, L] turn numbers (``data.turns``), or None: plain causal attention."""
    masks: dict = field(default_factory=dict)
    """The additive mask [n, 1, L, L] per dtype (built on first use)."""

    def mask(self, dtype: torch.dtype) -> torch.Tensor | None:
        if self.turn_of is None:
            return None
        if dtype not in self.masks:
            self.masks[dtype] = turn_attention_mask(self.valid.long(), self.turn_of, dtype)
        return self.masks[dtype]


@dataclass
class PackedLayout:
    """Where each sample of a packed batch sits, grouped by length for :func:`packed_sdpa`."""

    tokens: int
    """Tokens in the batch's rows (rows x row length)."""
    groups: list[_Group]
    flat: torch.Tensor
    """[real tokens] every group's valid slots in order: where the groups' outputs go."""
    attended: int = 0
    """Query-key pairs the groups compute (their padded squares): attention's work."""
    needed: int = 0
    """Query-key pairs the samples need (their own squares)."""

    @property
    def attention_padding_share(self) -> float:
        """The share of the groups' attention spent on padding slots."""
        return 1.0 - self.needed / max(self.attended, 1)


def sample_lengths(cu_seqlens: torch.Tensor) -> list[int]:
    return (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()


def build_layout(cu_seqlens: torch.Tensor, tokens: int, turn_of: torch.Tensor | None = None,
                 ratio: float | None = None) -> PackedLayout:
    """The groups of a packed batch: samples sorted by length (longest first, ties in row order) and cut
    into groups whose shortest is at least ``ratio`` of their longest. ``turn_of``: the batch's turn
    numbers flattened like its rows (``data.turns``), or None."""
    ratio = GROUP_RATIO if ratio is None else ratio
    lengths = sample_lengths(cu_seqlens)
    starts = cu_seqlens[:-1].tolist()
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    chunks: list[list[int]] = []
    for i in order:
        if lengths[i] == 0:
            continue
        if chunks and lengths[i] >= ratio * lengths[chunks[-1][0]]:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    device = cu_seqlens.device
    groups, flats, attended, needed = [], [], 0, 0
    for chunk in chunks:
        width = lengths[chunk[0]]
        slots = torch.arange(width, device=device)
        start = torch.tensor([starts[i] for i in chunk], device=device)[:, None]
        size = torch.tensor([lengths[i] for i in chunk], device=device)[:, None]
        valid = slots[None] < size
        index = torch.where(valid, start + slots[None], start)
        groups.append(_Group(index, valid, None if turn_of is None else turn_of[index] * valid))
        flats.append(index[valid])
        attended += len(chunk) * width * width
        needed += sum(lengths[i] ** 2 for i in chunk)
    flat = torch.cat(flats) if flats else torch.zeros(0, dtype=torch.long, device=device)
    return PackedLayout(tokens=tokens, groups=groups, flat=flat, attended=attended, needed=needed)


def _repeat_heads(x: torch.Tensor, times: int) -> torch.Tensor:
    return x if times == 1 else x.repeat_interleave(times, dim=1)


def packed_sdpa(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask,
                dropout: float = 0.0, scaling: float | None = None, **kwargs):
    """The LLM's attention (transformers' attention-function signature): per sample for a
    :class:`PackedLayout` (module docstring), transformers' SDPA for anything else.

    query [B, H, L, D], key / value [B, H_kv, L, D] -> ([B, L, H, D], None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not isinstance(attention_mask, PackedLayout):
        warn_math_fallback("the LLM", query, key, value, attention_mask if torch.is_tensor(attention_mask) else None,
                           dropout, is_causal=attention_mask is None)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    layout = attention_mask
    b, heads, length, dim = query.shape
    repeat = heads // key.shape[1]
    q = query.transpose(1, 2).reshape(b * length, heads, dim)
    k = key.transpose(1, 2).reshape(b * length, key.shape[1], dim)
    v = value.transpose(1, 2).reshape(b * length, value.shape[1], value.shape[-1])
    outputs = []
    for group in layout.groups:
        qg = q[group.index].transpose(1, 2)  # [n, H, L_g, D]
        kg = _repeat_heads(k[group.index].transpose(1, 2), repeat)
        vg = _repeat_heads(v[group.index].transpose(1, 2), repeat)
        mask = group.mask(qg.dtype)
        warn_math_fallback("the LLM (packed)", qg, kg, vg, mask, dropout, is_causal=mask is None)
        # Without turns, causal attention alone keeps a sample's queries off its padding slots (they come after).
        out = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=mask, dropout_p=dropout, scale=scaling,
                                             is_causal=mask is None)
        outputs.append(out.transpose(1, 2)[group.valid])  # [tokens of the group, H, D]
    merged = torch.cat(outputs) if outputs else q.new_zeros(0, heads, v.shape[-1])
    out = q.new_zeros(b * length, heads, v.shape[-1]).index_put((layout.flat,), merged)
    return out.view(b, length, heads, v.shape[-1]), None


def flash_kwargs(cu_seqlens: torch.Tensor) -> dict:
    """transformers' varlen kwargs of a packed row (flash-attention)."""
    cu = cu_seqlens.to(torch.int32)
    longest = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


def llm_attention_inputs(llm, batch: dict, dtype: torch.dtype) -> tuple[object, dict]:
    """The LLM's ``attention_mask`` argument and further forward kwargs for a (device) batch: the padding
    mask; with ``turn_of`` the 4D turn mask (:func:`turn_attention_mask`); packed, what
    :func:`packed_llm_inputs` gives."""
    if is_packed(batch):
        return packed_llm_inputs(llm, batch)
    mask = batch["attention_mask"]
    if "turn_of" in batch:  # several questions about the same views, each turn on its own
        mask = turn_attention_mask(mask, batch["turn_of"], dtype)
    return mask, {}


def packed_llm_inputs(llm, batch: dict) -> tuple[object, dict]:
    """(the LLM's ``attention_mask`` argument, further forward kwargs) of a packed batch: ``position_ids``
    and, for flash-attention, the varlen kwargs with no mask; for SDPA a :class:`PackedLayout` for every
    layer type (transformers passes a dict of masks by layer type to the layers as it is)."""
    config = llm.config
    implementation = config._attn_implementation
    kwargs = {"position_ids": batch["position_ids"]}
    cu_seqlens = batch["cu_seqlens"]
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    if layer_types != {"full_attention"}:
        raise ConfigError(f"data.packing: the LLM has {sorted(layer_types)} attention layers; packed rows need full "
                          f"attention in every layer (set data.packing=false)")
    if implementation in VARLEN:
        if "turn_of" in batch:
            raise ConfigError(f"data.turns needs a 4D attention mask, which {implementation} does not take; use sdpa")
        return None, {**kwargs, **flash_kwargs(cu_seqlens)}
    if implementation == "sdpa":
        raise ConfigError("a packed batch needs vqkit's SDPA: transformers' own would attend across the packed "
                          "samples; build the LLM with vqkit.models.llm.build_llm")
    if implementation != ATTENTION:
        raise ConfigError(f"data.packing needs model.llm.attn_implementation sdpa or flash_attention_2/3, "
                          f"got {implementation!r}")
    turn_of = batch.get("turn_of")
    layout = build_layout(cu_seqlens, batch["input_ids"].numel(), None if turn_of is None else turn_of.flatten())
    return {"full_attention": layout}, kwargs


__all__ = ["ATTENTION", "PackedLayout", "build_layout", "flash_kwargs", "llm_attention", "llm_attention_inputs",
           "packed_llm_inputs", "packed_sdpa", "turn_attention_mask"]
