"""A training step's FLOPs counted two ways, and the cards' peaks, for ``vqkit bench``'s utilisation figures.

- **Hardware FLOPs**: every matmul, convolution and attention FLOP as it runs, by torch's own formulas
  (:mod:`torch.utils.flop_counter`), the work done twice included: the forward that gradient
  checkpointing recomputes during the backward pass, and the attention scores a fused attention kernel
  recomputes in its backward.
- **Model FLOPs**: what the model needs per step without recomputation: the same count without the
  recomputed forward, and a fused attention backward counted as four matmuls (the gradients of the
  scores, values, queries and keys), not five.

MFU = model FLOPs / step time / the card's dense bf16 peak; the hardware FLOPs' utilisation is the
same with the hardware count. Elementwise work (norms, activations, softmax, the optimizer) is not
counted, as usual for MFU. :class:`FlopLedger` also records which attention kernels ran.

How recomputation is recognised: transformers' gradient checkpointing reruns each decoder layer's
``Module.__call__`` inside the backward pass, so an operation that runs while a module's forward is
active *during* the backward pass (torch's autograd engine has a graph task then) is recomputation.
The counting step runs compiled modules eagerly (the same operations, visible to the counter).
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def _cpu_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch's counter has formulas for the GPU's fused attention kernels, not for the CPU's.
_CPU_ATTENTION = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
                  aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward}


def _ops(names: dict[str, str]) -> dict:
    return {getattr(aten, op): label for op, label in names.items() if hasattr(aten, op)}


# SDPA's fused kernels as the dispatcher sees them; a call that reaches none of them ran the math path.
ATTENTION_KERNELS = _ops({"_scaled_dot_product_flash_attention": "flash",
                          "_scaled_dot_product_efficient_attention": "memory-efficient",
                          "_scaled_dot_product_cudnn_attention": "cuDNN",
                          "_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)"})
# Their backward passes recompute the scores: one of five matmuls of equal size (head widths of q and v equal).
_FUSED_BACKWARD = set(_ops({"_scaled_dot_product_flash_attention_backward": "",
                            "_scaled_dot_product_efficient_attention_backward": "",
                            "_scaled_dot_product_cudnn_attention_backward": "",
                            "_scaled_dot_product_flash_attention_for_cpu_backward": "",
                            "_flash_attention_backward": "", "_efficient_attention_backward": ""}))


def _in_backward() -> bool:
    return torch._C._current_graph_task_id() != -1


class FlopLedger:
    """Counts the FLOPs of what runs inside ``with ledger:`` (module docstring). Entering it again adds
    to the same counts, so one ledger per part of a step can follow that part through forward and backward.

    ``hardware``, ``model``: FLOPs; ``attention``: kernel name -> forward calls (``math`` = SDPA calls
    that reached no fused kernel)."""

    def __init__(self) -> None:
        self.hardware = 0
        self.model = 0
        self.attention: dict[str, int] = {}
        self._sdpa_calls = 0
        self._fused_calls = 0
        self._recomputing = 0
        self._registry = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION).flop_registry
        self._stack: contextlib.ExitStack | None = None

    # -- what the modes report

    def _count(self, packet, flops: int) -> None:
        recomputed = self._recomputing > 0 and _in_backward()
        self.hardware += flops
        if not recomputed:
            self.model += flops - flops // 5 if packet in _FUSED_BACKWARD else flops
        if packet in ATTENTION_KERNELS and not _in_backward():
            name = ATTENTION_KERNELS[packet]
            self.attention[name] = self.attention.get(name, 0) + 1
            self._fused_calls += 1

    def _module_enters(self, module, args) -> None:
        if _in_backward():
            self._recomputing += 1

    def _module_exits(self, module, args, output) -> None:
        if _in_backward() and self._recomputing:
            self._recomputing -= 1

    # -- context

    def __enter__(self) -> FlopLedger:
        stack = contextlib.ExitStack()
        pre = register_module_forward_pre_hook(self._module_enters)
        # always_call: checkpointing may stop a recomputation early by raising inside the layer
        post = register_module_forward_hook(self._module_exits, always_call=True)
        stack.callback(post.remove)
        stack.callback(pre.remove)
        if hasattr(torch.compiler, "set_stance"):
            stack.enter_context(torch.compiler.set_stance("force_eager"))
        stack.enter_context(_AttentionCalls(self))
        stack.enter_context(_Dispatch(self))
        self._stack = stack
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        stack.close()
        math_calls = self._sdpa_calls - self._fused_calls
        if math_calls > 0:
            self.attention["math"] = self.attention.get("math", 0) + math_calls
        self._sdpa_calls = self._fused_calls = 0


class _AttentionCalls(TorchFunctionMode):
    """Counts ``F.scaled_dot_product_attention`` calls (outside recomputation) for the math-path check."""

    def __init__(self, ledger: FlopLedger):
        super().__init__()
        self.ledger = ledger

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.scaled_dot_product_attention and not _in_backward():
            self.ledger._sdpa_calls += 1
        return func(*args, **(kwargs or {}))


class _Dispatch(TorchDispatchMode):
    """Sees every aten operation (after autograd), counts those torch has a FLOP formula for; others
    are decomposed first when they can be, as :class:`torch.utils.flop_counter.FlopCounterMode` does."""

    def __init__(self, ledger: FlopLedger):
        super().__init__()
        self.ledger = ledger

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        formula = self.ledger._registry.get(packet)
        if formula is None and func is not torch.ops.prim.device.default:
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if formula is not None:
            self.ledger._count(packet, int(formula(*args, **kwargs, out_val=out)))
        return out


# --------------------------------------------------------------------------------------------
# Peaks
# --------------------------------------------------------------------------------------------

# Dense (no sparsity) bf16 tensor-core peaks in FLOP/s from the vendors' data sheets (SXM parts unless
# named); the longest name contained in torch.cuda.get_device_name wins ("H100 PCIe" before "H100").
GPU_PEAK_BF16 = {"B200": 2250e12, "H200": 989e12, "GH200": 989e12, "H100": 989e12, "H100 PCIe": 756e12,
                 "H100 NVL": 835e12, "H20": 148e12, "A100": 312e12, "L40S": 362e12, "L40": 181e12,
                 "A10G": 70e12, "L4": 121e12, "RTX 4090": 165e12, "RTX 6000 Ada": 364e12}


def card_peak(name: str, override_tflops: float | None = None) -> tuple[float | None, str]:
    """(dense bf16 peak in FLOP/s, where the figure comes from) for a device named ``name``;
    ``override_tflops`` (``--peak-tflops``) wins. (None, reason) when unknown."""
    if override_tflops:
        return override_tflops * 1e12, f"{override_tflops:g} TFLOP/s given with --peak-tflops"
    matches = [key for key in GPU_PEAK_BF16 if key in name]
    if not matches:
        return None, f"no dense bf16 peak known for {name!r} (--peak-tflops sets one)"
    key = max(matches, key=len)
    return GPU_PEAK_BF16[key], f"{key} dense bf16 peak, {GPU_PEAK_BF16[key] / 1e12:g} TFLOP/s"


def utilisation(flops: float, seconds: float, peak: float | None) -> float | None:
    """Fraction of the peak: ``flops / seconds / peak`` (None without a peak)."""
    if not peak or seconds <= 0:
        return None
    return flops / seconds / peak


__all__ = ["ATTENTION_KERNELS", "FlopLedger", "GPU_PEAK_BF16", "card_peak", "utilisation"]
