"""Performance figures of a config: ``vqkit bench --config FILE [--json]``.

What it measures (each after warm-up, the median of repeated runs):

- DataLoader throughput (samples/s) of the training split with the config's workers, reading images
  and, when a feature cache is available, reading cached features;
- one training step (forward + backward + AdamW step) on a fixed batch, from images ("uncached")
  and from cached features ("cached"), and the same step broken down into encoder (frozen, under
  inference mode), projector (+ geometry tokens; forward and backward), LLM forward + backward and
  optimizer step;
- tokens/s through the LLM, peak memory (RSS of the process on CPU, max allocated on a GPU), the
  model FLOPs of a step (counted by ``torch.utils.flop_counter``) and, on a GPU, model FLOPs
  utilisation against the card's dense bf16 peak.

The cache: ``data.feature_cache`` when set, otherwise one is built for the training split in a
temporary folder (so the cached figures never depend on a stale cache). Missing data (the demo
reads ``data/synth``) is generated with :func:`vqkit.synth.benchmark.generate` into a temporary folder,
or taken from ``--data DIR``. The step is the trainer's own (:func:`vqkit.train.step.train_step`).

Timings on a shared machine are noisy: the table prints the spread (min-max) next to the median.
"""

from __future__ import annotations

import copy
import glob
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from vqkit.config.schema import Config
from vqkit.data.dataset import build_dataloader, build_dataset
from vqkit.models.builder import build_model
from vqkit.synth.benchmark import generate, use_synthetic_data
from vqkit.tokenizer import load_tokenizer
from vqkit.tools.cache_writer import build_feature_cache
from vqkit.train.optim import build_optimizer
from vqkit.train.step import train_step
from vqkit.utils.runtime import autocast as autocast_for
from vqkit.utils.runtime import move_to_device, set_seed

log = logging.getLogger("vqkit.tools.bench")

# Dense bf16 tensor-core peaks (FLOP/s) used for MFU; --peak-tflops overrides.
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12,
                 "L4": 121e12, "RTX 4090": 165e12, "V100": 125e12}


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in GPU_PEAK_BF16.items():
        if key in name:
            return value
    return None


def _missing(pattern: str) -> bool:
    return not glob.glob(pattern)


def ensure_data(cfg: Config, data_dir: str | None = None, scenes: int = 24) -> tuple[Config, str | None]:
    """A copy of ``cfg`` pointed at ``data_dir`` (a synthetic set) or, when the config's training data is
    missing, at a small synthetic set generated into a temporary folder. Returns (config, generated folder)."""
    cfg = copy.deepcopy(cfg)
    if data_dir is None and cfg.data.train and not any(_missing(s.path) for s in cfg.data.train):
        return cfg, None
    generated = None
    if data_dir is None:
        data_dir = generated = tempfile.mkdtemp(prefix="vqkit_bench_data_")
        log.warning("training data of the config is missing: generating %d synthetic scenes in %s", scenes, data_dir)
        generate(data_dir, scenes=scenes, views=max(1, cfg.data.num_views), image_size=cfg.data.image_size,
                 seed=cfg.train.seed, progress=False)
    use_synthetic_data(cfg, data_dir, tokenizer=False)
    return cfg, generated


def time_loader(loader, batches: int) -> dict[str, float]:
    """Samples/s of a DataLoader over ``batches`` batches after the first (worker start-up)."""
    it = iter(loader)
    t0 = time.perf_counter()
    first = next(it)
    startup = time.perf_counter() - t0
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            break
        n += int(b["view_mask"].shape[0])
    elapsed = time.perf_counter() - t0
    if n == 0:  # a single batch: count it with its start-up
        n, elapsed = int(first["view_mask"].shape[0]), startup
    return {"samples_per_s": n / max(elapsed, 1e-9), "startup_s": startup, "samples": n}


def full_step(model, optimizer, batch: dict, autocast) -> float:
    """One real training step as the trainer runs it (:func:`vqkit.train.step.train_step`); returns the loss."""
    return train_step(model, optimizer, [batch], autocast=autocast).loss


