"""The batch side of ``vqkit plan``: which ZeRO stage a plan assumes, the global batch it keeps, and the
batch per GPU with its accumulation that give it (:func:`fit_batch`); the memory is :mod:`vqkit.tools.plan`'s.

The global batch is the recipe's optimisation (with its learning rate and schedule), so a plan for N GPUs
keeps it: ``train.global_batch_size`` when the config sets it, else what the config trains with on N GPUs
(``batch_size_per_gpu x grad_accum x N``, which grows with N; a note says so). The suggested batch per GPU
is the largest that fits the memory *and* divides the samples each GPU takes per step; grad_accum is the
rest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from vqkit.config.schema import Config
from vqkit.errors import ConfigError

# CUDA context + allocator fragmentation kept free when fitting a batch on a GPU.
GPU_RESERVE_GB = 2.0


def zero_stage(deepspeed_json: str | None) -> int:
    """The ZeRO stage of a DeepSpeed JSON as the plan counts it (0 without one; stage 1 as none: the larger
    figure)."""
    if not deepspeed_json:
        return 0
    try:
        stage = json.loads(Path(deepspeed_json).read_text()).get("zero_optimization", {}).get("stage", 0)
    except (OSError, ValueError) as e:
        raise ConfigError(f"train.deepspeed: cannot read {deepspeed_json} ({e})") from e
    return stage if stage in (2, 3) else 0


def resolve_zero(cfg: Config, zero: int | None) -> tuple[int, str]:
    """(ZeRO stage, where it comes from): ``zero`` when given (it must agree with train.deepspeed when the
    config names a JSON), else the stage of ``train.deepspeed`` (what ``--deepspeed FILE`` sets, as on
    the launch line), else 0: plain DDP, what ``vqkit-train`` runs without a DeepSpeed JSON."""
    configured = cfg.train.deepspeed
    if zero is None:
        if configured:
            stage = zero_stage(configured)
            return stage, f"the stage of {configured}"
        return 0, "no DeepSpeed JSON in train.deepspeed or --deepspeed: plain DDP, as vqkit-train runs without one"
    if configured and zero_stage(configured) != zero:
        raise ConfigError(f"--zero {zero} disagrees with train.deepspeed {configured} (ZeRO-{zero_stage(configured)}): "
                          f"give one of them")
    return zero, f"--zero {zero}" + (f", as {configured}" if configured else "")


def capacity_bytes(gpu_mem_gb: float, on_gpu: bool) -> int:
    """What a step may use: the card's memory less :data:`GPU_RESERVE_GB` on a GPU (the CUDA context and
    the caching allocator's fragmentation, which no tensor count sees), the whole budget on a CPU."""
    return int((gpu_mem_gb - (GPU_RESERVE_GB if on_gpu else 0.0)) * 2**30)


def planned_global_batch(cfg: Config, gpus: int, token_batch: int | None = None) -> tuple[int, str]:
    """(global batch, where it comes from) of ``cfg`` on ``gpus`` GPUs; with ``train.tokens_per_batch`` a
    micro-batch is ``token_batch`` samples (what its tokens hold)."""
    t = cfg.train
    if t.global_batch_size is not None:
        return t.global_batch_size, "train.global_batch_size"
    accum = t.grad_accum or 1
    if t.tokens_per_batch and token_batch:
        return (token_batch * accum * gpus,
                f"{token_batch} samples of tokens_per_batch {t.tokens_per_batch} x grad_accum {accum} x {gpus}")
    return (t.batch_size_per_gpu * accum * gpus,
            f"batch_size_per_gpu {t.batch_size_per_gpu} x grad_accum {accum} x {gpus}")


