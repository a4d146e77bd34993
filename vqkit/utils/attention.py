"""Which kernel ``scaled_dot_product_attention`` runs on a GPU, and a one-line warning when it is PyTorch's
math kernel (slow, and it materialises every attention score: the out-of-memory errors of a silent fallback).

:func:`sdpa_kernel` is the decision, from a call's description (:class:`SdpaCall`), following PyTorch's
CUDA dispatch (``aten/src/ATen/native/transformers/cuda/sdp_utils.cpp``: flash first, then memory-efficient,
then math; cuDNN runs only where memory-efficient could, so it never changes whether math runs): it needs no
GPU, so its rules are tested on the CPU. :func:`warn_math_fallback` describes a real call and warns once
per call site and kind of call (:func:`report_math_fallback`); on the CPU it does nothing (the CPU's own
flash kernel takes masks).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger("vqkit.attention")

_warned: set = set()


@dataclass(frozen=True)
class SdpaCall:
    """What the kernel choice depends on."""

    dtype: torch.dtype
    head_dim: int
    """Query and key head width."""
    value_dim: int
    has_mask: bool
    """An explicit ``attn_mask`` (flash takes none)."""
    is_causal: bool
    q_len: int
    kv_len: int
    capability: tuple[int, int]
    """The GPU's compute capability (major, minor)."""
    contiguous_last_dim: bool = True
    requires_grad: bool = False
    dropout: float = 0.0
    flash_enabled: bool = True
    """``torch.backends.cuda.flash_sdp_enabled()``."""
    mem_efficient_enabled: bool = True
    """``torch.backends.cuda.mem_efficient_sdp_enabled()``."""


def _flash_problem(c: SdpaCall) -> str | None:
    """Why flash attention cannot run the call (None: it can)."""
    low = (torch.float16, torch.bfloat16) if c.capability[0] >= 8 else (torch.float16,)
    if not c.flash_enabled:
        return "the flash kernel is disabled"
    if c.has_mask:
        return "an explicit attention mask (flash takes none)"
    if c.head_dim != c.value_dim or c.head_dim > 256:
        return f"head width {c.head_dim} (flash needs equal q/k/v widths <= 256)"
    if not (8, 0) <= c.capability <= (12, 1):
        return f"compute capability {c.capability[0]}.{c.capability[1]} (flash needs 8.0 to 12.1)"
    if c.requires_grad and ((8, 6) <= c.capability <= (8, 9) or c.capability[0] == 12) and (
            192 < c.head_dim <= 224 or (c.head_dim > 224 and c.dropout > 0)):
        return f"training with head width {c.head_dim} on compute capability {c.capability[0]}.{c.capability[1]}"
    if c.is_causal and c.q_len != c.kv_len:
        return "is_causal with query and key lengths that differ"
    if c.dtype not in low:
        return f"{str(c.dtype).replace('torch.', '')} (flash needs fp16 or bf16)"
    if not c.contiguous_last_dim:
        return "a last dimension with a stride other than 1"
    return None


def _mem_efficient_problem(c: SdpaCall) -> str | None:
    """Why the memory-efficient kernel cannot run the call (None: it can)."""
    if not c.mem_efficient_enabled:
        return "the memory-efficient kernel is disabled"
    if not (5, 0) <= c.capability <= (12, 1):
        return f"compute capability {c.capability[0]}.{c.capability[1]}"
    half = c.dtype in (torch.float16, torch.bfloat16)
    tensor_cores = c.capability[0] >= 8 or (c.capability[0] >= 7 and half)
    alignment = max(4 if c.capability[0] >= 8 else 1, (128 // (16 if half else 32)) if tensor_cores else 1)
    if c.head_dim % alignment or c.value_dim % alignment or c.head_dim <= 0:
        return f"head width {c.head_dim} (memory-efficient needs a multiple of {alignment})"
    allowed = (torch.float16, torch.float32, torch.bfloat16) if c.capability[0] >= 8 else (torch.float16, torch.float32)
    if c.dtype not in allowed:
        return f"{str(c.dtype).replace('torch.', '')} (memory-efficient needs fp16, bf16 or fp32)"
    if not c.contiguous_last_dim:
        return "a last dimension with a stride other than 1"
    return None


def sdpa_kernel(call: SdpaCall) -> tuple[str, str]:
    """(kernel, why the faster ones cannot run it): "flash", "memory-efficient" or "math"."""
    flash = _flash_problem(call)
    if flash is None:
        return "flash", ""
    efficient = _mem_efficient_problem(call)
    if efficient is None:
        return "memory-efficient", f"flash: {flash}"
    return "math", f"flash: {flash}; memory-efficient: {efficient}"


@functools.cache
def _capability(index: int | None) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def describe(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None,
             dropout: float = 0.0, is_causal: bool = False) -> SdpaCall:
    """The :class:`SdpaCall` of a call on CUDA tensors (reads the device's capability and enabled kernels)."""
    return SdpaCall(dtype=query.dtype, head_dim=int(query.shape[-1]), value_dim=int(value.shape[-1]),
                    has_mask=attn_mask is not None, is_causal=bool(is_causal), q_len=int(query.shape[-2]),
                    kv_len=int(key.shape[-2]), capability=_capability(query.device.index),
                    contiguous_last_dim=all(t.stride(-1) == 1 for t in (query, key, value)),
                    requires_grad=any(t.requires_grad for t in (query, key, value)), dropout=float(dropout),
                    flash_enabled=torch.backends.cuda.flash_sdp_enabled(),
                    mem_efficient_enabled=torch.backends.cuda.mem_efficient_sdp_enabled())


def warn_math_fallback(where: str, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attn_mask: torch.Tensor | None = None, dropout: float = 0.0, is_causal: bool = False) -> None:
    """On CUDA, :func:`report_math_fallback` for this call (nothing on other devices)."""
    if query.is_cuda:
        report_math_fallback(where, describe(query, key, value, attn_mask, dropout, is_causal))


def report_math_fallback(where: str, call: SdpaCall) -> bool:
    """Log one line the first time a kind of call in ``where`` runs the math kernel; True when it does."""
    kernel, reason = sdpa_kernel(call)
    if kernel == "math" and (where, call) not in _warned:
        _warned.add((where, call))
        log.warning("attention in %s runs PyTorch's math kernel (slow; it holds every score in memory): %s",
                    where, reason)
    return kernel == "math"


__all__ = ["SdpaCall", "describe", "report_math_fallback", "sdpa_kernel", "warn_math_fallback"]