def timed_step(model, optimizer, batch: dict, autocast, device: torch.device) -> dict[str, float]:
    """The same step, split into encoder / projector (fwd + bwd) / LLM fwd + bwd / optimizer.

    The vision tokens are cut from the graph at the LLM input (a leaf that receives the LLM's
    gradient), so the projector's backward is timed on its own: the sum equals a full step up to
    the small cost of the cut.
    """
    t = {}
    _sync(device)
    t0 = time.perf_counter()
    if batch.get("features") is None:
        feats = model.encode_views(batch["images"], batch["view_mask"])
    else:
        feats = batch["features"]
    _sync(device)
    t1 = time.perf_counter()
    t["encoder"] = t1 - t0
    input_ids = batch["input_ids"]
    is_pad = input_ids == model.image_pad_id
    samples = [i for i, n in enumerate(is_pad.sum(dim=1).tolist()) if n > 0]
    with autocast:
        tokens = model.vision_tokens(dict(batch, features=feats), samples)
        embed = model.llm.get_input_embeddings()
        inputs_embeds = embed(input_ids)
        flat = torch.cat(tokens, dim=0).to(inputs_embeds.dtype)
        _sync(device)
        t2 = time.perf_counter()
        leaf = flat.detach().requires_grad_(True)
        inputs_embeds = inputs_embeds.masked_scatter(is_pad.unsqueeze(-1), leaf)
        out = model.llm(inputs_embeds=inputs_embeds, attention_mask=batch["attention_mask"],
                        labels=batch.get("labels"), use_cache=False)
    out.loss.backward()
    _sync(device)
    t3 = time.perf_counter()
    flat.backward(leaf.grad)
    _sync(device)
    t4 = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(device)
    t5 = time.perf_counter()
    t["projector"] = (t2 - t1) + (t4 - t3)
    t["llm_fwd_bwd"] = t3 - t2
    t["optimizer"] = t5 - t4
    t["total"] = t5 - t0
    return t