def fit_batch(plan, cfg: Config, gpus: int, batch_size: int | None) -> None:
    """``plan``'s batch per GPU and accumulation for the global batch (:func:`planned_global_batch`):
    batch x grad_accum x GPUs equals it exactly, so the batch is the largest that fits *and* divides the
    samples each GPU takes per step (an explicit ``batch_size`` that does not divide them gets a note with
    the global batch it gives instead). Needs ``plan.capacity``, ``at_activation_peak``, ``per_sample``,
    ``static`` and ``step_transient``."""
    if gpus > 1 and plan.device == "cuda" and not cfg.train.deepspeed and plan.zero == 0:
        plan.notes.append("no ZeRO: a launch line with --deepspeed configs/deepspeed/zero2.json (docs/cluster.md) "
                          "shards the gradients and optimizer state; give the same --deepspeed here to plan that run")
    global_batch, source = planned_global_batch(cfg, gpus, batch_size)
    plan.global_batch, plan.global_batch_source = global_batch, source
    plan.configured = (cfg.train.batch_size_per_gpu, cfg.train.grad_accum or 1)
    if cfg.train.global_batch_size is None and gpus > 1:
        plan.notes.append(f"train.global_batch_size is not set: on {gpus} GPUs this config trains with {global_batch} "
                          f"samples per step ({source}), {gpus}x its one-GPU batch; set train.global_batch_size "
                          f"to keep one global batch on any number of GPUs")
    per_gpu = global_batch // gpus  # samples per GPU per optimizer step
    free = plan.capacity - plan.at_activation_peak
    max_bs = int(max(0, free // max(plan.per_sample, 1)))
    if plan.static + plan.step_transient > plan.capacity:
        max_bs = 0
    plan.largest_batch = max_bs
    if global_batch % gpus:
        plan.notes.append(f"the global batch {global_batch} does not divide over {gpus} GPUs: plan another GPU "
                          f"count, or set train.global_batch_size to a multiple of {gpus}")
        plan.batch_size, plan.grad_accum = min(max_bs, max(per_gpu, 1)), 0
        return
    if batch_size is not None:
        plan.batch_size = batch_size
    else:
        fits = min(max_bs, per_gpu)
        plan.batch_size = max((d for d in range(1, fits + 1) if per_gpu % d == 0), default=0)
        if 0 < plan.batch_size < fits:
            plan.notes.append(f"batch {fits} fits but does not divide the {per_gpu} samples per GPU per step; "
                              f"{plan.batch_size} does (keeping the global batch {global_batch})")
    if plan.batch_size == 0:
        plan.notes.append(f"does not fit: the static part alone needs {plan.static / 2**30:.1f} GB; try --zero 3, "
                          f"more GPUs or gradient checkpointing")
        plan.grad_accum = 0
        return
    plan.grad_accum = max(1, math.ceil(per_gpu / plan.batch_size))
    made = plan.batch_size * plan.grad_accum * gpus
    if made != global_batch:
        plan.notes.append(f"batch {plan.batch_size} x grad_accum {plan.grad_accum} x {gpus} GPU(s) = {made}, not the "
                          f"config's global batch {global_batch} ({plan.batch_size} does not divide {per_gpu})")


def batch_lines(plan) -> list[str]:
    """The plan's batch as text: batch x accumulation x GPUs = the global batch, and the overrides that
    train it (only the per-GPU batch when train.global_batch_size derives the accumulation)."""
    if not plan.batch_size or not plan.grad_accum:
        return []
    made = plan.batch_size * plan.grad_accum * plan.gpus
    derived = plan.global_batch_source == "train.global_batch_size"  # grad_accum follows the batch
    if plan.batch_size == plan.configured[0] and (derived or plan.grad_accum == plan.configured[1]):
        sets = "the config as it is"
    elif derived:
        sets = f"--set train.batch_size_per_gpu={plan.batch_size}"
    else:
        sets = f"--set train.batch_size_per_gpu={plan.batch_size} --set train.grad_accum={plan.grad_accum}"
    return [f"global batch {made} ({plan.global_batch_source}) = batch_size_per_gpu {plan.batch_size} x grad_accum "
            f"{plan.grad_accum} x {plan.gpus} GPU(s); largest batch that fits: {plan.largest_batch}",
            f"  to train it: {sets}"]
