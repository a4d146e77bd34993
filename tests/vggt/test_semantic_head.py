"""vqkit.vggt.semantic_head: per-patch sub-cell targets in the aggregator's patch order, the
class-weighted soft cross-entropy and the colour loss, the held-out scores."""

from __future__ import annotations

import math

import pytest
import torch

from vqkit.vggt.semantic_head import UNLABELLED, PatchSemanticHead, patch_targets, semantic_losses, semantic_scores


def _maps():
    """One sample, one view, 8 x 8 px: patches of 4 px (2 x 2 patches), cells of 2 px (2 x 2 per patch)."""
    semantics = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    semantics[0, 0, 0:2, 2:4] = 2          # patch 0, cell 1: all class 2
    semantics[0, 0, 0, 4] = 1              # patch 1, cell 0: one px class 1, one class 0, two unlabelled
    semantics[0, 0, 1, 4:6] = UNLABELLED
    semantics[0, 0, 6:8, 6:8] = UNLABELLED  # patch 3, cell 3: nothing labelled
    images = torch.zeros(1, 1, 3, 8, 8)
    images[0, 0, 0, 4:8, 0:4] = 1.0         # patch 2 (bottom left) is red
    images[0, 0, 2, 4:6, 6:8] = 0.5         # patch 3, cell 1 half blue
    return images, semantics


def test_targets_follow_the_patch_order_and_leave_unlabelled_pixels_out():
    images, semantics = _maps()
    t = patch_targets(images, semantics, patch_size=4, cells=2, num_classes=3)
    assert t.class_dist.shape == (1, 1, 4, 4, 3) and t.colour.shape == (1, 1, 4, 4, 3)
    assert torch.equal(t.class_dist[0, 0, 0, 1], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(t.class_dist[0, 0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(t.class_dist[0, 0, 1, 0], torch.tensor([0.5, 0.5, 0.0]))  # 2 labelled px of 4
    assert not t.labelled[0, 0, 3, 3] and t.labelled.sum() == 15
    assert torch.equal(t.colour[0, 0, 2], torch.tensor([[1.0, 0, 0]] * 4))  # row-major patches: 2 = bottom left
    assert torch.equal(t.colour[0, 0, 3, 1], torch.tensor([0, 0, 0.5])) and t.colour[0, 0, 3, 0].sum() == 0
    colour_only = patch_targets(images, None, patch_size=4, cells=2, num_classes=3)
    assert colour_only.class_dist is None and torch.equal(colour_only.colour, t.colour)


def test_loss_is_the_class_weighted_cross_entropy_of_the_labelled_cells():
    images, semantics = _maps()
    t = patch_targets(images, semantics, patch_size=4, cells=2, num_classes=3)
    view_mask = torch.ones(1, 1, dtype=torch.bool)
    colour = torch.zeros_like(t.colour)
    uniform = semantic_losses(torch.zeros(1, 1, 4, 4, 3), colour, t, view_mask)
    assert uniform["loss_semantic"].item() == pytest.approx(math.log(3), rel=1e-6)  # any weighting
    assert uniform["loss_colour"].item() == pytest.approx(((t.colour) ** 2).mean(-1).mean().item())
    # weights: share of cells per class (class 0 fills 13.5 of 15 labelled cells) -> w = sqrt(total / share)
    dist = t.class_dist[t.labelled]
    freq = dist.sum(0)
    w = (freq.sum() / freq).sqrt()
    assert freq.tolist() == [13.5, 0.5, 1.0]
    # predicting the targets themselves costs their entropy: only the half-and-half cell's
    exact = semantic_losses(torch.log(t.class_dist.clamp(min=1e-30)), colour, t, view_mask)["loss_semantic"]
    assert exact.item() == pytest.approx(math.log(2) * 0.5 * (w[0] + w[1]).item() / (dist * w).sum().item(), rel=1e-5)
    assert semantic_losses(-20 * (t.class_dist * 2 - 1), colour, t, view_mask)["loss_semantic"] > 5
    logits = torch.randn(1, 1, 4, 4, 3, generator=torch.Generator().manual_seed(0))
    ce = -(dist * torch.log_softmax(logits[t.labelled], -1) * w).sum() / (dist * w).sum()
    assert semantic_losses(logits, colour, t, view_mask)["loss_semantic"].item() == pytest.approx(ce.item(), rel=1e-6)


def test_padding_views_and_unlabelled_cells_carry_no_loss():
    images, semantics = _maps()
    images = torch.cat([images, torch.rand(1, 1, 3, 8, 8)], dim=1)
    semantics = torch.cat([semantics, torch.ones(1, 1, 8, 8, dtype=torch.long)], dim=1)
    t = patch_targets(images, semantics, patch_size=4, cells=2, num_classes=3)
    view_mask = torch.tensor([[True, False]])
    logits = torch.zeros(1, 2, 4, 4, 3)
    logits[0, 1] = torch.randn(4, 4, 3)
    colour = torch.zeros_like(t.colour)
    colour[0, 1] = 7.0
    a = semantic_losses(logits, colour, t, view_mask)
    b = semantic_losses(torch.zeros(1, 2, 4, 4, 3), torch.zeros_like(t.colour), t, view_mask)
    assert torch.equal(a["loss_semantic"], b["loss_semantic"]) and torch.equal(a["loss_colour"], b["loss_colour"])


def test_scores_count_majority_classes_and_the_head_shapes():
    images, semantics = _maps()
    t = patch_targets(images, semantics, patch_size=4, cells=2, num_classes=3)
    logits = torch.zeros(1, 1, 4, 4, 3)
    logits[..., 0] = 1  # always class 0
    s = semantic_scores(logits, t, torch.ones(1, 1, dtype=torch.bool))
    # 15 labelled cells: 14 of majority class 0 (the half-and-half cell's tie goes to class 0), 1 of class 2
    assert s["cells"].item() == 15 and s["correct"].item() == 14
    assert s["class_cells"].tolist() == [14, 0, 1] and s["class_correct"].tolist() == [14, 0, 0]
    head = PatchSemanticHead(dim_in=16, num_classes=3, cells=2)
    logits, colour = head(torch.randn(2, 3, 5, 16))
    assert logits.shape == (2, 3, 5, 4, 3) and colour.shape == (2, 3, 5, 4, 3)
    colour_only = PatchSemanticHead(dim_in=16, num_classes=0, cells=2)
    assert colour_only(torch.randn(2, 3, 5, 16))[0] is None and colour_only.classes is None