def count_flops(model, optimizer, batch: dict, autocast) -> int:
    """Model FLOPs of one full step (matmuls, convolutions, attention) by torch's flop counter.
    The step runs for real and updates the weights; callers restore them if that matters."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        full_step(model, optimizer, batch, autocast)
    return int(counter.get_total_flops())


def _median_spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def run_bench(cfg: Config, *, steps: int = 5, warmup: int = 2, data_batches: int = 8,
              batch_size: int | None = None, data_dir: str | None = None, device: str | None = None,
              cache_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Measure a config (module docstring); returns the figures as a dict (what ``--json`` prints)."""
    cfg, generated = ensure_data(cfg, data_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bs = batch_size or cfg.train.batch_size_per_gpu
    set_seed(cfg.train.seed)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    tmp = tempfile.TemporaryDirectory(prefix="vqkit_bench_")
    try:
        tokenizer = load_tokenizer(cfg.model.llm)
        say("bench: building the model")
        model = build_model(cfg, tokenizer=tokenizer, device=dev)
        model.train()
        optimizer = build_optimizer(model, cfg.train)
        autocast = autocast_for(dev, cfg.train.mixed_precision)

        # Data: images, then the cache.
        image_cfg = copy.deepcopy(cfg)
        image_cfg.data.feature_cache = None
        dataset = build_dataset(image_cfg.data, "train", geometry_cfg=cfg.model.geometry, seed=cfg.train.seed)
        if len(dataset) < bs:
            bs = len(dataset)
            log.warning("the training set has only %d samples: batch size lowered to %d", bs, bs)
        say(f"bench: DataLoader from images ({cfg.data.num_workers} workers, batch {bs})")
        loader = build_dataloader(image_cfg, "train", tokenizer, batch_size=bs, shuffle=True, drop_last=True)
        data_images = time_loader(loader, data_batches)
        image_batch = move_to_device(next(iter(loader)), dev)

        cache_used = cfg.data.feature_cache or cache_dir
        cache_t = None
        if not cache_used:
            say("bench: building a feature cache of the training split")
            t0 = time.perf_counter()
            cache_used = str(build_feature_cache(cfg, Path(tmp.name) / "features", ("train",), progress=False))
            cache_t = time.perf_counter() - t0
        elif cache_dir and not Path(cache_dir, "index.json").is_file():
            build_feature_cache(cfg, cache_dir, ("train",), progress=False)
        cached_cfg = copy.deepcopy(cfg)
        cached_cfg.data.feature_cache = str(cache_used)
        say("bench: DataLoader from cached features")
        cached_loader = build_dataloader(cached_cfg, "train", tokenizer, batch_size=bs, shuffle=True, drop_last=True)
        data_cached = time_loader(cached_loader, data_batches)
        cached_batch = move_to_device(next(iter(cached_loader)), dev)

        # Steps: warm up, then the median of `steps` full steps and of `steps` split steps.
        state = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        results = {}
        for name, batch in (("uncached", image_batch), ("cached", cached_batch)):
            say(f"bench: {name} training steps")
            results[name] = measure_steps(model, optimizer, batch, autocast, dev, steps=steps, warmup=warmup)
        model.load_trainable(state)
        peak_mem = (torch.cuda.max_memory_allocated(dev) / 2**20) if dev.type == "cuda" else peak_rss_mb()
        out = _figures(results, bs, dev, data_images, data_cached)
        out.update(num_workers=cfg.data.num_workers, peak_mem_mb=peak_mem, peak_rss_mb=peak_rss_mb(),
                   cache_build_s=cache_t, generated_data=generated)
        return out
    finally:
        tmp.cleanup()


def measure_steps(model, optimizer, batch: dict, autocast, device: torch.device, *, steps: int, warmup: int) -> dict:
    """Full steps (``warmup`` untimed, then ``steps`` timed), the same split into parts, and one step's
    FLOPs: ``{"step": (median, min, max), "parts": {part: median s}, "flops", "tokens"}``."""
    for _ in range(warmup):
        full_step(model, optimizer, batch, autocast)
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        full_step(model, optimizer, batch, autocast)
        _sync(device)
        times.append(time.perf_counter() - t0)
    parts = [timed_step(model, optimizer, batch, autocast, device) for _ in range(steps)]
    return {"step": _median_spread(times), "parts": {k: statistics.median(p[k] for p in parts) for k in parts[0]},
            "flops": count_flops(model, optimizer, batch, autocast), "tokens": int(batch["attention_mask"].sum())}


def _figures(results: dict, bs: int, dev: torch.device, data_images: dict, data_cached: dict) -> dict[str, Any]:
    """What ``--json`` prints, from the measured steps and loaders."""
    peak_flops = gpu_peak_flops(dev)
    unc, cac = results["uncached"], results["cached"]
    step_s, step_c = unc["step"][0], cac["step"][0]
    train_sps = bs / step_c
    return {
        "config": None, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
        f"cpu ({torch.get_num_threads()} threads)",
        "batch_size": bs,
        "data_samples_per_s": data_images["samples_per_s"],
        "data_samples_per_s_cached": data_cached["samples_per_s"],
        "step_s": step_s, "step_s_cached": step_c,
        "step_s_spread": list(unc["step"][1:]), "step_s_cached_spread": list(cac["step"][1:]),
        "cache_speedup": step_s / step_c,
        "train_samples_per_s": train_sps, "train_samples_per_s_uncached": bs / step_s,
        "data_to_step_ratio": data_cached["samples_per_s"] / train_sps,
        "data_to_step_ratio_uncached": data_images["samples_per_s"] / (bs / step_s),
        "breakdown_s": unc["parts"], "breakdown_s_cached": cac["parts"],
        "tokens_per_s": cac["tokens"] / step_c, "tokens_per_s_uncached": unc["tokens"] / step_s,
        "flops_per_step": unc["flops"], "flops_per_step_cached": cac["flops"],
        "achieved_tflops": unc["flops"] / step_s / 1e12, "achieved_tflops_cached": cac["flops"] / step_c / 1e12,
        "mfu": (unc["flops"] / step_s / peak_flops) if peak_flops else None,
        "mfu_cached": (cac["flops"] / step_c / peak_flops) if peak_flops else None,
    }


def format_table(r: dict[str, Any]) -> str:
    """The figures as an aligned text table."""
    ms = lambda s: f"{1000 * s:9.1f} ms"  # noqa: E731
    b, c = r["breakdown_s"], r["breakdown_s_cached"]
    lines = [f"vqkit bench on {r['device']}, batch {r['batch_size']}, {r['num_workers']} DataLoader workers",
             "",
             f"{'':28}{'from images':>16}{'cached features':>18}",
             f"{'DataLoader samples/s':28}{r['data_samples_per_s']:16.1f}{r['data_samples_per_s_cached']:18.1f}",
             f"{'training step':28}{ms(r['step_s']):>16}{ms(r['step_s_cached']):>18}",
             f"{'  (min-max)':28}{'-'.join(f'{1000 * x:.0f}' for x in r['step_s_spread']) + ' ms':>16}"
             f"{'-'.join(f'{1000 * x:.0f}' for x in r['step_s_cached_spread']) + ' ms':>18}"]
    for key, label in (("encoder", "  encoder (frozen)"), ("projector", "  projector fwd+bwd"),
                       ("llm_fwd_bwd", "  LLM fwd+bwd"), ("optimizer", "  optimizer"), ("total", "  sum of parts")):
        lines.append(f"{label:28}{ms(b[key]):>16}{ms(c[key]):>18}")
    lines += [f"{'train samples/s':28}{r['train_samples_per_s_uncached']:16.1f}{r['train_samples_per_s']:18.1f}",
              f"{'data / step throughput':28}{r['data_to_step_ratio_uncached']:15.1f}x{r['data_to_step_ratio']:17.1f}x",
              f"{'LLM tokens/s':28}{r['tokens_per_s_uncached']:16.0f}{r['tokens_per_s']:18.0f}",
              f"{'model GFLOP per step':28}{r['flops_per_step'] / 1e9:16.1f}{r['flops_per_step_cached'] / 1e9:18.1f}",
              f"{'achieved TFLOP/s':28}{r['achieved_tflops']:16.3f}{r['achieved_tflops_cached']:18.3f}"]
    if r["mfu"] is not None:
        lines.append(f"{'MFU (bf16 dense peak)':28}{100 * r['mfu']:15.1f}%{100 * r['mfu_cached']:17.1f}%")
    lines += ["", f"cached step is {r['cache_speedup']:.2f}x faster; peak memory {r['peak_mem_mb']:.0f} MB "
                  f"({'max allocated on the GPU' if r['mfu'] is not None or 'cpu' not in r['device'] else 'peak RSS'})"]
    return "\n".join(lines)
