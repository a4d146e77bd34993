"""Memory plan of a config: ``vqkit plan --config FILE --gpus N [--zero 2|3] [--gpu-mem GB] [--probe]``.

Nothing real is allocated: the model is built on the meta device (``build_model(cfg, device="meta")``)
and one forward pass runs there under ``torch.autograd.graph.saved_tensors_hooks``, which sees every
tensor autograd keeps for the backward pass with its true shape and dtype. :class:`RealKernelsOnMeta`
makes that pass save what the real run saves: fused attention (output and log-sum-exp, not the
probabilities of meta's math fallback) and, for a GPU plan, autocast's casts (bf16 copies of matmul
inputs; each weight's copy once per step). Per GPU:

- parameters by component and dtype (what the training code holds: without DeepSpeed the LLM in
  ``llm.dtype`` (auto = bf16 on a GPU), the aggregator, projector, geometry encoder and LoRA in
  fp32; DeepSpeed with bf16 casts the whole module to bf16), partitioned over N GPUs by ZeRO-3;
- gradients of the trainable parameters (fp32, or bf16 under DeepSpeed), partitioned by ZeRO-2/3;
- AdamW state: two fp32 moments (+ an fp32 master copy under DeepSpeed bf16), partitioned by ZeRO;
- activations: the saved tensors of the projector, geometry encoder and LLM for one sample of
  ``--seq-len`` tokens (default ``data.max_length``, the longest a sample can be), times the batch.
  The LM head runs only where a batch has labels (:func:`answer_positions`, measured on the training
  data). With ``llm.gradient_checkpointing`` the LLM keeps only each layer's input plus one layer's
  activations during recomputation. The frozen encoder runs without grad, so it only adds a
  transient working set (cached features skip it);
- the peak of a step is the larger of two moments: the start of the backward pass (activations,
  autocast's weight copies, and not yet the gradients of the projector, whose backward comes last)
  and the optimizer step (every gradient, plus foreach AdamW's one moment-sized temporary on a GPU).

The largest ``batch_size_per_gpu`` that fits ``--gpu-mem`` (minus a reserve for the CUDA context and
allocator fragmentation) is reported with ``grad_accum = ceil(global_batch / (bs * N))``, the global
batch being the config's ``batch_size_per_gpu * grad_accum * N``.

``--device cpu`` plans a CPU run (fp32, one process) and adds what a training process holds besides
tensors, so the prediction is comparable with the peak RSS of a real step: the framework baseline
(this process after importing torch/transformers and building the tokenizer), the training records
(measured by loading them), and the allocator's overhead (:data:`CPU_ALLOCATOR_OVERHEAD`). ``--probe``
checks the plan with real steps: on a GPU at increasing batch sizes until one no longer fits (max
allocated memory per size, one model for all); on the CPU one step at the configured batch in a
fresh process (peak RSS), each compared with the plan at the measured sequence length.

Checked against real steps (docs/benchmarks/h200_stage1_real_size): the stage-1 model at its real
size on an H200 within 6% from batch 1 to 64; on this kind of 2-core CPU the demo config and a larger
one within 4%.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from vqkit.cli import add_overrides_argument
from vqkit.config import Config, load_config
from vqkit.errors import ConfigError

MB = 2**20
GB = 2**30
# CUDA context + allocator fragmentation kept free when fitting a batch on a GPU.
GPU_RESERVE_GB = 2.0


def current_rss() -> int:
    """Resident memory of this process in bytes (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


_BASELINE: list[int] = []


# On the CPU the peak RSS exceeds the live tensors: glibc keeps the buffers the forward frees (norm
# outputs, casts, attention scratch) in its arenas instead of returning them. Measured with the probe on
# the demo config and a 6-layer 512-wide LoRA config: +24% to +31% of the saved activations.
CPU_ALLOCATOR_OVERHEAD = 1.3

_DATA_RESIDENT: dict[tuple, int] = {}


def training_data_resident(cfg: Config) -> int | None:
    """RSS the training records take in a process, measured by loading them here (once per set of
    files; call it before anything else parses them, or the allocator reuses that memory and the
    figure comes out low). None when they cannot be read here."""
    from vqkit.data.dataset import build_dataset
    from vqkit.errors import DataError

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
    from vqkit.models.vggt import feature_shape

    act = ActivationCount()
    shape = feature_shape(cfg.model.encoder, *feature_hw)
    projector_dtype = model.projector.latents.dtype
    feats = torch.empty(1, num_views, shape.num_tokens, shape.channels, device="meta", dtype=projector_dtype)
    view_mask = torch.ones(1, num_views, dtype=torch.bool, device="meta")
    counter = SavedTensors(model)
    with counter.context(), RealKernelsOnMeta(counter, autocast_dtype):
        model.projector(feats, view_mask, shape.grid)
        if model.geometry is not None:
            bins = cfg.model.geometry.depth_bins
            geo = {"R": torch.empty(1, num_views, 3, 3, device="meta"), "t": torch.empty(1, num_views, 3, device="meta"),
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


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------


@dataclass
class Plan:
    device: str
    gpus: int
    zero: int
    seq_len: int
    params: dict[str, tuple[int, str]] = field(default_factory=dict)
    """component -> (bytes per GPU, dtype)."""
    grads: int = 0
    optimizer: int = 0
    baseline: int = 0
    data: int = 0
    """CPU plans: the training records held by the process."""
    per_sample: int = 0
    """Activation + transient bytes per sample."""
    fixed_transient: int = 0
    """Held from the forward to the backward whatever the batch: autocast's low-precision weight copies."""
    pending_grads: int = 0
    """Gradients not yet allocated at the activation peak (the start of the LLM's backward): the
    projector's and geometry encoder's, whose backward runs after the LLM's (GPU without DeepSpeed)."""
    step_transient: int = 0
    """The optimizer step's temporaries: torch's foreach AdamW on a GPU makes one moment-sized buffer."""
    answer_tokens: int = 0
    """Positions per sample that get logits (the answer span of a batch)."""
    batch_size: int = 1
    grad_accum: int = 1
    global_batch: int = 1
    capacity: int = 0
    trainable: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def static(self) -> int:
        return (sum(b for b, _ in self.params.values()) + self.grads + self.optimizer + self.baseline
                + self.data)

    @property
    def at_activation_peak(self) -> int:
        """Everything but the activations at the start of the backward pass."""
        return self.static - self.pending_grads + self.fixed_transient

    def total(self, batch_size: int) -> int:
        """The peak of a step: at the start of the backward pass or in the optimizer step."""
        return max(self.at_activation_peak + batch_size * self.per_sample, self.static + self.step_transient)

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device, "gpus": self.gpus, "zero": self.zero, "seq_len": self.seq_len,
                "answer_tokens": self.answer_tokens,
                "params_mb": {k: b / MB for k, (b, _) in self.params.items()},
                "param_dtypes": {k: d for k, (_, d) in self.params.items()},
                "grads_mb": self.grads / MB, "optimizer_mb": self.optimizer / MB, "baseline_mb": self.baseline / MB,
                "data_mb": self.data / MB,
                "activations_mb_per_sample": self.per_sample / MB, "fixed_transient_mb": self.fixed_transient / MB,
                "pending_grads_mb": self.pending_grads / MB, "step_transient_mb": self.step_transient / MB,
                "batch_size_per_gpu": self.batch_size, "grad_accum": self.grad_accum,
                "global_batch": self.global_batch, "capacity_mb": self.capacity / MB,
                "predicted_mb": self.total(self.batch_size) / MB, "trainable_params": self.trainable,
                "notes": self.notes}


def _bytes(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits // 8


def _load_tokenizer_if_local(cfg: Config):
    from pathlib import Path

    path = cfg.model.llm.tokenizer or cfg.model.llm.name_or_path
    if not Path(path).exists():
        return None
    from vqkit.data.tokenizer import load_tokenizer

    return load_tokenizer(cfg.model.llm)


def answer_positions(cfg: Config, tokenizer, batch_size: int, max_records: int = 512) -> int | None:
    """How many positions of a training batch get logits: ``VQModel.forward`` runs the LM head only
    where some sample of the batch has a label (its answer and end token), so a right-padded batch
    needs the span from the earliest answer start to the latest answer end. Measured on the first
    ``max_records`` records of the first training source, in batches of ``batch_size``; None when the
    data or the tokenizer cannot be read here."""
    from vqkit.data.collate import Collator
    from vqkit.data.schema import load_records
    from vqkit.errors import DataError

    if tokenizer is None or not cfg.data.train:
        return None
    try:
        records = load_records(cfg.data.train[0].path, check_files=False, limit=max_records)
    except (DataError, OSError):
        return None
    if not records:
        return None
    collator = Collator(tokenizer, cfg.model, cfg.data, mode="train")
    spans = []
    for rec in records:
        enc = collator.encode_sample(rec.question, rec.situation, rec.target_text(),
                                     min(len(rec.images), cfg.data.num_views), cfg.model.geometry.enabled)
        labelled = sum(label != -100 for label in enc["labels"])
        spans.append((len(enc["input_ids"]) - labelled, len(enc["input_ids"])))
    return max(max(end for _, end in chunk) - min(start for start, _ in chunk)
               for chunk in (spans[i:i + max(1, batch_size)] for i in range(0, len(spans), max(1, batch_size))))


def make_plan(cfg: Config, gpus: int = 1, zero: int = 0, gpu_mem_gb: float = 80.0, device: str = "cuda",
              seq_len: int | None = None, batch_size: int | None = None, answer_tokens: int | None = None) -> Plan:
    """Memory per GPU (or for one CPU process) for ``cfg``; see the module docstring. ``answer_tokens``:
    the positions per sample that get logits (default: measured on the training data, see
    :func:`answer_positions`; every position when the data cannot be read)."""
    from vqkit.models.vlm import build_model

    if gpus < 1:
        raise ConfigError("--gpus must be >= 1")
    if zero not in (0, 2, 3):
        raise ConfigError(f"--zero must be 0 (no DeepSpeed), 2 or 3, got {zero}")
    if device not in ("cuda", "cpu"):
        raise ConfigError(f"--device must be cuda or cpu, got {device!r}")
    cfg = copy.deepcopy(cfg)
    on_gpu = device == "cuda"
    if device == "cpu" and (gpus > 1 or zero):
        raise ConfigError("--device cpu plans one process without DeepSpeed: use --gpus 1 --zero 0")
    if cfg.model.llm.dtype == "auto":
        cfg.model.llm.dtype = "bfloat16" if on_gpu else "float32"
    llm_dtype = getattr(torch, cfg.model.llm.dtype)
    deepspeed_bf16 = zero > 0 and on_gpu
    tokenizer = _load_tokenizer_if_local(cfg)
    model = build_model(cfg, tokenizer=tokenizer, device="meta")
    baseline = framework_baseline() if not on_gpu else 0
    T = int(seq_len or cfg.data.max_length)
    plan = Plan(device=device, gpus=gpus, zero=zero, seq_len=T, baseline=baseline)

    # Parameters, gradients, optimizer state.
    param_shard = gpus if zero == 3 else 1
    state_shard = gpus if zero >= 2 else 1
    comps = {"encoder": model.encoder, "projector": model.projector, "geometry": model.geometry, "llm": model.llm}
    trainable = 0
    for name, module in comps.items():
        if module is None:
            continue
        by_dtype: dict[torch.dtype, int] = {}
        for p in module.parameters():
            dt = torch.bfloat16 if deepspeed_bf16 else (p.dtype if name == "llm" else torch.float32)
            if name == "llm" and p.requires_grad and not cfg.model.lora.full_finetune and not deepspeed_bf16:
                dt = torch.float32  # peft keeps adapters in fp32 (autocast_adapter_dtype)
            by_dtype[dt] = by_dtype.get(dt, 0) + p.numel() * _bytes(dt)
            if p.requires_grad:
                trainable += p.numel()
        total = sum(by_dtype.values())
        label = "+".join(sorted(str(d).replace("torch.", "") for d in by_dtype))
        plan.params[name] = (math.ceil(total / param_shard), label)
    plan.trainable = trainable
    if deepspeed_bf16:
        plan.grads = math.ceil(trainable * 2 / state_shard)
        plan.optimizer = math.ceil(trainable * 12 / state_shard)  # fp32 master + 2 moments
    else:
        trainable_bytes = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
        if cfg.model.lora.full_finetune:
            trainable_bytes = sum(p.numel() * _bytes(p.dtype if n.startswith("llm.") else torch.float32)
                                  for n, p in model.named_parameters() if p.requires_grad)
        plan.grads = trainable_bytes
        plan.optimizer = 2 * trainable_bytes
        if on_gpu:
            # foreach AdamW (torch's default on a GPU) takes sqrt of every second moment at once.
            plan.step_transient = trainable_bytes
            plan.pending_grads = sum(p.numel() * 4 for part in (model.projector, model.geometry) if part is not None
                                     for p in part.parameters() if p.requires_grad)
        else:
            # On the CPU AdamW loops over the parameters: one parameter's temporaries at a time.
            plan.step_transient = max((p.numel() * 4 for p in model.parameters() if p.requires_grad), default=0)

    # Activations per sample.
    image = cfg.data.image_size
    # Square images: the most a view can be in either resize mode (crop keeps height <= width).
    feature_hw = (image, image)
    act_dtype = llm_dtype
    # The trainer's autocast; "auto" is bf16 on a GPU (planned here without one, so not resolved).
    precision = cfg.train.mixed_precision if on_gpu else "no"
    precision = "bf16" if precision == "auto" else precision
    autocast_dtype = None
    if on_gpu and not deepspeed_bf16 and precision in ("bf16", "fp16"):
        autocast_dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if not on_gpu:  # first: once anything else has parsed the records, their RSS measures low
        data = training_data_resident(cfg)
        if data is None:
            plan.notes.append("the training records cannot be read here: their memory is not counted")
        plan.data = data or 0
    if answer_tokens is None:
        answer_tokens = answer_positions(cfg, tokenizer, batch_size or cfg.train.batch_size_per_gpu)
        if answer_tokens is None:
            plan.notes.append("the training data cannot be read here: logits counted at every position (an upper "
                              "bound; --answer-tokens N sets how many positions per sample get logits)")
    plan.answer_tokens = min(T, answer_tokens or T)
    act = count_activations(model, cfg, T, cfg.data.num_views, feature_hw, act_dtype, autocast_dtype,
                            plan.answer_tokens)
    llm_act = act.llm_layers + act.llm_other
    if cfg.model.llm.gradient_checkpointing:
        llm_act = act.llm_other + act.num_layers * act.layer_input + act.llm_layers // act.num_layers
        plan.notes.append("gradient checkpointing: per layer only its input is kept, one layer recomputed")
    transient = 2 * act.largest  # gradient of the largest saved tensor (logits / log-softmax) + its copy
    V = cfg.data.num_views
    batch_in = V * 3 * feature_hw[0] * feature_hw[1] * 4  # float32 images
    encoder_ws = 0
    if cfg.data.feature_cache:
        from vqkit.models.vggt import feature_shape

        fs = feature_shape(cfg.model.encoder, *feature_hw)
        batch_in = V * fs.num_tokens * fs.channels * (2 + 4)  # fp16 batch + its fp32 copy
        plan.notes.append("features from the cache: no encoder working set")
    else:
        from vqkit.models.vggt import feature_shape

        fs = feature_shape(cfg.model.encoder, *feature_hw)
        # Frozen encoder, no grad: a few [V, P, C] buffers live at once (tokens, q/k/v, MLP 4C).
        enc_bytes = 2 if on_gpu else 4
        encoder_ws = V * fs.num_tokens * cfg.model.encoder.embed_dim * enc_bytes * 12
    trainable_act = act.vision + llm_act + transient
    if on_gpu:
        # The encoder's buffers go back to the caching allocator before the trainable forward starts,
        # which reuses them: the peak is the larger of the two.
        plan.per_sample = batch_in + max(encoder_ws, trainable_act)
    else:
        # glibc keeps what the encoder and the forward free resident (CPU_ALLOCATOR_OVERHEAD).
        plan.per_sample = batch_in + encoder_ws + int(CPU_ALLOCATOR_OVERHEAD * trainable_act)
    plan.fixed_transient = act.weight_casts

    # Batch size.
    bs_cfg = cfg.train.batch_size_per_gpu
    global_batch = bs_cfg * cfg.train.grad_accum * gpus
    plan.global_batch = global_batch
    plan.capacity = int((gpu_mem_gb - (GPU_RESERVE_GB if on_gpu else 0.0)) * GB)
    free = plan.capacity - plan.at_activation_peak
    max_bs = max(0, free // max(plan.per_sample, 1))
    if plan.static + plan.step_transient > plan.capacity:
        max_bs = 0
    if batch_size is not None:
        plan.batch_size = batch_size
    else:
        plan.batch_size = int(min(max_bs, global_batch if global_batch else max_bs)) if max_bs else 0
    if plan.batch_size == 0:
        plan.notes.append(f"does not fit: the static part alone needs {plan.static / GB:.1f} GB; try --zero 3, "
                          f"more GPUs or gradient checkpointing")
        plan.grad_accum = 0
    else:
        plan.grad_accum = max(1, math.ceil(global_batch / (plan.batch_size * gpus)))
    return plan


def format_plan(plan: Plan, cfg_path: str = "") -> str:
    small = plan.total(max(plan.batch_size, 1)) < 10 * GB
    gb = (lambda b: f"{b / MB:9.1f} MB") if small else (lambda b: f"{b / GB:9.2f} GB")  # noqa: E731
    where = (f"{plan.gpus} GPU(s), ZeRO-{plan.zero}" if plan.zero else f"{plan.gpus} GPU(s), no ZeRO") \
        if plan.device == "cuda" else "one CPU process (fp32)"
    lines = [f"vqkit plan {cfg_path}: {where}, sequence {plan.seq_len} tokens "
             f"(logits at {plan.answer_tokens})", ""]
    lines.append(f"{'per GPU' if plan.device == 'cuda' else 'per process':34}{'memory':>12}")
    for name, (b, dt) in plan.params.items():
        lines.append(f"{'parameters ' + name + ' (' + dt + ')':34}{gb(b):>12}")
    lines.append(f"{'gradients (trainable)':34}{gb(plan.grads):>12}")
    lines.append(f"{'AdamW state':34}{gb(plan.optimizer):>12}")
    if plan.baseline:
        lines.append(f"{'framework baseline (RSS)':34}{gb(plan.baseline):>12}")
    if plan.data:
        lines.append(f"{'training records (RSS)':34}{gb(plan.data):>12}")
    if plan.fixed_transient:
        lines.append(f"{'autocast weight copies':34}{gb(plan.fixed_transient):>12}")
    lines.append(f"{'activations per sample':34}{gb(plan.per_sample):>12}")
    lines.append(f"{'total at batch ' + str(plan.batch_size):34}{gb(plan.total(plan.batch_size)):>12}")
    lines.append(f"{'capacity':34}{gb(plan.capacity):>12}")
    if plan.pending_grads:
        lines.append(f"(the peak is at the start of the backward pass, before the projector's "
                     f"{gb(plan.pending_grads).strip()} of gradients exist)")
    lines.append("")
    if plan.batch_size:
        lines.append(f"largest batch_size_per_gpu that fits: {plan.batch_size} -> grad_accum {plan.grad_accum} "
                     f"for the global batch {plan.global_batch} "
                     f"(--set train.batch_size_per_gpu={plan.batch_size} --set train.grad_accum={plan.grad_accum})")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Probes: real steps
# --------------------------------------------------------------------------------------------


def step_setup(cfg: Config, device: str) -> dict[str, Any]:
    """What real probe steps need, built once: the model, its optimizer, the training set and the
    collator (a generated synthetic set when the config's data is missing)."""
    from vqkit.bench import _autocast, ensure_data
    from vqkit.data.collate import Collator
    from vqkit.data.dataset import build_dataset
    from vqkit.data.tokenizer import load_tokenizer
    from vqkit.models.vlm import build_model
    from vqkit.train import set_seed

    cfg, _ = ensure_data(cfg)
    set_seed(cfg.train.seed)
    dev = torch.device(device)
    tokenizer = load_tokenizer(cfg.model.llm)
    dataset = build_dataset(cfg.data, "train", geometry_cfg=cfg.model.geometry, seed=cfg.train.seed)
    if cfg.data.feature_cache:
        from vqkit.cache import attach_feature_cache

        attach_feature_cache(dataset, cfg)
    model = build_model(cfg, tokenizer=tokenizer, device=dev)
    model.train()
    return {"device": dev, "dataset": dataset, "collator": Collator(tokenizer, cfg.model, cfg.data, mode="train"),
            "model": model, "optimizer": torch.optim.AdamW(model.param_groups(cfg.train), lr=cfg.train.lr),
            "autocast": _autocast(cfg, dev)}


def measure_step(setup: dict[str, Any], batch_size: int, steps: int = 2) -> dict[str, Any]:
    """Run ``steps`` real training steps at ``batch_size`` (samples repeat when the set is smaller);
    returns peak memory (max allocated on a GPU, peak RSS on the CPU) and the padded sequence length."""
    from vqkit.bench import full_step, peak_rss_mb
    from vqkit.train import move_to_device

    dev, dataset = setup["device"], setup["dataset"]
    batch = setup["collator"]([dataset[i % len(dataset)] for i in range(batch_size)])
    batch = move_to_device(batch, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    before = current_rss()
    for _ in range(steps):
        t0 = time.perf_counter()
        full_step(setup["model"], setup["optimizer"], batch, setup["autocast"])
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        step_s = time.perf_counter() - t0  # the last step's: the first ones warm up
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else peak_rss_mb() * MB
    labelled = (batch["labels"][:, 1:] != -100).any(dim=0)  # the positions VQModel.forward computes logits at
    return {"batch_size": batch_size, "peak_mb": peak / MB, "seq_len": int(batch["input_ids"].shape[1]),
            "answer_tokens": int(labelled.sum()), "rss_before_step_mb": before / MB, "step_s": step_s,
            "samples_per_s": batch_size / step_s}


def probe_cpu(config_path: str, overrides: list[str], batch_size: int, data_dir: str | None = None) -> dict[str, Any]:
    """One real step in a fresh process (so its peak RSS is this step's alone)."""
    cmd = [sys.executable, "-m", "vqkit.plan", "--config", config_path, "--measure", str(batch_size), "--device", "cpu"]
    for o in overrides:
        cmd += ["--set", o]
    if data_dir:
        cmd += ["--data", data_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        raise ConfigError(f"probe step failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def probe_gpu(cfg: Config, plan_args: dict, max_batch: int = 4096) -> list[dict[str, Any]]:
    """Real steps at batch 1, 2, 4, ... (one model, built once) until one runs out of memory or
    ``max_batch`` is passed; each with the plan's prediction at the measured sequence length."""
    setup = step_setup(cfg, "cuda")
    out = []
    bs = 1
    while bs <= max_batch:
        try:
            m = measure_step(setup, bs)
        except torch.cuda.OutOfMemoryError:
            out.append({"batch_size": bs, "fits": False})
            break
        finally:
            setup["optimizer"].zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
        pred = make_plan(cfg, **plan_args, seq_len=m["seq_len"], batch_size=bs, answer_tokens=m["answer_tokens"])
        out.append({**m, "fits": True, "predicted_mb": pred.total(bs) / MB})
        bs *= 2
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vqkit plan",
        description="Memory per GPU (parameters, gradients, optimizer state, activations) and the largest "
                    "batch_size_per_gpu / grad_accum for a config, without allocating the model.",
        epilog="example: vqkit plan --config configs/stage1_3d.yaml --gpus 8 --zero 2 --gpu-mem 80")
    parser.add_argument("--config", required=True, help="experiment YAML")
    add_overrides_argument(parser, "override a config value (repeatable)")
    parser.add_argument("--gpus", type=int, default=1, help="number of GPUs (data-parallel ranks)")
    parser.add_argument("--zero", type=int, choices=[0, 2, 3], default=0, help="DeepSpeed ZeRO stage (0 = none)")
    parser.add_argument("--gpu-mem", type=float, default=80.0, help="memory per GPU in GB (CPU: RAM budget)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="plan a GPU run (default) or a CPU run (fp32, includes the framework baseline)")
    parser.add_argument("--seq-len", type=int, help="tokens per sample (default data.max_length)")
    parser.add_argument("--batch-size", type=int, help="report the total at this batch instead of the largest")
    parser.add_argument("--answer-tokens", type=int,
                        help="positions per sample that get logits (default: measured on the training data)")
    parser.add_argument("--probe", action="store_true",
                        help="confirm with real steps (GPU: increasing batch until OOM; CPU: one step)")
    parser.add_argument("--data", help="synthetic data folder (train.jsonl, tokenizer/) for --probe's steps "
                                       "(default: the config's data, generated when missing)")
    parser.add_argument("--max-batch", type=int, default=4096, help="largest batch --probe tries on a GPU")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # internal: one step, print JSON
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.data:
        from vqkit.bench import ensure_data

        cfg, _ = ensure_data(cfg, args.data)
    if args.measure:
        print(json.dumps(measure_step(step_setup(cfg, args.device), args.measure)))
        return 0
    plan_args = dict(gpus=args.gpus, zero=args.zero, gpu_mem_gb=args.gpu_mem, device=args.device)
    plan = make_plan(cfg, **plan_args, seq_len=args.seq_len, batch_size=args.batch_size,
                     answer_tokens=args.answer_tokens)
    result = plan.as_dict()
    text = format_plan(plan, args.config)
    if args.probe:
        if args.device == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError("--probe on the GPU needs CUDA; use --device cpu --probe on this machine")
            rows = probe_gpu(cfg, plan_args, args.max_batch)
            result["probe"] = rows
            fits = [r["batch_size"] for r in rows if r["fits"]]
            text += "\n\nprobe (real steps):\n" + "\n".join(
                f"  batch {r['batch_size']:5d}: " + (f"peak {r['peak_mb']:9.0f} MB, plan {r['predicted_mb']:9.0f} MB "
                                                    f"({100 * (r['predicted_mb'] / r['peak_mb'] - 1):+.0f}%), "
                                                    f"{r['step_s']:.2f} s/step, {r['samples_per_s']:.1f} samples/s"
                                                    if r["fits"] else "out of memory") for r in rows)
            text += f"\nlargest batch that ran: {max(fits) if fits else 0}"
        else:
            bs = args.batch_size or cfg.train.batch_size_per_gpu
            m = probe_cpu(args.config, args.overrides, bs, args.data)
            pred = make_plan(cfg, **plan_args, seq_len=m["seq_len"], batch_size=bs, answer_tokens=m["answer_tokens"])
            m["predicted_mb"] = pred.total(bs) / MB
            m["error"] = m["predicted_mb"] / m["peak_mb"] - 1
            result["probe"] = [m]
            text += (f"\n\nprobe: one real step at batch {bs} (sequence {m['seq_len']}): peak RSS {m['peak_mb']:.0f} MB, "
                     f"plan {m['predicted_mb']:.0f} MB ({100 * m['error']:+.1f}%)")
    print(json.dumps(result) if args.json else text)
    return 0


if __name__ == "__main__":
    from vqkit.cli import run_main

    sys.exit(run_main(main, None, "vqkit plan"))
