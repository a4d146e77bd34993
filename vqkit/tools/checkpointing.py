"""``llm.gradient_checkpointing: auto`` resolved by the memory plan (:mod:`vqkit.tools.plan`).

Checkpointing saves the LLM's activations at the cost of one more forward of its layers per step (a
third more LLM compute): worth it only when the batch would not fit otherwise. The plan counts both
and decides; ``vqkit plan`` prints the decision, and ``vqkit train`` and ``vqkit bench`` resolve an
``auto`` with :func:`resolve_gradient_checkpointing` before building the model, for the GPU they run on.
"""

from __future__ import annotations

import copy
import os

import torch

from vqkit.config.schema import Config
from vqkit.tools.plan import GB, make_plan
from vqkit.tools.plan_batch import zero_stage
from vqkit.utils.runtime import resolve_device


def resolve_gradient_checkpointing(cfg: Config, *, gpus: int | None = None, zero: int | None = None,
                                   gpu_mem_gb: float | None = None, batch_size: int | None = None,
                                   device: str | None = None) -> tuple[Config, str]:
    """``cfg`` with ``llm.gradient_checkpointing: auto`` replaced by the plan's decision for this machine
    (``vqkit.tools.plan._decide_checkpointing``), and why. GPUs default to ``WORLD_SIZE``, ZeRO to the stage of
    ``train.deepspeed``, the memory to this process's GPU's; without CUDA, or for a run on the CPU
    (``device="cpu"``), it is off (checkpointing trades compute for GPU memory). Other settings come back
    unchanged ("the config")."""
    if cfg.model.llm.gradient_checkpointing != "auto":
        return cfg, "the config"
    cfg = copy.deepcopy(cfg)
    if device == "cpu" or not torch.cuda.is_available():
        cfg.model.llm.gradient_checkpointing = False
        return cfg, "auto: off without a GPU"
    if zero is None:
        zero = zero_stage(cfg.train.deepspeed)
    if gpu_mem_gb is None:
        gpu_mem_gb = torch.cuda.get_device_properties(resolve_device()).total_memory / GB
    plan = make_plan(cfg, gpus=gpus or int(os.environ.get("WORLD_SIZE", "1")), zero=zero, gpu_mem_gb=gpu_mem_gb,
                     batch_size=batch_size)
    cfg.model.llm.gradient_checkpointing = plan.gradient_checkpointing
    return cfg, plan.checkpointing_decided_by
