"""Each merged cell's 3D point written with the LLM's own number tokens (``model.projector.point_numbers``).

A grounding answer is an object line, ``chair x=120 y=-80 w=45 h=90 d=48 yaw=0``: to write ``x=120`` the
LLM has to turn what it sees into the number token ``120``. The Fourier features of
:mod:`vqkit.models.patch_points` tell it where a cell is, but in a code it must first learn to translate
into tokens. Here each cell also carries the embeddings of the number tokens its own point would be
written with (its mean point's x, y and height in centimetres, rounded to ``data.box_step_cm`` as the
answers are), each axis scaled by a learned vector so that x, y and z stay apart, and a learned vector
for a negative coordinate. With tied input and output embeddings (the demo's Qwen3) writing the
referent's x is then a copy: attend to its cells and read the token back out.

A value whose number is not one token of the tokenizer (or beyond ``max_cm``) adds nothing for that axis.
"""

from __future__ import annotations

import torch
from torch import nn


class PointNumbers(nn.Module):
    """Cells' points [B, S, cells, 3] (metres) -> [B, S, cells, D]: the sum over the axes of the embedding
    of the point's rounded magnitude in centimetres, times the axis's learned scale, plus the learned
    negative vector for each negative coordinate."""

    def __init__(self, dim: int, step_cm: int, max_cm: int = 2000):
        super().__init__()
        self.step_cm = int(step_cm)
        self.max_cm = int(max_cm)
        self.axis_scale = nn.Parameter(torch.ones(3, dim))
        self.negative = nn.Parameter(torch.zeros(3, dim))
        # token id of each multiple of step_cm up to max_cm, -1 where it is not one token: set_vocabulary
        self.register_buffer("token_ids", torch.full((self.max_cm // self.step_cm + 1,), -1, dtype=torch.long),
                             persistent=False)

    def set_vocabulary(self, tokenizer) -> None:
        """Read the number tokens' ids from ``tokenizer`` (a number the tokenizer splits gets none)."""
        vocab = tokenizer.get_vocab()
        ids = [vocab.get(str(k * self.step_cm), -1) for k in range(len(self.token_ids))]
        self.token_ids.copy_(torch.tensor(ids, dtype=torch.long))

    def forward(self, cell: torch.Tensor, has_point: torch.Tensor, embedding: nn.Embedding) -> torch.Tensor:
        """cell [B, S, cells, 3]: each cell's mean point (metres), has_point bool [B, S, cells] ->
        [B, S, cells, D] (a cell without a point adds nothing); ``embedding``: the LLM's input embeddings."""
        index = torch.round(cell.abs() * 100.0 / self.step_cm).long()
        ids = self.token_ids[index.clamp(max=len(self.token_ids) - 1)]
        known = (ids >= 0) & (index < len(self.token_ids)) & has_point[..., None]
        weight = embedding.weight
        numbers = weight[ids.clamp(min=0)] * known[..., None].to(weight.dtype)  # [B, S, cells, 3, D]
        negative = ((cell < 0) & has_point[..., None])[..., None].to(weight.dtype)
        return (numbers * self.axis_scale.to(weight.dtype) + negative * self.negative.to(weight.dtype)).sum(-2)
