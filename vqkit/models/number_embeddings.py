"""Number tokens that start from an embedding of their value (``model.llm.number_embeddings: fourier``).

A box line writes its place as whole-number tokens ("x=120 y=350", centimetres). An LLM built from
its config starts every one of them from an unrelated random vector, so "120" and "130" are as far
apart as "120" and "800", and each value's embedding (which, tied, is also its row of the output
head) is learned from the few answers that contain it. Here each number token's embedding starts as
its own random vector plus a fixed projection of sines and cosines of its value read as centimetres
(periods from 25.6 m down to 0.2 m, twice the demo's 10 cm step), as Fourier number embeddings do
(Zhou et al., "FoNE", 2025): neighbouring values start close, and a hidden state that carries a
position reads out as the tokens near it.

Only for an LLM built from its config: a pretrained LLM's embeddings are its own and are kept.
"""

from __future__ import annotations

import math
import re

import torch

#: Periods of the sines and cosines, in centimetres (the box grammar's unit).
PERIODS_CM = tuple(20.0 * 2 ** k for k in range(8))  # 0.2 m ... 25.6 m

_INTEGER = re.compile(r"-?\d+")
_SPACE_MARKERS = "Ġ▁ "


def number_token_values(tokenizer) -> dict[int, int]:
    """Token id -> value, for every token of ``tokenizer``'s vocabulary that is a whole number
    (with or without the tokenizer's leading-space marker)."""
    values = {}
    for token, token_id in tokenizer.get_vocab().items():
        text = token.lstrip(_SPACE_MARKERS)
        if _INTEGER.fullmatch(text):
            values[token_id] = int(text)
    return values


def value_features(values: torch.Tensor) -> torch.Tensor:
    """[N] values in centimetres -> [N, 2 * len(PERIODS_CM)] sines and cosines."""
    omegas = values.new_tensor([2 * math.pi / p for p in PERIODS_CM])
    angles = values[:, None].to(omegas.dtype) * omegas
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


@torch.no_grad()
def add_value_embeddings(embeddings: torch.nn.Module, values: dict[int, int], generator: torch.Generator) -> int:
    """Add to each number token's row of ``embeddings`` (an input embedding or an output head: a
    ``weight`` of [vocab, hidden]) a fixed random projection of its value's features, at the scale of
    the rows themselves (their standard deviation): a number token's embedding starts half its value,
    half its own. Returns how many rows it changed."""
    if not values:
        return 0
    weight = embeddings.weight
    ids = torch.tensor(sorted(values), dtype=torch.long)
    ids = ids[ids < weight.shape[0]]
    feats = value_features(torch.tensor([values[int(i)] for i in ids], dtype=torch.float32))  # [N, F]
    projection = torch.randn(feats.shape[1], weight.shape[1], generator=generator)
    value_part = feats @ projection / math.sqrt(feats.shape[1] / 2)  # unit variance per dimension
    ids = ids.to(weight.device)
    rows = weight.data[ids]
    weight.data[ids] = rows + (value_part * rows.float().std()).to(rows)
    return len(ids)


def init_number_embeddings(llm: torch.nn.Module, tokenizer, seed: int) -> int:
    """:func:`add_value_embeddings` on ``llm``'s input embeddings and, when it is not tied to them, its
    output head, with one projection of the values (seeded by ``seed``). Returns the rows changed per table."""
    values = number_token_values(tokenizer)
    tables = {id(t.weight): t for t in (llm.get_input_embeddings(), llm.get_output_embeddings()) if t is not None}
    return max(add_value_embeddings(t, values, torch.Generator().manual_seed(seed)) for t in tables.values())
