"""Memory plan of a config: ``vqkit plan --config FILE --gpus N [--zero 2|3] [--gpu-mem GB] [--probe]``.

Nothing real is allocated: the model is built on the meta device (``build_model(cfg, device="meta")``)
and one forward pass runs there under ``torch.autograd.graph.saved_tensors_hooks``, which sees every
tensor autograd keeps for the backward pass with its true shape and dtype. Per GPU:

- parameters by component and dtype (what the training code holds: without DeepSpeed the LLM in
  ``llm.dtype`` (auto = bf16 on a GPU), the aggregator, projector, geometry encoder and LoRA in
  fp32; DeepSpeed with bf16 casts the whole module to bf16), partitioned over N GPUs by ZeRO-3;
- gradients of the trainable parameters (fp32, or bf16 under DeepSpeed), partitioned by ZeRO-2/3;
- AdamW state: two fp32 moments (+ an fp32 master copy under DeepSpeed bf16), partitioned by ZeRO;
- activations: the saved tensors of the projector, geometry encoder and LLM for one sample of
  ``--seq-len`` tokens (default ``data.max_length``, the longest a sample can be), times the batch.
  With ``llm.gradient_checkpointing`` the LLM keeps only each layer's input plus one layer's
  activations during recomputation. The frozen encoder runs without grad, so it only adds a
  transient working set (cached features skip it);
- a transient: the gradient of the largest saved tensor (the logits' cross-entropy) and the batch.

The largest ``batch_size_per_gpu`` that fits ``--gpu-mem`` (minus a reserve for the CUDA context and
allocator fragmentation) is reported with ``grad_accum = ceil(global_batch / (bs * N))``, the global
batch being the config's ``batch_size_per_gpu * grad_accum * N``.

``--device cpu`` plans a CPU run (fp32, one process) and adds the framework baseline (the resident
memory of this process after importing torch/transformers and building the tokenizer), so the
prediction is comparable with the peak RSS of a real step. ``--probe`` checks the plan with real
steps: on a GPU at increasing batch sizes until one no longer fits (max allocated memory per size);
on the CPU one step at the configured batch in a fresh process (peak RSS), each compared with the
plan at the measured sequence length.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

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


def count_activations(model, cfg: Config, seq_len: int, num_views: int, feature_hw: tuple[int, int],
                      dtype: torch.dtype) -> ActivationCount:
    """Run one sample through the meta model's trainable path and count the saved tensors."""
    from vqkit.models.vggt import feature_shape

    act = ActivationCount()
    shape = feature_shape(cfg.model.encoder, *feature_hw)
    projector_dtype = model.projector.latents.dtype
    feats = torch.empty(1, num_views, shape.num_tokens, shape.channels, device="meta", dtype=projector_dtype)
    view_mask = torch.ones(1, num_views, dtype=torch.bool, device="meta")
    counter = SavedTensors(model)
    with counter.context():
        model.projector(feats, view_mask, shape.grid)
        if model.geometry is not None:
            bins = cfg.model.geometry.depth_bins
            geo = {"R": torch.empty(1, num_views, 3, 3, device="meta"), "t": torch.empty(1, num_views, 3, device="meta"),
                   "K": torch.empty(1, num_views, 3, 3, device="meta"),
                   "depth_hist": torch.empty(1, num_views, bins, device="meta"), "image_hw": feature_hw}
            model.geometry(geo, view_mask)
    act.vision = counter.total()

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
        labels = torch.zeros(1, seq_len, dtype=torch.long, device="meta")
        with counter.context():
            model.llm(inputs_embeds=emb * 1, attention_mask=mask, labels=labels, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    act.llm_layers = counter.by_label.get("layer", 0)
    act.llm_other = counter.by_label.get("other", 0)
    act.largest = max(counter.largest, 1)
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
    per_sample: int = 0
    """Activation + transient bytes per sample."""
    fixed_transient: int = 0
    batch_size: int = 1
    grad_accum: int = 1
    global_batch: int = 1
    capacity: int = 0
    trainable: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def static(self) -> int:
        return sum(b for b, _ in self.params.values()) + self.grads + self.optimizer + self.baseline

    def total(self, batch_size: int) -> int:
        return self.static + self.fixed_transient + batch_size * self.per_sample

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device, "gpus": self.gpus, "zero": self.zero, "seq_len": self.seq_len,
                "params_mb": {k: b / MB for k, (b, _) in self.params.items()},
                "param_dtypes": {k: d for k, (_, d) in self.params.items()},
                "grads_mb": self.grads / MB, "optimizer_mb": self.optimizer / MB, "baseline_mb": self.baseline / MB,
                "activations_mb_per_sample": self.per_sample / MB, "fixed_transient_mb": self.fixed_transient / MB,
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


def make_plan(cfg: Config, gpus: int = 1, zero: int = 0, gpu_mem_gb: float = 80.0, device: str = "cuda",
              seq_len: int | None = None, batch_size: int | None = None) -> Plan:
    """Memory per GPU (or for one CPU process) for ``cfg``; see the module docstring."""
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

    # Activations per sample.
    image = cfg.data.image_size
    # Square images: the most a view can be in either resize mode (crop keeps height <= width).
    feature_hw = (image, image)
    act_dtype = llm_dtype
    act = count_activations(model, cfg, T, cfg.data.num_views, feature_hw, act_dtype)
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
    # The encoder's buffers are freed before the trainable forward starts: the peak is the larger.
    plan.per_sample = batch_in + max(encoder_ws, act.vision + llm_act + transient)
    plan.fixed_transient = 0

    # Batch size.
    bs_cfg = cfg.train.batch_size_per_gpu
    global_batch = bs_cfg * cfg.train.grad_accum * gpus
    plan.global_batch = global_batch
    plan.capacity = int((gpu_mem_gb - (GPU_RESERVE_GB if on_gpu else 0.0)) * GB)
    free = plan.capacity - plan.static - plan.fixed_transient
    max_bs = max(0, free // max(plan.per_sample, 1))
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
    lines = [f"vqkit plan {cfg_path}: {where}, sequence {plan.seq_len} tokens", ""]
    lines.append(f"{'per GPU' if plan.device == 'cuda' else 'per process':34}{'memory':>12}")
    for name, (b, dt) in plan.params.items():
        lines.append(f"{'parameters ' + name + ' (' + dt + ')':34}{gb(b):>12}")
    lines.append(f"{'gradients (trainable)':34}{gb(plan.grads):>12}")
    lines.append(f"{'AdamW state':34}{gb(plan.optimizer):>12}")
    if plan.baseline:
        lines.append(f"{'framework baseline (RSS)':34}{gb(plan.baseline):>12}")
    lines.append(f"{'activations per sample':34}{gb(plan.per_sample):>12}")
    lines.append(f"{'total at batch ' + str(plan.batch_size):34}{gb(plan.total(plan.batch_size)):>12}")
    lines.append(f"{'capacity':34}{gb(plan.capacity):>12}")
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


def step_setup(cfg: Config, device: str, data_dir: str | None = None) -> dict[str, Any]:
    """What real probe steps need, built once: the model, its optimizer, the training set and the
    collator (the data of ``data_dir``, or a generated synthetic set when the config's is missing)."""
    from vqkit.bench import _autocast, ensure_data
    from vqkit.data.collate import Collator
    from vqkit.data.dataset import build_dataset
    from vqkit.data.tokenizer import load_tokenizer
    from vqkit.models.vlm import build_model
    from vqkit.train import set_seed

    cfg, _ = ensure_data(cfg, data_dir)
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
        full_step(setup["model"], setup["optimizer"], batch, setup["autocast"])
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else peak_rss_mb() * MB
    return {"batch_size": batch_size, "peak_mb": peak / MB, "seq_len": int(batch["input_ids"].shape[1]),
            "rss_before_step_mb": before / MB}


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


def probe_gpu(cfg: Config, plan_args: dict, max_batch: int = 4096, data_dir: str | None = None) -> list[dict[str, Any]]:
    """Real steps at batch 1, 2, 4, ... (one model, built once) until one runs out of memory or
    ``max_batch`` is passed; each with the plan's prediction at the measured sequence length."""
    setup = step_setup(cfg, "cuda", data_dir)
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
        pred = make_plan(cfg, **plan_args, seq_len=m["seq_len"], batch_size=bs)
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
    parser.add_argument("--probe", action="store_true",
                        help="confirm with real steps (GPU: increasing batch until OOM; CPU: one step)")
    parser.add_argument("--data", help="synthetic data folder (train.jsonl, tokenizer/) for --probe's steps "
                                       "(default: the config's data, generated when missing)")
    parser.add_argument("--max-batch", type=int, default=4096, help="largest batch --probe tries on a GPU")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # internal: one step, print JSON
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.measure:
        print(json.dumps(measure_step(step_setup(cfg, args.device, args.data), args.measure)))
        return 0
    plan_args = dict(gpus=args.gpus, zero=args.zero, gpu_mem_gb=args.gpu_mem, device=args.device)
    plan = make_plan(cfg, **plan_args, seq_len=args.seq_len, batch_size=args.batch_size)
    result = plan.as_dict()
    text = format_plan(plan, args.config)
    if args.probe:
        if args.device == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError("--probe on the GPU needs CUDA; use --device cpu --probe on this machine")
            rows = probe_gpu(cfg, plan_args, args.max_batch, args.data)
            result["probe"] = rows
            fits = [r["batch_size"] for r in rows if r["fits"]]
            text += "\n\nprobe (real steps):\n" + "\n".join(
                f"  batch {r['batch_size']:5d}: " + (f"peak {r['peak_mb']:9.0f} MB, plan {r['predicted_mb']:9.0f} MB "
                                                    f"({100 * (r['predicted_mb'] / r['peak_mb'] - 1):+.0f}%)"
                                                    if r["fits"] else "out of memory") for r in rows)
            text += f"\nlargest batch that ran: {max(fits) if fits else 0}"
        else:
            bs = args.batch_size or cfg.train.batch_size_per_gpu
            m = probe_cpu(args.config, args.overrides, bs, args.data)
            pred = make_plan(cfg, **plan_args, seq_len=m["seq_len"], batch_size=bs)
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
