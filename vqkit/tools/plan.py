"""Memory plan of a config: ``vqkit plan --config FILE --gpus N [--zero 2|3] [--gpu-mem GB] [--probe]``.

Nothing real is allocated: the model is built on the meta device (``build_model(cfg, device="meta")``)
and its saved tensors are counted there (:mod:`vqkit.tools.memory_accounting`). Per GPU:

- parameters by component and dtype (what the training code holds: without DeepSpeed the LLM in
  ``llm.dtype`` (auto = bf16 on a GPU), the aggregator, projector, geometry encoder and LoRA in
  fp32; DeepSpeed with bf16 casts the whole module to bf16), partitioned over N GPUs by ZeRO-3;
- gradients of the trainable parameters (fp32, or bf16 under DeepSpeed), partitioned by ZeRO-2/3;
- AdamW state: two fp32 moments (+ an fp32 master copy under DeepSpeed bf16), partitioned by ZeRO;
- activations: the saved tensors of the projector, geometry encoder and LLM for one sample of
  ``--seq-len`` tokens (default ``data.max_length``, the longest a sample can be), times the batch.
  The LM head runs only where a batch has labels (:func:`vqkit.tools.plan_tokens.answer_positions`,
  measured on the training data). Packed (``data.packing``) a sample is its mean length, logits at its
  mean label tokens (:func:`vqkit.tools.plan_tokens.packed_sample`); ``train.tokens_per_batch`` over
  those tokens (padded: ``data.max_length``) is a micro-batch's samples. With checkpointing the LLM
  keeps each layer's input and one layer's activations during recomputation. The frozen encoder runs
  without grad, so it only adds a transient working set (cached features skip it);
- the peak of a step is the larger of two moments: the start of the backward pass (activations,
  autocast's weight copies, and not yet the gradients of the projector, whose backward comes last)
  and the optimizer step (every gradient; on a GPU torch's fused AdamW updates in place, with no
  moment-sized temporary, while DeepSpeed keeps its own optimizer);
- gradient checkpointing as configured, or for ``llm.gradient_checkpointing: auto`` the plan decides:
  off when the configured batch fits without it (the step then runs one forward of the LLM's layers
  less), else on (:func:`vqkit.tools.checkpointing.resolve_gradient_checkpointing`, which ``vqkit train`` and
  ``vqkit bench`` call);
- the frozen encoder on a GPU holds its matmul weights in bf16 (``models.builder.build_encoder``).

The suggested ``batch_size_per_gpu`` is the largest batch that fits ``--gpu-mem`` (minus a reserve for the
CUDA context and allocator fragmentation) and divides the global batch per GPU, with ``grad_accum`` =
that share / batch, so batch x grad_accum x N is exactly the recipe's global batch
(``train.global_batch_size``, else ``batch_size_per_gpu * grad_accum * N``); the largest batch that fits is
reported beside it (:mod:`vqkit.tools.plan_batch`). The ZeRO stage is ``--zero``, else that of the config's
DeepSpeed JSON (``train.deepspeed``, what the launch line's ``--deepspeed`` sets), else none.

``--device cpu`` plans a CPU run (fp32, one process) and adds what a training process holds besides
tensors, so the prediction is comparable with the peak RSS of a real step: the framework baseline
(this process after importing torch/transformers and building the tokenizer), the training records
(measured by loading them), and the allocator's overhead (:data:`CPU_ALLOCATOR_OVERHEAD`). ``--probe``
checks the plan with real steps (:mod:`vqkit.tools.plan_probe`); how close the plan comes to them on a
GPU and on the CPU is recorded in docs/benchmarks/.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vqkit.config.schema import Config
from vqkit.errors import ConfigError
from vqkit.models.builder import build_model
from vqkit.tokenizer import load_tokenizer
from vqkit.tools.memory_accounting import (
    CPU_ALLOCATOR_OVERHEAD,
    count_activations,
    framework_baseline,
    training_data_resident,
)
from vqkit.tools.plan_batch import GPU_RESERVE_GB, batch_lines, capacity_bytes, fit_batch, resolve_zero
from vqkit.tools.plan_tokens import answer_positions, packed_sample
from vqkit.vggt.aggregator import feature_shape

MB = 2**20
GB = 2**30
__all__ = ["GB", "GPU_RESERVE_GB", "MB", "MemoryPlan", "answer_positions", "format_plan", "make_plan"]


@dataclass
class MemoryPlan:
    """Memory of one training process (a GPU, or a CPU process), by part; :meth:`total` at a batch size."""

    device: str
    gpus: int
    zero: int
    seq_len: int
    zero_source: str = ""
    """Where the ZeRO stage comes from (--zero, the config's DeepSpeed JSON, or none)."""
    gpu_mem_gb: float = 0.0
    """The memory per GPU (or the CPU budget) the plan was made for."""
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
    """The optimizer step's temporaries (the CPU's AdamW: one parameter's; the GPU's fused AdamW: none)."""
    answer_tokens: int = 0
    """Positions per sample that get logits (the answer span of a batch; packed, the sample's label tokens)."""
    packing: bool = False
    """``data.packing``: ``seq_len`` is a sample's mean tokens in a packed row."""
    tokens_per_batch: int | None = None
    """``train.tokens_per_batch``: the micro-batch's tokens, and ``batch_size`` the samples they hold."""
    batch_size: int = 1
    grad_accum: int = 1
    global_batch: int = 1
    global_batch_source: str = ""
    """Where the global batch comes from: train.global_batch_size, or batch x grad_accum x GPUs."""
    configured: tuple[int, int] = (1, 1)
    """The config's own (batch_size_per_gpu, grad_accum)."""
    largest_batch: int = 0
    """The largest batch per GPU that fits (``batch_size`` may be smaller: it divides the global batch)."""
    capacity: int = 0
    trainable: int = 0
    gradient_checkpointing: bool = False
    """Whether the LLM recomputes its layers in the backward pass (the config's choice, or the plan's for auto)."""
    checkpointing_decided_by: str = "the config"
    """Why: "the config", or the plan's reason for an auto setting."""
    per_sample_without_checkpointing: int = 0
    """``per_sample`` if the LLM kept every activation."""
    per_sample_with_checkpointing: int = 0
    """``per_sample`` if the LLM recomputed its layers."""
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
        return {"device": self.device, "gpus": self.gpus, "zero": self.zero, "zero_source": self.zero_source,
                "seq_len": self.seq_len,
                "answer_tokens": self.answer_tokens,
                "params_mb": {k: b / MB for k, (b, _) in self.params.items()},
                "param_dtypes": {k: d for k, (_, d) in self.params.items()},
                "grads_mb": self.grads / MB, "optimizer_mb": self.optimizer / MB, "baseline_mb": self.baseline / MB,
                "data_mb": self.data / MB,
                "activations_mb_per_sample": self.per_sample / MB, "fixed_transient_mb": self.fixed_transient / MB,
                "pending_grads_mb": self.pending_grads / MB, "step_transient_mb": self.step_transient / MB,
                "batch_size_per_gpu": self.batch_size, "grad_accum": self.grad_accum,
                "packing": self.packing, "tokens_per_batch": self.tokens_per_batch,
                "global_batch": self.global_batch, "global_batch_source": self.global_batch_source,
                "gpu_mem_gb": self.gpu_mem_gb, "largest_batch_size_per_gpu": self.largest_batch,
                "capacity_mb": self.capacity / MB,
                "predicted_mb": self.total(self.batch_size) / MB, "trainable_params": self.trainable,
                "gradient_checkpointing": self.gradient_checkpointing,
                "gradient_checkpointing_decided_by": self.checkpointing_decided_by,
                "activations_mb_per_sample_without_checkpointing": self.per_sample_without_checkpointing / MB,
                "notes": self.notes}


def _bytes(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits // 8


def _load_tokenizer_if_local(cfg: Config):
    path = cfg.model.llm.tokenizer or cfg.model.llm.name_or_path
    if not Path(path).exists():
        return None
    return load_tokenizer(cfg.model.llm)


def make_plan(cfg: Config, gpus: int = 1, zero: int | None = None, gpu_mem_gb: float = 80.0, device: str = "cuda",
              seq_len: int | None = None, batch_size: int | None = None,
              answer_tokens: int | None = None) -> MemoryPlan:
    """Memory per GPU (or for one CPU process) for ``cfg``; see the module docstring. ``zero``: the ZeRO
    stage (None: that of ``train.deepspeed``, else none). ``answer_tokens``: the positions per sample that
    get logits (default: measured on the training data, see :func:`answer_positions`; every position when
    the data cannot be read)."""
    if gpus < 1:
        raise ConfigError("--gpus must be >= 1")
    if zero not in (None, 0, 2, 3):
        raise ConfigError(f"--zero must be 0 (no DeepSpeed), 2 or 3, got {zero}")
    if device not in ("cuda", "cpu"):
        raise ConfigError(f"--device must be cuda or cpu, got {device!r}")
    cfg = copy.deepcopy(cfg)
    on_gpu = device == "cuda"
    if device == "cpu" and (gpus > 1 or zero):
        raise ConfigError("--device cpu plans one process without DeepSpeed: use --gpus 1 --zero 0")
    zero, zero_source = resolve_zero(cfg, zero) if on_gpu else (0, "a CPU run: no DeepSpeed")
    if cfg.model.llm.dtype == "auto":
        cfg.model.llm.dtype = "bfloat16" if on_gpu else "float32"
    llm_dtype = getattr(torch, cfg.model.llm.dtype)
    deepspeed_bf16 = zero > 0 and on_gpu
    tokenizer = _load_tokenizer_if_local(cfg)
    model = build_model(cfg, tokenizer=tokenizer, device="meta")
    if on_gpu and not deepspeed_bf16:
        model.encoder.store_matmul_weights(torch.bfloat16)  # as build_encoder does for a GPU
    baseline = framework_baseline() if not on_gpu else 0
    T = int(seq_len or cfg.data.max_length)
    if not on_gpu:  # the records' memory first (training_data_resident), then read them for the packed rows
        training_data_resident(cfg)
    packed = packed_sample(cfg, tokenizer) if cfg.data.packing and seq_len is None else None
    if packed:  # a packed row holds its samples' own tokens and runs the LM head at their labels only
        T, answer_tokens = round(packed["mean_tokens"]), answer_tokens or round(packed["mean_label_tokens"])
    if cfg.train.tokens_per_batch and batch_size is None:
        batch_size = max(1, cfg.train.tokens_per_batch // T)
    plan = MemoryPlan(device=device, gpus=gpus, zero=zero, seq_len=T, baseline=baseline, packing=cfg.data.packing,
                      tokens_per_batch=cfg.train.tokens_per_batch, zero_source=zero_source, gpu_mem_gb=gpu_mem_gb,
                      capacity=capacity_bytes(gpu_mem_gb, on_gpu))

    _count_static(plan, model, cfg, gpus, zero, on_gpu, deepspeed_bf16)
    _count_activations(plan, model, cfg, tokenizer, llm_dtype, on_gpu, deepspeed_bf16, batch_size, answer_tokens)
    _decide_checkpointing(plan, cfg, batch_size)
    fit_batch(plan, cfg, gpus, batch_size)
    return plan


def _count_static(plan: MemoryPlan, model, cfg: Config, gpus: int, zero: int, on_gpu: bool,
                  deepspeed_bf16: bool) -> None:
    """Parameters, gradients, optimizer state (partitioned by ZeRO)."""
    param_shard = gpus if zero == 3 else 1
    state_shard = gpus if zero >= 2 else 1
    comps = {"encoder": model.encoder, "projector": model.projector, "geometry": model.geometry, "llm": model.llm}
    trainable = 0
    for name, module in comps.items():
        if module is None:
            continue
        by_dtype: dict[torch.dtype, int] = {}
        for p in module.parameters():
            dt = torch.bfloat16 if deepspeed_bf16 else (p.dtype if name in ("llm", "encoder") else torch.float32)
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
            # build_optimizer's fused AdamW updates every parameter in place (foreach AdamW, torch's
            # default, would take the sqrt of every second moment at once: one moment-sized temporary).
            plan.step_transient = 0
            plan.pending_grads = sum(p.numel() * 4 for part in (model.projector, model.geometry) if part is not None
                                     for p in part.parameters() if p.requires_grad)
        else:
            # On the CPU AdamW loops over the parameters: one parameter's temporaries at a time.
            plan.step_transient = max((p.numel() * 4 for p in model.parameters() if p.requires_grad), default=0)


def _count_activations(plan: MemoryPlan, model, cfg: Config, tokenizer, llm_dtype, on_gpu: bool, deepspeed_bf16: bool,
                       batch_size: int | None, answer_tokens: int | None) -> None:
    """Activations and transients per sample, and what is held whatever the batch."""
    T = plan.seq_len
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
    # Without checkpointing the LLM keeps every activation; with it, each layer's input and one
    # layer's activations while that layer is recomputed.
    llm_act = {False: act.llm_layers + act.llm_other,
               True: act.llm_other + act.num_layers * act.layer_input + act.llm_layers // act.num_layers}
    transient = 2 * act.largest  # gradient of the largest saved tensor (logits / log-softmax) + its copy
    V = cfg.data.num_views
    batch_in = V * 3 * feature_hw[0] * feature_hw[1] * 4  # float32 images
    encoder_ws = 0
    fs = feature_shape(cfg.model.encoder, *feature_hw)
    if cfg.data.feature_cache:
        batch_in = V * fs.num_tokens * fs.channels * (2 + 4)  # fp16 batch + its fp32 copy
        plan.notes.append("features from the cache: no encoder working set")
    else:
        # Frozen encoder, no grad: a few [V, P, C] buffers live at once (tokens, q/k/v, MLP 4C).
        enc_bytes = 2 if on_gpu else 4
        encoder_ws = V * fs.num_tokens * cfg.model.encoder.embed_dim * enc_bytes * 12
    per_sample = {}
    for checkpointing, llm in llm_act.items():
        trainable_act = act.vision + llm + transient
        if on_gpu:
            # The encoder's buffers go back to the caching allocator before the trainable forward starts,
            # which reuses them: the peak is the larger of the two.
            per_sample[checkpointing] = batch_in + max(encoder_ws, trainable_act)
        else:
            # glibc keeps what the encoder and the forward free resident (CPU_ALLOCATOR_OVERHEAD).
            per_sample[checkpointing] = batch_in + encoder_ws + int(CPU_ALLOCATOR_OVERHEAD * trainable_act)
    plan.per_sample_without_checkpointing = per_sample[False]
    plan.per_sample = per_sample[bool(cfg.model.llm.gradient_checkpointing)]  # "auto": _decide_checkpointing
    plan.per_sample_with_checkpointing = per_sample[True]
    plan.fixed_transient = act.weight_casts


def _decide_checkpointing(plan: MemoryPlan, cfg: Config, batch_size: int | None) -> None:
    """``llm.gradient_checkpointing`` as configured, or for ``auto``: off when the batch (``batch_size``,
    default the configured one) fits in the plan's capacity without it, else on."""
    setting = cfg.model.llm.gradient_checkpointing
    if setting == "auto":
        bs = batch_size or cfg.train.batch_size_per_gpu
        capacity = plan.capacity
        without = max(plan.at_activation_peak + bs * plan.per_sample_without_checkpointing,
                      plan.static + plan.step_transient)
        setting = without > capacity
        plan.checkpointing_decided_by = (
            f"auto: the plan, batch {bs} {'needs' if setting else 'fits in'} {without / GB:.1f} GB without it "
            f"({'more than' if setting else 'of'} {capacity / GB:.1f} GB)")
    plan.gradient_checkpointing = bool(setting)
    plan.per_sample = plan.per_sample_with_checkpointing if setting else plan.per_sample_without_checkpointing
    if setting:
        plan.notes.append("gradient checkpointing: per layer only its input is kept, one layer recomputed")


def format_plan(plan: MemoryPlan, cfg_path: str = "") -> str:
    small = plan.total(max(plan.batch_size, 1)) < 10 * GB
    gb = (lambda b: f"{b / MB:9.1f} MB") if small else (lambda b: f"{b / GB:9.2f} GB")  # noqa: E731
    where = (f"{plan.gpus} GPU(s), ZeRO-{plan.zero}" if plan.zero else f"{plan.gpus} GPU(s), no ZeRO") \
        if plan.device == "cuda" else "one CPU process (fp32)"
    if plan.packing:
        sequence = f"packed rows, {plan.seq_len} tokens a sample (logits at its {plan.answer_tokens} labels)"
    else:
        sequence = f"sequence {plan.seq_len} tokens (logits at {plan.answer_tokens})"
    if plan.tokens_per_batch:
        sequence += f", micro-batches of {plan.tokens_per_batch} tokens: {plan.batch_size} samples"
    lines = [f"vqkit plan {cfg_path}: {where}, {sequence}"]
    if plan.device == "cuda":
        lines.append(f"ZeRO stage: {plan.zero} ({plan.zero_source})")
    lines.append("")
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
    lines.append(f"{'capacity':34}{gb(plan.capacity):>12}"
                 + (f"  ({plan.gpu_mem_gb:g} GB less {GPU_RESERVE_GB:g} GB kept free for the CUDA context and the "
                    f"allocator's fragmentation)" if plan.device == "cuda" else ""))
    if plan.pending_grads:
        lines.append(f"(the peak is at the start of the backward pass, before the projector's "
                     f"{gb(plan.pending_grads).strip()} of gradients exist)")
    lines.append("")
    if plan.batch_size and plan.tokens_per_batch:
        lines.append(f"tokens_per_batch {plan.tokens_per_batch} ({plan.batch_size} samples) x grad_accum "
                     f"{plan.grad_accum} x {plan.gpus} GPU(s); fits up to {plan.largest_batch * plan.seq_len}")
    else:
        lines += batch_lines(plan)
    lines.append(f"gradient checkpointing: {'on' if plan.gradient_checkpointing else 'off'} "
                 f"({plan.checkpointing_decided_by})")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)
