"""A per-patch semantic and colour objective for the aggregator (``vqkit pretrain-encoder``'s
``encoder_pretrain.semantic_weight`` / ``colour_weight``).

The real VGGT's encoder starts from DINOv2, whose pretraining teaches every patch token what it shows.
A randomly initialised stand-in has no such start: its tokens carry the colours but not which object
is where. This objective gives that back at demo size: a linear head on one aggregator layer predicts,
for each of ``cells x cells`` sub-cells of every patch,

- the **class distribution** of the sub-cell's pixels in the record's semantic map (soft cross-entropy;
  classes weighted by the inverse square root of their frequency in the batch, so small objects count
  next to walls and floor; unlabelled pixels are left out), and
- the sub-cell's **mean colour** (MSE on [0, 1] RGB; needs no labels), which keeps the appearance the
  question answering reads.

The head is a pretraining device, like DINOv2's projection heads: the weights file keeps the aggregator.

    head = PatchSemanticHead(dim_in=2 * embed_dim, num_classes=15, cells=2)
    logits, colour = head(tokens[:, :, patch_start_idx:])      # [B, S, P, 4, 15], [B, S, P, 4, 3]
    targets = patch_targets(images, semantics, patch_size=14, cells=2, num_classes=15)
    losses = semantic_losses(logits, colour, targets, view_mask)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

UNLABELLED = 255
"""A semantic map's value for pixels without a class (the data loader pads with it too)."""


class PatchSemanticHead(nn.Module):
    """LayerNorm, then two linear maps of each patch token: class logits and mean colour of its sub-cells."""

    def __init__(self, dim_in: int, num_classes: int, cells: int = 2):
        super().__init__()
        self.num_classes, self.cells = num_classes, cells
        self.norm = nn.LayerNorm(dim_in)
        self.classes = nn.Linear(dim_in, cells * cells * num_classes) if num_classes else None
        self.colour = nn.Linear(dim_in, cells * cells * 3)

    def forward(self, patch_tokens: Tensor) -> tuple[Tensor | None, Tensor]:
        """patch_tokens [B, S, P, C] -> logits [B, S, P, cells^2, classes] (None with ``num_classes=0``:
        colour only), colour [B, S, P, cells^2, 3]."""
        x = self.norm(patch_tokens.float())
        n = self.cells * self.cells
        logits = self.classes(x).unflatten(-1, (n, self.num_classes)) if self.classes is not None else None
        return logits, self.colour(x).unflatten(-1, (n, 3))


@dataclass
class PatchTargets:
    """Per patch sub-cell: the class distribution (zeros where unlabelled), its labelled-pixel mask, the
    mean colour. Shapes [B, S, P, cells^2, classes], [B, S, P, cells^2], [B, S, P, cells^2, 3]."""

    class_dist: Tensor | None
    labelled: Tensor | None
    colour: Tensor


def _cells_to_patches(grid: Tensor, patch_grid: tuple[int, int], cells: int) -> Tensor:
    """[B, S, X, gh * cells, gw * cells] per-cell values -> [B, S, gh * gw, cells^2, X] in the
    aggregator's patch order (row-major) and each patch's sub-cells row-major."""
    B, S, X = grid.shape[:3]
    gh, gw = patch_grid
    grid = grid.reshape(B, S, X, gh, cells, gw, cells)
    return grid.permute(0, 1, 3, 5, 4, 6, 2).reshape(B, S, gh * gw, cells * cells, X)


def patch_targets(images: Tensor, semantics: Tensor | None, *, patch_size: int, cells: int,
                  num_classes: int) -> PatchTargets:
    """The objective's targets from images [B, S, 3, H, W] in [0, 1] and semantic maps [B, S, H, W]
    (class indices, :data:`UNLABELLED` = none; None: colour targets only). H and W are multiples of
    ``patch_size``, which ``cells`` divides."""
    B, S, _, H, W = images.shape
    cell = patch_size // cells
    patch_grid = (H // patch_size, W // patch_size)
    colour = F.avg_pool2d(images.flatten(0, 1).float(), cell).unflatten(0, (B, S))
    colour = _cells_to_patches(colour, patch_grid, cells)
    if semantics is None:
        return PatchTargets(None, None, colour)
    # pixels per (cell, class) by one bincount over "cell index * classes + class" (a one-hot map pooled
    # per cell costs ~10x more); UNLABELLED and anything out of range go to a discarded last bin
    hc, wc = H // cell, W // cell
    rows = torch.arange(H, device=semantics.device) // cell
    cols = torch.arange(W, device=semantics.device) // cell
    cell_index = (torch.arange(B * S, device=semantics.device)[:, None, None] * hc + rows[:, None]) * wc + cols
    labelled = (semantics >= 0) & (semantics < num_classes)
    n_bins = B * S * hc * wc * num_classes
    flat = torch.where(labelled.flatten(0, 1), cell_index * num_classes + semantics.flatten(0, 1), n_bins)
    counts = torch.bincount(flat.flatten(), minlength=n_bins + 1)[:n_bins].to(torch.float32)
    counts = counts.view(B, S, hc, wc, num_classes).permute(0, 1, 4, 2, 3)
    counts = _cells_to_patches(counts, patch_grid, cells)
    total = counts.sum(-1)
    return PatchTargets(counts / total.clamp(min=1)[..., None], total > 0, colour)


def semantic_losses(logits: Tensor | None, colour: Tensor, targets: PatchTargets, view_mask: Tensor
                    ) -> dict[str, Tensor]:
    """``loss_semantic`` (class-weighted soft cross-entropy over labelled sub-cells of real views) when
    there are logits and class targets, and ``loss_colour`` (MSE over the sub-cells of real views)."""
    real = view_mask[:, :, None, None].expand(colour.shape[:-1]).to(torch.bool)
    out = {"loss_colour": ((colour - targets.colour) ** 2).mean(-1)[real].mean()}
    if logits is not None and targets.class_dist is not None:
        keep = real & targets.labelled
        dist = targets.class_dist[keep]  # [N, classes]
        freq = dist.sum(0)
        # inverse square root of each class's share of the batch: rare classes count, without letting a
        # class seen in one cell dominate; classes absent from the batch get no weight
        weight = torch.where(freq > 0, (freq.sum() / freq.clamp(min=1e-6)).sqrt(), torch.zeros_like(freq)).detach()
        per_class = -dist * F.log_softmax(logits[keep].float(), dim=-1) * weight
        out["loss_semantic"] = per_class.sum() / (dist * weight).sum().clamp(min=1e-6)
    return out


def semantic_scores(logits: Tensor, targets: PatchTargets, view_mask: Tensor) -> dict[str, Tensor]:
    """Sums for held-out scores over labelled sub-cells of real views, each cell's class = its majority
    class: ``correct`` / ``cells`` (cell accuracy) and per-class ``class_correct`` / ``class_cells``
    [classes] (mean class recall = mean over classes present of correct / cells)."""
    keep = view_mask[:, :, None, None].expand(targets.labelled.shape).to(torch.bool) & targets.labelled
    truth = targets.class_dist[keep].argmax(-1)
    hit = (logits[keep].argmax(-1) == truth).to(torch.float64)
    classes = logits.shape[-1]
    return {"correct": hit.sum(), "cells": torch.tensor(float(truth.numel()), dtype=torch.float64),
            "class_correct": torch.zeros(classes, dtype=torch.float64).index_add_(0, truth, hit),
            "class_cells": torch.bincount(truth, minlength=classes).to(torch.float64)}


__all__ = ["UNLABELLED", "PatchSemanticHead", "PatchTargets", "patch_targets", "semantic_losses", "semantic_scores"]
