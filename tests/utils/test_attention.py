"""The SDPA kernel decision on CUDA (checked without a GPU) and the one-line warning of a math fallback."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch

from vqkit.utils.attention import SdpaCall, report_math_fallback, sdpa_kernel, warn_math_fallback

H100 = SdpaCall(dtype=torch.bfloat16, head_dim=128, value_dim=128, has_mask=False, is_causal=True, q_len=512,
                kv_len=512, capability=(9, 0), requires_grad=True)


@pytest.mark.parametrize(("change", "kernel", "reason"), [
    ({}, "flash", ""),
    ({"has_mask": True}, "memory-efficient", "explicit attention mask"),  # the turn mask of data.turns
    ({"dtype": torch.float32}, "memory-efficient", "needs fp16 or bf16"),
    ({"dtype": torch.float32, "has_mask": True, "head_dim": 30, "value_dim": 30}, "math", "multiple of 4"),
    ({"has_mask": True, "head_dim": 100, "value_dim": 100}, "math", "multiple of 8"),
    ({"head_dim": 320, "value_dim": 320}, "memory-efficient", "<= 256"),
    ({"capability": (7, 5)}, "math", "fp16, bf16 or fp32"),  # bf16 below sm80: neither fused kernel
    ({"capability": (7, 5), "dtype": torch.float16}, "memory-efficient", "8.0 to 12.1"),
    ({"is_causal": True, "q_len": 1, "kv_len": 512}, "memory-efficient", "lengths that differ"),
    ({"contiguous_last_dim": False, "has_mask": True}, "math", "stride"),
    ({"flash_enabled": False, "mem_efficient_enabled": False}, "math", "disabled"),
    ({"capability": (8, 6), "head_dim": 200, "value_dim": 200}, "memory-efficient", "training with head width"),
])
def test_kernel_decision_follows_pytorch_dispatch(change, kernel, reason):
    chosen, why = sdpa_kernel(replace(H100, **change))
    assert chosen == kernel
    assert reason in why


def test_a_math_fallback_is_reported_once_per_call_site(caplog):
    slow = replace(H100, dtype=torch.float32, has_mask=True, head_dim=30, value_dim=30)
    with caplog.at_level(logging.WARNING, logger="vqkit.attention"):
        assert report_math_fallback("the LLM", slow)
        assert report_math_fallback("the LLM", slow)
        assert not report_math_fallback("the LLM", H100)
        assert report_math_fallback("the aggregator", slow)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("math kernel" in line and "multiple of 4" in line for line in lines)
    assert len(lines[0].splitlines()) == 1


def test_no_check_off_cuda(caplog):
    x = torch.randn(1, 2, 4, 30)
    with caplog.at_level(logging.WARNING, logger="vqkit.attention"):
        warn_math_fallback("the LLM", x, x, x, torch.zeros(4, 4))
    assert not caplog.records
