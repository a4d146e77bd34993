"""Counting a training step's memory without allocating it, for ``vqkit plan``.

The model is built on the meta device and one forward pass runs there under
``torch.autograd.graph.saved_tensors_hooks`` (:class:`SavedTensors`), which sees every tensor autograd
keeps for the backward pass with its true shape and dtype. :class:`RealKernelsOnMeta` makes that pass save
what the real run saves: fused attention (output and log-sum-exp, not the probabilities of meta's math
fallback) and, for a GPU plan, autocast's casts (bf16 copies of matmul inputs; each weight's copy once per
step). On the CPU a process also holds its framework, its training records and the allocator's overhead,
measured here (:func:`framework_baseline`, :func:`training_data_resident`, :data:`CPU_ALLOCATOR_OVERHEAD`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from vqkit.config.schema import Config
from vqkit.data.dataset import build_dataset
from vqkit.errors import ConfigError, DataError
from vqkit.vggt.aggregator import feature_shape


def current_rss() -> int:
    """Resident memory of this process in bytes (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


_BASELINE: list[int] = []


# On the CPU the peak RSS exceeds the live tensors: glibc keeps the buffers the forward frees (norm
# outputs, casts, attention scratch) in its arenas instead of returning them. The factor comes from the
# CPU probe (`vqkit plan --device cpu --probe`) on the demo config and a 6-layer 512-wide LoRA config.
CPU_ALLOCATOR_OVERHEAD = 1.3

_DATA_RESIDENT: dict[tuple, int] = {}


def training_data_resident(cfg: Config) -> int | None:
    """RSS the training records take in a process, measured by loading them here (once per set of
    files; call it before anything else parses them, or the allocator reuses that memory and the
    figure comes out low). None when they cannot be read here."""
    key = tuple((s.path, s.weight) for s in cfg.data.train)
    if key not in _DATA_RESIDENT:
        before = current_rss()
        try:
            dataset = build_dataset(cfg.data, "train", geometry_cfg=cfg.model.geometry, seed=cfg.train.seed)
        except (DataError, ConfigError, OSError):
            return None
        _DATA_RESIDENT[key] = max(0, current_rss() - before)
        del dataset
    return _DATA_RESIDENT[key]


def framework_baseline() -> int:
    """RSS of this process the first time it is asked, after torch, transformers' model code and
    the tokenizer are loaded and a meta model was built (which holds no memory): what any training
    process carries before its first tensor. Memoised so repeated plans agree."""
    if not _BASELINE:
        _BASELINE.append(current_rss())
    return _BASELINE[0]


# --------------------------------------------------------------------------------------------
# Saved-tensor accounting on the meta device
# --------------------------------------------------------------------------------------------


class SavedTensors:
    """Counts the bytes autograd saves for backward, once per storage, split by a label that
    module hooks set (e.g. "layer" inside LLM decoder layers). Weights that ops save (a Linear
    keeps its weight) are parameters, counted once elsewhere: pass ``module`` to skip them."""

    def __init__(self, module: torch.nn.Module | None = None):
        self.by_label: dict[str, int] = {}
        self.largest = 0
        self.label = "other"
        self._seen: set[int] = set()
        if module is not None:
            self._seen = {p.untyped_storage()._cdata for p in module.parameters()}
        self._keep: list[torch.Tensor] = []
        self.fixed = 0
        """Bytes held once per step whatever the batch (autocast's low-precision weight copies)."""

    def add_fixed(self, t: torch.Tensor) -> None:
        """Count ``t`` once, as a per-step (not per-sample) cost; autograd saving it later adds nothing."""
        key = t.untyped_storage()._cdata
        if key not in self._seen:
            self._seen.add(key)
            self._keep.append(t)
            self.fixed += t.untyped_storage().nbytes()

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in self._seen:
            self._seen.add(key)
            self._keep.append(t)  # keep it alive so its storage id is not reused
            self.by_label[self.label] = self.by_label.get(self.label, 0) + storage.nbytes()
            self.largest = max(self.largest, storage.nbytes())
        return t

    def total(self) -> int:
        return sum(self.by_label.values())

    def context(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)


# What autocast runs in the low precision, and what it runs in fp32 (torch's CUDA autocast op lists,
# the ops these models call).
_AUTOCAST_LOW = {F.linear, torch.matmul, torch.mm, torch.bmm, torch.addmm, torch.baddbmm, torch.einsum,
                 F.conv1d, F.conv2d, F.conv3d, F.scaled_dot_product_attention}
_AUTOCAST_FP32 = {F.layer_norm, F.group_norm, F.softmax, F.log_softmax, F.cross_entropy, F.nll_loss}


class RealKernelsOnMeta(TorchFunctionMode):
    """Makes a meta forward save what the real run saves, for :class:`SavedTensors` to count.

    - Fused attention: ``scaled_dot_product_attention`` on a GPU (flash / memory-efficient) and on the
      CPU (flash for CPU) saves q, k, v, the output and the log-sum-exp. On meta it falls back to the
      math path, which would save the [heads, queries, keys] probabilities in fp32 (several times more).
    - ``autocast_dtype``: torch.autocast's casts. Matmul-like ops take their inputs in the low
      precision (the copies are what the backward keeps), norms and softmaxes compute in fp32. A
      weight's low-precision copy is cached by autocast for the whole step, so it is counted once as
      a fixed cost, not per sample.
    """

    def __init__(self, counter: SavedTensors, autocast_dtype: torch.dtype | None = None):
        super().__init__()
        self.counter = counter
        self.dtype = autocast_dtype
        self._weight_casts: dict[int, torch.Tensor] = {}

    def _cast(self, value, dtype: torch.dtype):
        if isinstance(value, (list, tuple)):
            return type(value)(self._cast(v, dtype) for v in value)
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()) or value.dtype == dtype:
            return value
        if isinstance(value, torch.nn.Parameter):
            key = id(value)
            if key not in self._weight_casts:
                self._weight_casts[key] = value.to(dtype)
                self.counter.add_fixed(self._weight_casts[key])
            return self._weight_casts[key]
        return value.to(dtype)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.dtype is not None and func in _AUTOCAST_LOW:
            args, kwargs = self._cast(args, self.dtype), {k: self._cast(v, self.dtype) for k, v in kwargs.items()}
        elif self.dtype is not None and func in _AUTOCAST_FP32:
            args = self._cast(args, torch.float32)
        if func is F.scaled_dot_product_attention:
            q, k, v = args[:3]
            out = q.new_empty(*q.shape[:-1], v.shape[-1])
            if q.requires_grad or k.requires_grad or v.requires_grad:
                lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
                for t in (q, k, v, out, lse):
                    self.counter.pack(t)
                out.requires_grad_(True)
            return out
        return func(*args, **kwargs)


