"""What a frozen aggregator's features tell about a room's objects, read without an LLM.

A small probe is trained on the cached features of the synthetic rooms' views to answer, for every
object category at once, "what colour are the <category>s here, or are there none?". It is the
question a demo model must answer for the colour, which-object and existence families, asked of the
features directly and densely (every category of every room is a training target). So it bounds what
a connector and LLM of the demo's size can read from the same features in the same data, in a few
CPU-minutes instead of a training run: screen encoder levers with it before training the model.

The probe reads the features as the patch merger does (LayerNorm, 2 x 2 neighbours merged by an MLP,
learned view and cell embeddings, the camera and register tokens left out); one learned query per
category attends over every merged cell of every view, and a linear head picks a colour or "absent".

Scores on the validation rooms:
- ``colour_accuracy``: categories present in the room whose colour is named right ("absent" is wrong),
- ``presence_accuracy``: categories called present or absent right,
with what always answering the most frequent training answer scores (``*_chance``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vqkit.models.patch_merger import merge_patches, merged_grid
from vqkit.synth.catalogue import CATEGORIES, COLOURS
from vqkit.utils.runtime import set_seed

ABSENT = len(COLOURS)
"""Target of a category with no visible instance in the room."""


def object_targets(layout: dict) -> list[int]:
    """One target per category of :data:`CATEGORIES` (in its order): the colour index of the
    category's objects when at least one of them is well visible in a view, else :data:`ABSENT`.
    All instances of a category share one colour in the synthetic rooms."""
    targets = [ABSENT] * len(CATEGORIES)
    order = list(CATEGORIES)
    for obj in layout["objects"]:
        if obj["visible_views"]:
            targets[order.index(obj["category"])] = COLOURS.index(obj["colour"])
    return targets


class ObjectProbe(nn.Module):
    """Features [B, S, P, C] of S views -> logits [B, categories, colours + 1]."""

    def __init__(self, channels: int, grid_hw: tuple[int, int], *, num_special_tokens: int, max_views: int,
                 merge_size: int = 2, width: int = 128, num_heads: int = 4):
        super().__init__()
        self.grid_hw, self.merge, self.special = tuple(grid_hw), merge_size, num_special_tokens
        rows, cols = merged_grid(grid_hw, merge_size)
        self.norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels * merge_size ** 2, 2 * width), nn.GELU(),
                                 nn.Linear(2 * width, width))
        self.view_embed = nn.Parameter(torch.randn(max_views, 1, width) * 0.02)
        self.cell_embed = nn.Parameter(torch.randn(rows * cols, width) * 0.02)
        self.queries = nn.Parameter(torch.randn(len(CATEGORIES), width) * 0.02)
        self.attn = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, ABSENT + 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, s = features.shape[:2]
        x = merge_patches(self.norm(features[:, :, self.special:].float()), self.grid_hw, self.merge)
        x = self.mlp(x) + self.cell_embed + self.view_embed[:s]  # [B, S, cells, W]
        x = x.flatten(1, 2)
        out, _ = self.attn(self.queries.expand(b, -1, -1), x, x, need_weights=False)
        return self.head(out)


def _scores(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    pred = logits.argmax(-1)
    present = targets != ABSENT
    colour = (pred[present] == targets[present]).float().mean().item() if present.any() else float("nan")
    presence = ((pred != ABSENT) == present).float().mean().item()
    return colour, presence


def chance_scores(train_targets: torch.Tensor, val_targets: torch.Tensor) -> tuple[float, float]:
    """(colour, presence) accuracy of always giving the most frequent training answer."""
    present = train_targets != ABSENT
    colour = torch.bincount(train_targets[present], minlength=ABSENT).argmax()
    val_present = val_targets != ABSENT
    colour_chance = (val_targets[val_present] == colour).float().mean().item()
    says_present = bool(present.float().mean() >= 0.5)
    presence_chance = (val_present == says_present).float().mean().item()
    return colour_chance, presence_chance


def fit_probe(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
              grid_hw: tuple[int, int], *, num_special_tokens: int, epochs: int = 30, batch_size: int = 64,
              lr: float = 1e-3, merge_size: int = 2, seed: int = 0, log=None) -> dict:
    """Train a probe on (features [N, S, P, C], targets [N, categories]) and score it on ``val``.

    Returns the scores of the last epoch, chance levels and the sizes; ``log(epoch, loss, colour,
    presence)`` is called every 5 epochs."""
    set_seed(seed)
    feats, targets = train
    probe = ObjectProbe(feats.shape[-1], grid_hw, num_special_tokens=num_special_tokens,
                        max_views=feats.shape[1], merge_size=merge_size)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)

    def evaluate() -> tuple[float, float]:
        probe.eval()
        with torch.no_grad():
            logits = torch.cat([probe(val[0][i:i + 256]) for i in range(0, len(val[0]), 256)])
        probe.train()
        return _scores(logits, val[1])

    colour = presence = float("nan")
    for epoch in range(1, epochs + 1):
        for idx in torch.randperm(len(feats), generator=order).split(batch_size):
            loss = F.cross_entropy(probe(feats[idx]).flatten(0, 1), targets[idx].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch % 5 == 0 or epoch == epochs:
            colour, presence = evaluate()
            if log:
                log(epoch, loss.item(), colour, presence)
    colour_chance, presence_chance = chance_scores(targets, val[1])
    return {"colour_accuracy": colour, "presence_accuracy": presence, "colour_chance": colour_chance,
            "presence_chance": presence_chance, "train_rooms": len(feats), "val_rooms": len(val[0]),
            "epochs": epochs}
