"""FlopLedger on small modules whose matmuls are counted here by hand: model vs hardware FLOPs, the
recomputation gradient checkpointing adds, attention kernels; the cards' peaks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vqkit.tools.flops import FlopLedger, card_peak, utilisation


def test_linear_and_fused_attention_forward_and_backward():
    mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    x = torch.randn(5, 8, requires_grad=True)
    q = torch.randn(2, 2, 7, 16, requires_grad=True)
    ledger = FlopLedger()
    with ledger:
        (mlp(x).sum() + F.scaled_dot_product_attention(q, q, q).sum()).backward()
    linear = 2 * 5 * 8 * 16 + 2 * 5 * 16 * 4  # forward; the backward computes input and weight gradients: 2x
    attention = 2 * (2 * 2 * 2 * 7 * 7 * 16)  # q k^T and p v over 2 x 2 heads
    # Model FLOPs: the attention backward is four matmuls of the forward's size (scores', values',
    # queries', keys' gradients); the fused kernel also recomputes the scores (hardware only).
    assert ledger.model == 3 * linear + 3 * attention
    assert ledger.hardware == 3 * linear + attention + 5 * attention // 2
    assert ledger.attention == {"flash (CPU)": 1}


def test_checkpointed_recomputation_is_hardware_flops_only():
    mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    x = torch.randn(5, 8, requires_grad=True)
    plain, checkpointed = FlopLedger(), FlopLedger()
    with plain:
        mlp(x).sum().backward()
    with checkpointed:
        checkpoint(mlp, x, use_reentrant=False).sum().backward()
    assert checkpointed.model == plain.model == 3 * (2 * 5 * 8 * 16 + 2 * 5 * 16 * 4)
    # Recomputation stops once the saved tensors exist again: the first Linear (the GELU's input);
    # the last Linear's output is not needed by its own backward.
    assert checkpointed.hardware - plain.hardware == 2 * 5 * 8 * 16


def test_ledger_adds_up_across_entries_and_sees_the_math_path():
    ledger = FlopLedger()
    q = torch.randn(1, 1, 4, 8)
    with ledger:
        torch.mm(torch.randn(3, 4), torch.randn(4, 5))
    with ledger:
        # SDPA told to take its math path: no fused kernel, the matmuls counted one by one.
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            F.scaled_dot_product_attention(q, q, q)
    assert ledger.model == ledger.hardware == 2 * 3 * 4 * 5 + 2 * (2 * 4 * 4 * 8)
    assert ledger.attention == {"math": 1}


def test_card_peaks():
    assert card_peak("NVIDIA H200")[0] == 989e12
    assert card_peak("NVIDIA H100 PCIe")[0] == 756e12  # the longest name contained wins
    assert card_peak("NVIDIA H20")[0] == 148e12
    peak, source = card_peak("cpu (2 threads)")
    assert peak is None and "--peak-tflops" in source
    assert card_peak("anything", 100.0) == (100e12, "100 TFLOP/s given with --peak-tflops")
    assert utilisation(50e12, 0.5, 200e12) == 0.5 and utilisation(1.0, 1.0, None) is None
