"""Liger's kernels for the LLM (``model.llm.liger_kernels``).

:func:`apply_liger_kernels` swaps in Liger's RMSNorm, SwiGLU and RoPE kernels (Liger's own instance
patching, as its authors document it; its RoPE replacement is module-wide, so every model of that
architecture in the process uses it); :func:`liger_fused_linear_cross_entropy` is the fused LM head +
cross-entropy that :func:`vqkit.models.answer_loss.answer_loss` uses when the kernels are on. Liger's
kernels are Triton GPU kernels: asking for them on a CPU run, or without the ``liger-kernel`` package
(``pip install 'vqkit[gpu]'``), is a one-line :class:`~vqkit.errors.ConfigError`, never a silent fallback.
"""

from __future__ import annotations

import importlib.util
import inspect

import torch
from torch import nn

from vqkit.errors import ConfigError
from vqkit.utils.runtime import resolve_device

FIELD = "model.llm.liger_kernels"
# Liger's kernels that vqkit switches on; its cross-entropy patches stay off (vqkit computes the loss).
KERNELS = {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False,
           "fused_linear_cross_entropy": False}


def require_liger(device: str | torch.device | None = None) -> None:
    """Raise a one-line ConfigError unless Liger's kernels can run where training will run
    (``device``; None = this process's GPU when there is one)."""
    target = resolve_device(device)
    if target.type != "cuda":
        raise ConfigError(f"{FIELD}: Liger's kernels are Triton GPU kernels and this run is on the "
                          f"{target.type}; set {FIELD}=false there")
    if importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError(f"{FIELD}: the liger-kernel package is not installed (pip install 'vqkit[gpu]')")


def apply_liger_kernels(model: nn.Module, device: str | torch.device | None = None) -> nn.Module:
    """Liger's RMSNorm, SwiGLU and RoPE in a transformers causal LM (before LoRA is applied), in place."""
    require_liger(device)
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    model_type = getattr(model.config, "model_type", None)
    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model_type)
    if apply is None:
        raise ConfigError(f"{FIELD}: Liger has no kernels for model_type {model_type!r}")
    accepted = inspect.signature(apply).parameters
    apply(model=model, **{k: v for k, v in KERNELS.items() if k in accepted})
    return model


_LIGER_LOSS: list = []


def liger_fused_linear_cross_entropy(weight: torch.Tensor, hidden: torch.Tensor, targets: torch.Tensor):
    """Liger's fused LM head + cross-entropy (mean over targets that are not -100)."""
    if not _LIGER_LOSS:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        _LIGER_LOSS.append(LigerFusedLinearCrossEntropyLoss(ignore_index=-100))
    return _LIGER_LOSS[0](weight, hidden, targets)


__all__ = ["apply_liger_kernels", "liger_fused_linear_cross_entropy", "require_liger"]