def _decoder_layers(llm) -> list[torch.nn.Module]:
    """The transformer blocks of a (peft-wrapped) causal LM."""
    best: list = []
    for module in llm.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > len(best):
            best = list(module)
    return best


@dataclass
class ActivationCount:
    llm_layers: int = 0
    """Saved bytes inside the decoder layers, one sample."""
    llm_other: int = 0
    """Saved bytes outside them (embeddings, final norm, logits, loss), one sample."""
    vision: int = 0
    """Projector + geometry encoder saved bytes, one sample."""
    largest: int = 0
    """Largest single saved tensor of one sample (its gradient is the backward's transient)."""
    layer_input: int = 0
    """One layer's input [T, hidden] (what gradient checkpointing keeps per layer), one sample."""
    num_layers: int = 0
    weight_casts: int = 0
    """autocast's low-precision copies of fp32 weights: once per step, whatever the batch."""


def count_activations(model, cfg: Config, seq_len: int, num_views: int, feature_hw: tuple[int, int],
                      dtype: torch.dtype, autocast_dtype: torch.dtype | None = None,
                      answer_positions: int | None = None) -> ActivationCount:
    """Run one sample through the meta model's trainable path and count the saved tensors, as the
    real kernels (and autocast to ``autocast_dtype``, if given) would save them. The LM head and the
    loss run on the last ``answer_positions`` positions (all when None), as ``VQModel.forward``
    computes logits only where a label is."""
    act = ActivationCount()
    shape = feature_shape(cfg.model.encoder, *feature_hw)
    projector_dtype = next(model.projector.parameters()).dtype
    feats = torch.empty(1, num_views, shape.num_tokens, shape.channels, device="meta", dtype=projector_dtype)
    view_mask = torch.ones(1, num_views, dtype=torch.bool, device="meta")
    counter = SavedTensors(model)
    with counter.context(), RealKernelsOnMeta(counter, autocast_dtype):
        model.projector(feats, view_mask, shape.grid)
        if model.geometry is not None:
            bins = cfg.model.geometry.depth_bins
            geo = {"R": torch.empty(1, num_views, 3, 3, device="meta"),
                   "t": torch.empty(1, num_views, 3, device="meta"),
                   "K": torch.empty(1, num_views, 3, 3, device="meta"),
                   "depth_hist": torch.empty(1, num_views, bins, device="meta"), "image_hw": feature_hw}
            model.geometry(geo, view_mask)
    act.vision = counter.total()
    act.weight_casts = counter.fixed

    hidden = model.llm.get_input_embeddings().embedding_dim
    layers = _decoder_layers(model.llm)
    counter = SavedTensors(model)
    hooks = []
    for layer in layers:
        hooks.append(layer.register_forward_pre_hook(lambda *_: setattr(counter, "label", "layer")))
        hooks.append(layer.register_forward_hook(lambda *_: setattr(counter, "label", "other")))
    try:
        emb = torch.empty(1, seq_len, hidden, device="meta", dtype=dtype, requires_grad=True)
        # A 4-D mask skips transformers' data-dependent mask checks, which meta tensors cannot run.
        mask = torch.ones(1, 1, seq_len, seq_len, dtype=torch.bool, device="meta")
        keep = min(seq_len, answer_positions or seq_len)
        with counter.context(), RealKernelsOnMeta(counter, autocast_dtype):
            logits = model.llm(inputs_embeds=emb * 1, attention_mask=mask, use_cache=False, logits_to_keep=keep).logits
            F.cross_entropy(logits.float().flatten(0, 1), torch.zeros(keep, dtype=torch.long, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    act.llm_layers = counter.by_label.get("layer", 0)
    act.llm_other = counter.by_label.get("other", 0)
    act.largest = max(counter.largest, 1)
    act.weight_casts += counter.fixed
    act.layer_input = seq_len * hidden * torch.finfo(dtype).bits // 8
    act.num_layers = max(1, len(layers))
    return act
