"""``vqkit plan --probe``: a memory plan (:mod:`vqkit.tools.plan`) checked with real training steps.

On a GPU, steps at batch 1, 2, 4, ... until one no longer fits (max allocated memory per size, one
model for all); on the CPU, one step at the configured batch in a fresh process (``vqkit plan
--measure``, so the peak RSS is that step's alone). Each is compared with the plan at the sequence
length and labelled positions the step measured.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from typing import Any

import torch

from vqkit.config.schema import Config
from vqkit.data.collate import Collator
from vqkit.data.dataset import build_dataset
from vqkit.data.feature_cache import attach_feature_cache
from vqkit.errors import ConfigError
from vqkit.models.builder import build_model
from vqkit.tokenizer import load_tokenizer
from vqkit.tools.bench import ensure_data, peak_rss_mb
from vqkit.tools.memory_accounting import current_rss
from vqkit.tools.plan import MB, MemoryPlan, make_plan
from vqkit.train.optim import build_optimizer
from vqkit.train.step import train_step
from vqkit.utils.runtime import autocast, move_to_device, set_seed


def step_setup(cfg: Config, device: str) -> dict[str, Any]:
    """What real probe steps need, built once: the model, its optimizer, the training set and the
    collator (a generated synthetic set when the config's data is missing)."""
    cfg, _ = ensure_data(cfg)
    set_seed(cfg.train.seed)
    dev = torch.device(device)
    tokenizer = load_tokenizer(cfg.model.llm)
    dataset = build_dataset(cfg.data, "train", geometry_cfg=cfg.model.geometry, seed=cfg.train.seed)
    if cfg.data.feature_cache:
        attach_feature_cache(dataset, cfg)
    model = build_model(cfg, tokenizer=tokenizer, device=dev)
    model.train()
    collator = Collator(tokenizer, cfg.model, cfg.data, mode="train", pack=cfg.data.packing)
    return {"device": dev, "dataset": dataset, "collator": collator,
            "model": model, "optimizer": build_optimizer(model, cfg.train, device=dev),
            "autocast": autocast(dev, cfg.train.mixed_precision)}


def measure_step(setup: dict[str, Any], batch_size: int, steps: int = 2) -> dict[str, Any]:
    """Run ``steps`` real training steps at ``batch_size`` (samples repeat when the set is smaller);
    returns peak memory (max allocated on a GPU, peak RSS on the CPU) and the padded sequence length (packed:
    a sample's mean tokens, with logits at its mean label tokens, as the plan counts a packed row)."""
    dev, dataset = setup["device"], setup["dataset"]
    batch = setup["collator"]([dataset[i % len(dataset)] for i in range(batch_size)])
    batch = move_to_device(batch, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    before = current_rss()
    for _ in range(steps):
        t0 = time.perf_counter()
        train_step(setup["model"], setup["optimizer"], [batch], autocast=setup["autocast"])
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        step_s = time.perf_counter() - t0  # the last step's: the first ones warm up
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else peak_rss_mb() * MB
    labelled = (batch["labels"][:, 1:] != -100).any(dim=0)  # the positions VQModel.forward computes logits at
    seq_len, answer = int(batch["input_ids"].shape[1]), int(labelled.sum())
    if "cu_seqlens" in batch:
        seq_len, answer = round(seq_len / batch_size), max(1, round(answer / batch_size))
    return {"batch_size": batch_size, "peak_mb": peak / MB, "seq_len": seq_len,
            "answer_tokens": answer, "rss_before_step_mb": before / MB, "step_s": step_s,
            "samples_per_s": batch_size / step_s}


def probe_cpu(config_path: str, overrides: list[str], batch_size: int, data_dir: str | None = None) -> dict[str, Any]:
    """One real step in a fresh process (so its peak RSS is this step's alone)."""
    cmd = [sys.executable, "-m", "vqkit", "plan", "--config", config_path, "--measure", str(batch_size),
           "--device", "cpu"]
    for o in overrides:
        cmd += ["--set", o]
    if data_dir:
        cmd += ["--data", data_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode
        raise ConfigError(f"probe step failed: {reason}")
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


def probe_plan(cfg: Config, plan: MemoryPlan, *, config_path: str, overrides: list[str], plan_args: dict,
               batch_size: int | None = None, data_dir: str | None = None,
               max_batch: int = 4096) -> tuple[list[dict[str, Any]], str]:
    """Check ``plan`` (made from ``cfg``, loaded from ``config_path`` with ``overrides``, by
    ``make_plan(cfg, **plan_args)``) with real steps that use the plan's gradient checkpointing.
    Returns the probe's rows (``vqkit plan --json``'s ``probe``) and their text for the report."""
    cfg = copy.deepcopy(cfg)
    cfg.model.llm.gradient_checkpointing = plan.gradient_checkpointing  # the real steps run the plan's choice
    if plan_args.get("device", "cuda") == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--probe on the GPU needs CUDA; use --device cpu --probe on this machine")
        rows = probe_gpu(cfg, plan_args, max_batch)
        return rows, format_gpu_probe(rows)
    bs = batch_size or cfg.train.batch_size_per_gpu
    checkpointing = str(plan.gradient_checkpointing).lower()
    m = probe_cpu(config_path, [*overrides, f"model.llm.gradient_checkpointing={checkpointing}"], bs, data_dir)
    pred = make_plan(cfg, **plan_args, seq_len=m["seq_len"], batch_size=bs, answer_tokens=m["answer_tokens"])
    m["predicted_mb"] = pred.total(bs) / MB
    m["error"] = m["predicted_mb"] / m["peak_mb"] - 1
    return [m], format_cpu_probe(m)


def format_gpu_probe(rows: list[dict[str, Any]]) -> str:
    """The GPU probe's rows as the lines ``vqkit plan --probe`` adds to the plan."""
    lines = []
    for r in rows:
        if r["fits"]:
            error = 100 * (r["predicted_mb"] / r["peak_mb"] - 1)
            lines.append(f"  batch {r['batch_size']:5d}: peak {r['peak_mb']:9.0f} MB, plan {r['predicted_mb']:9.0f} MB "
                         f"({error:+.0f}%), {r['step_s']:.2f} s/step, {r['samples_per_s']:.1f} samples/s")
        else:
            lines.append(f"  batch {r['batch_size']:5d}: out of memory")
    fits = [r["batch_size"] for r in rows if r["fits"]]
    return ("\n\nprobe (real steps):\n" + "\n".join(lines)
            + f"\nlargest batch that ran: {max(fits) if fits else 0}")


def format_cpu_probe(m: dict[str, Any]) -> str:
    """The CPU probe's one step as the line ``vqkit plan --probe`` adds to the plan."""
    return (f"\n\nprobe: one real step at batch {m['batch_size']} (sequence {m['seq_len']}): "
            f"peak RSS {m['peak_mb']:.0f} MB, plan {m['predicted_mb']:.0f} MB ({100 * m['error']:+.1f}%)")


__all__ = ["format_cpu_probe", "format_gpu_probe", "measure_step", "probe_cpu", "probe_gpu", "probe_plan",
           "step_setup"]
