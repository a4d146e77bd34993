"""The distributed side of training: an ``accelerate.Accelerator`` (DDP or DeepSpeed ZeRO-2/3) for a
config, the DeepSpeed JSON with its ``"auto"`` values filled from the vqkit config, and the trainable
weights gathered from whatever partitioning is in use.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import torch

from vqkit.config.schema import Config
from vqkit.errors import ConfigError
from vqkit.utils.distributed import backend, world_size_from_env
from vqkit.utils.runtime import resolve_mixed_precision


def llm_hidden_size(cfg: Config) -> int:
    """The LLM's hidden size from its own config (the overrides, a local folder, a hub id in the local
    cache, or a known architecture offline): what DeepSpeed's bucket sizes scale with."""
    from vqkit.models.llm import llm_config

    return int(llm_config(cfg.model.llm, allow_known=True).hidden_size)


def fill_deepspeed_config(path: str | Path, cfg: Config, world_size: int) -> dict:
    """Read a DeepSpeed JSON and replace every "auto" with the value from the vqkit config,
    so batch size, accumulation, clipping and precision are defined in one place. ZeRO's bucket
    sizes follow the LLM's hidden size H (H^2 per bucket, 0.9 H^2 prefetch, 10 H persistence), as
    the transformers integration sets them."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"train.deepspeed: {path} not found (see configs/deepspeed/)")
    try:
        ds = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e
    t = cfg.train
    precision = resolve_mixed_precision(t.mixed_precision)
    values = {
        "train_micro_batch_size_per_gpu": t.batch_size_per_gpu,
        "gradient_accumulation_steps": t.accumulation(world_size),
        "train_batch_size": t.global_batch(world_size),
        "gradient_clipping": t.max_grad_norm if t.max_grad_norm > 0 else 0.0,
    }
    for key, value in values.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    for key, on in (("bf16", precision == "bf16"), ("fp16", precision == "fp16")):
        section = ds.setdefault(key, {})
        if section.get("enabled", "auto") == "auto":
            section["enabled"] = on
    zero = ds.get("zero_optimization", {})
    auto_keys = ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold")
    if any(zero.get(key) == "auto" for key in auto_keys):
        hidden = llm_hidden_size(cfg)
        auto_zero = {"reduce_bucket_size": hidden * hidden,
                     "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
                     "stage3_param_persistence_threshold": 10 * hidden}
        for key, value in auto_zero.items():
            if zero.get(key) == "auto":
                zero[key] = value
    leftover = [k for k, v in _walk(ds) if v == "auto"]
    if leftover:
        raise ConfigError(f"{path}: no vqkit value for 'auto' at {', '.join(leftover)}")
    return ds


def _walk(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


def make_accelerator(cfg: Config):
    """An accelerate.Accelerator for this config: DDP or DeepSpeed, gloo when there is no GPU."""
    if not torch.cuda.is_available():
        # accelerate imports DeepSpeed whenever it is installed. Told that this run computes on the CPU
        # (what vqkit decided: no CUDA), DeepSpeed skips its device probe and its "Setting accelerator
        # to CPU" warning; a DS_ACCELERATOR the user set is kept.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from accelerate import Accelerator, DeepSpeedPlugin
    from accelerate.utils import InitProcessGroupKwargs

    world_size = world_size_from_env()
    handlers = []
    if world_size > 1:
        # Without a GPU, NCCL is unavailable: gloo lets 2-process DDP / ZeRO-3 runs work on CPU.
        timeout = timedelta(minutes=int(os.environ.get("VQKIT_DIST_TIMEOUT_MIN", "30")))
        handlers.append(InitProcessGroupKwargs(backend=backend(), timeout=timeout))
    plugin = None
    if cfg.train.deepspeed:
        plugin = DeepSpeedPlugin(hf_ds_config=fill_deepspeed_config(cfg.train.deepspeed, cfg, world_size))
    # Without cpu=True accelerate treats a multi-process CPU job as single-process (barriers become
    # no-ops); DeepSpeed brings its own CPU accelerator.
    return Accelerator(cpu=not torch.cuda.is_available() and plugin is None,
                       gradient_accumulation_steps=cfg.train.accumulation(world_size),
                       mixed_precision=resolve_mixed_precision(cfg.train.mixed_precision),
                       deepspeed_plugin=plugin, kwargs_handlers=handlers)


def uses_deepspeed(accelerator) -> bool:
    return getattr(accelerator.state, "deepspeed_plugin", None) is not None


def describe(accelerator, cfg: Config) -> str:
    """'N process(es) on DEVICE [with DeepSpeed ZeRO-k] | global batch G = B x A x N | mixed precision P'
    for the run's first line."""
    zero = (f" with DeepSpeed ZeRO-{accelerator.state.deepspeed_plugin.zero_stage}"
            if uses_deepspeed(accelerator) else "")
    n, t = accelerator.num_processes, cfg.train
    return (f"{n} process(es) on {accelerator.device}{zero}"
            f" | global batch {t.global_batch(n)} = {t.batch_size_per_gpu} x grad_accum {t.accumulation(n)} x {n}"
            f" | mixed precision {resolve_mixed_precision(cfg.train.mixed_precision)}")


def gather_trainable(accelerator, core) -> dict[str, torch.Tensor] | None:
    """The trainable weights as one CPU state dict; under ZeRO-3 only rank 0 gets it (others None).

    ZeRO-3 leaves each rank a partition of every parameter, so the trainable ones are gathered
    first: a collective, every rank must call this. Only the trainable parameters are gathered,
    never the frozen LLM and encoder (``accelerator.get_state_dict`` would gather the whole model
    onto rank 0 for every checkpoint).
    """
    if uses_deepspeed(accelerator) and accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        named = [(n, p) for n, p in core.named_parameters() if p.requires_grad]
        with deepspeed.zero.GatheredParameters([p for _, p in named]):
            if accelerator.is_main_process:
                return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in named}
        return None
    return core.trainable_state_dict()
