"""Performance figures of a config: ``vqkit bench --config FILE [--json]``.

What it measures (each after warm-up, the median of repeated runs):

- DataLoader throughput (samples/s) of the training split with the config's workers, reading images
  and, when a feature cache is available, reading cached features;
- one training step (forward + backward + AdamW step) on a fixed batch, from images ("uncached")
  and from cached features ("cached"): wall time and the process's CPU time, and the same step broken
  down into encoder (frozen, inference mode), projector (+ geometry tokens; forward and backward),
  LLM forward + backward and optimizer step;
- FLOPs per part, counted on one real step (:mod:`vqkit.tools.flops`): **model FLOPs** (what the model
  needs, no recomputation) and **hardware FLOPs** (as run: gradient checkpointing's recomputed forward
  and fused attention's recomputed scores included), each as utilisation of the card's dense bf16 peak
  (MFU and the hardware utilisation); which attention kernel each part ran; the padding share of the
  batch (padding tokens / all tokens);
- packing: the same step on the same samples unpadded and packed (``data.packing``: one row, attention per
  sample), from images and from cached features: padding share, label tokens/s (the answer tokens the
  loss is taken over, per second of the step) and the per-part breakdown of each, whichever the config
  trains with (the figures above are the config's own);
- the frozen aggregator's forward for 8 frames of 518 x 518 at batch 1 (VGGT's published speed is
  0.11 s on an H100): bf16 on a GPU; on the CPU in fp32 with the config's (small) aggregator;
- tokens/s through the LLM, peak memory (RSS of the process on CPU, max allocated on a GPU).

The cache: ``--cache DIR`` (``cache_dir``; built when missing) when given, in place of the config's own
``data.feature_cache``, which is then neither read nor checked; else ``data.feature_cache`` when set;
otherwise one is built for the training split in a temporary folder (so the cached figures never depend
on a stale cache). Missing data (the demo
reads ``data/synth``) is generated with :func:`vqkit.synth.benchmark.generate` into a temporary folder,
or taken from ``--data DIR``. The step's samples are the training loader's first batch (with
``train.tokens_per_batch``, its first batch measured in tokens). The step is the trainer's own
(:func:`vqkit.train.step.train_step`); a ``gradient_checkpointing: auto`` is resolved by ``vqkit bench``
with the memory plan before this runs.

Timings on a shared machine are noisy: the table prints the spread (min-max) next to the median, and
the CPU time, which contention disturbs far less.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import itertools
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
from vqkit.data.collate import Collator
from vqkit.data.dataset import build_dataloader, build_dataset
from vqkit.data.packing import count_per_sample
from vqkit.models.answer_loss import answer_loss
from vqkit.models.builder import build_encoder, build_model
from vqkit.models.llm_attention import llm_attention_inputs
from vqkit.synth.benchmark import generate, use_synthetic_data
from vqkit.tokenizer import load_tokenizer
from vqkit.tools.bench_report import format_table  # noqa: F401 - vqkit.tools.bench.format_table
from vqkit.tools.cache_writer import build_feature_cache
from vqkit.tools.flops import FlopLedger, card_peak
from vqkit.train.optim import build_optimizer, optimizer_kind
from vqkit.train.step import label_tokens, train_step
from vqkit.utils.runtime import autocast as autocast_for
from vqkit.utils.runtime import move_to_device, set_seed

log = logging.getLogger("vqkit.tools.bench")

PARTS = ("encoder", "projector", "llm", "optimizer")


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


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


def split_step(model, optimizer, batch: dict, autocast, phase) -> None:
    """The same step in parts, each run under ``phase(part)`` (a timer or a FLOP ledger): encoder,
    projector (+ geometry; its forward, and its backward after the LLM's), LLM forward + backward
    (:func:`vqkit.models.answer_loss.answer_loss`, as ``VQModel.forward``), optimizer.

    The vision tokens are cut from the graph at the LLM input (a leaf that receives the LLM's
    gradient), so the projector's backward runs on its own: the parts add up to a full step up to
    the small cost of the cut.
    """
    with phase("encoder"):
        feats = batch["features"] if batch.get("features") is not None else \
            model.encode_views(batch["images"], batch["view_mask"])
    input_ids = batch["input_ids"]
    is_pad = input_ids == model.image_pad_id
    samples = [i for i, n in enumerate(count_per_sample(batch, is_pad)) if n > 0]
    with phase("projector"), autocast:
        tokens = model.vision_tokens(dict(batch, features=feats), samples)
        inputs_embeds = model.llm.get_input_embeddings()(input_ids)
        flat = torch.cat(tokens, dim=0).to(inputs_embeds.dtype)
    leaf = flat.detach().requires_grad_(True)
    with phase("llm"):
        with autocast:
            mask, llm_kwargs = llm_attention_inputs(model.llm, batch, inputs_embeds.dtype)  # turns, packed rows
            out = answer_loss(model.llm, inputs_embeds.masked_scatter(is_pad.unsqueeze(-1), leaf), mask,
                              batch["labels"], fused=model.config.model.llm.liger_kernels, **llm_kwargs)
        out.loss.backward()
    with phase("projector"):
        flat.backward(leaf.grad)
    with phase("optimizer"):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def timed_step(model, optimizer, batch: dict, autocast, device: torch.device) -> dict[str, float]:
    """:func:`split_step` timed: seconds per part (``llm_fwd_bwd`` for the LLM) and their ``total``."""
    t = dict.fromkeys(PARTS, 0.0)

    @contextlib.contextmanager
    def timer(part: str):
        _sync(device)
        t0 = time.perf_counter()
        yield
        _sync(device)
        t[part] += time.perf_counter() - t0

    split_step(model, optimizer, batch, autocast, timer)
    t["llm_fwd_bwd"] = t.pop("llm")
    t["total"] = sum(t.values())
    return t


def count_flops(model, optimizer, batch: dict, autocast) -> dict[str, FlopLedger]:
    """One real :func:`split_step` under a :class:`~vqkit.tools.flops.FlopLedger` per part. The step
    updates the weights; callers restore them if that matters."""
    ledgers = {part: FlopLedger() for part in PARTS}
    split_step(model, optimizer, batch, autocast, lambda part: ledgers[part])
    return ledgers


def _median_spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def measure_steps(model, optimizer, batch: dict, autocast, device: torch.device, *, steps: int, warmup: int) -> dict:
    """Full steps (``warmup`` untimed, then ``steps`` timed: wall and process CPU time), the same split
    into parts, and one step's FLOPs per part: ``{"step": (median, min, max), "cpu": median s, "parts":
    {part: median s}, "ledgers": {part: FlopLedger}, "tokens", "padding_share", "seq_len", "answer_positions"}``
    (the padded length, and the positions that get logits: what ``vqkit plan`` needs to plan this batch)."""
    for _ in range(warmup):
        full_step(model, optimizer, batch, autocast)
    times, cpu = [], []
    for _ in range(steps):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        full_step(model, optimizer, batch, autocast)
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    parts = [timed_step(model, optimizer, batch, autocast, device) for _ in range(steps)]
    mask = batch["attention_mask"]
    return {"step": _median_spread(times), "cpu": statistics.median(cpu),
            "parts": {k: statistics.median(p[k] for p in parts) for k in parts[0]},
            "ledgers": count_flops(model, optimizer, batch, autocast), "tokens": int(mask.sum()),
            "label_tokens": label_tokens(batch), "samples": int(batch["view_mask"].shape[0]),
            "padding_share": 1.0 - float(mask.sum()) / mask.numel(), "seq_len": int(mask.shape[1]),
            "answer_positions": int((batch["labels"][:, 1:] != -100).any(dim=0).sum())}


def time_encoder(encoder, layers: list[int], device: torch.device, *, frames: int = 8, size: int = 518,
                 repeats: int = 5, warmup: int = 2, compiled: bool = False) -> dict[str, Any]:
    """The frozen aggregator's forward for ``frames`` views of ``size`` x ``size`` at batch 1, every view
    real (so no attention mask), as ``VQModel.encode_views`` runs it: inference mode, bf16 autocast on
    a GPU (``compiled``: its blocks were compiled, for the description). Median seconds, spread, the FLOPs
    of one forward and the attention kernel it ran."""
    images = torch.rand(1, frames, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    low = device.type == "cuda" or encoder.matmul_dtype == torch.bfloat16

    def forward():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=low):
            return encoder.encode(images, layers=layers)

    for _ in range(warmup):
        forward()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        forward()
        _sync(device)
        times.append(time.perf_counter() - t0)
    ledger = FlopLedger()
    with ledger:
        forward()
    median, lo, hi = _median_spread(times)
    setup = (f"{'bf16 (matmul weights stored in bf16, autocast)' if low else 'fp32'} on {device_name(device)}, "
             f"batch 1, aggregator {encoder.embed_dim} wide x {encoder.depth} layers"
             f"{', compiled' if compiled else ''}")
    return {"s": median, "spread": [lo, hi], "s_per_frame": median / frames, "frames": frames, "size": size,
            "setup": setup, "flops": ledger.hardware, "attention": ledger.attention}


def run_encoder_bench(cfg: Config, device: str | None = None, *, repeats: int = 5, warmup: int = 2,
                      peak_tflops: float | None = None) -> dict[str, Any]:
    """Only the aggregator's 8 x 518 forward (``vqkit bench --encoder-only``): builds the encoder alone."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder = build_encoder(cfg.model.encoder, device=dev)
    enc = time_encoder(encoder, list(cfg.model.encoder.layers), dev, repeats=repeats, warmup=warmup,
                       compiled=cfg.model.encoder.compile)
    peak, source = card_peak(device_name(dev), peak_tflops) if dev.type == "cuda" or peak_tflops else (None, "")
    return {"config": None, "device": device_name(dev), "peak_flops": peak, "peak_source": source,
            "encoder_s_per_8_frames_518": enc["s"], "encoder_8x518": enc,
            "encoder_utilisation_8x518": enc["flops"] / enc["s"] / peak if peak else None}


def run_bench(cfg: Config, *, steps: int = 5, warmup: int = 2, data_batches: int = 8,
              batch_size: int | None = None, data_dir: str | None = None, device: str | None = None,
              cache_dir: str | None = None, progress: bool = True, peak_tflops: float | None = None,
              encoder_repeats: int = 5) -> dict[str, Any]:
    """Measure a config (module docstring); returns the figures as a dict (what ``--json`` prints).
    ``peak_tflops``: the dense bf16 peak for utilisation (default: the card's, from a table; none on the CPU)."""
    cfg, generated = ensure_data(cfg, data_dir)
    if cache_dir:  # the cache asked for replaces the config's own, which is then neither read nor checked
        cfg = copy.deepcopy(cfg)
        cfg.data.feature_cache = str(cache_dir)
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
        optimizer = build_optimizer(model, cfg.train, device=dev)
        autocast = autocast_for(dev, cfg.train.mixed_precision)
        data, batches, bs = _data(cfg, tokenizer, bs, data_batches, dev, cache_dir, Path(tmp.name), say)

        # Steps: warm up, then the median of `steps` full steps and of `steps` split steps.
        state = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        results = {}
        for (name, packed), batch in batches.items():
            say(f"bench: {name} training steps{', packed' if packed else ''}")
            results[name, packed] = measure_steps(model, optimizer, batch, autocast, dev, steps=steps,
                                                  warmup=warmup)
            model.load_trainable(state)  # every variant steps from the same weights
        model.load_trainable(state)
        peak_mem = (torch.cuda.max_memory_allocated(dev) / 2**20) if dev.type == "cuda" else peak_rss_mb()
        say("bench: the aggregator on 8 frames of 518 px")
        encoder = time_encoder(model.encoder, list(cfg.model.encoder.layers), dev, repeats=encoder_repeats,
                               compiled=cfg.model.encoder.compile)
        peak, source = card_peak(device_name(dev), peak_tflops) if dev.type == "cuda" or peak_tflops else \
            (None, "no peak on the CPU (--peak-tflops sets one)")
        packing = cfg.data.packing
        out = _figures({name: results[name, packing] for name in ("uncached", "cached")}, bs, dev, data, peak)
        out.update(packing=packing_figures(results), data_packing=packing,
                   tokens_per_batch=cfg.train.tokens_per_batch)
        out.update(peak_flops=peak, peak_source=source, num_workers=cfg.data.num_workers, peak_mem_mb=peak_mem,
                   peak_rss_mb=peak_rss_mb(), generated_data=generated,
                   encoder_s_per_8_frames_518=encoder["s"], encoder_8x518=encoder,
                   gradient_checkpointing=bool(cfg.model.llm.gradient_checkpointing),
                   liger_kernels=cfg.model.llm.liger_kernels, optimizer=f"AdamW ({optimizer_kind(optimizer)})",
                   encoder_matmul_dtype=str(model.encoder.matmul_dtype).replace("torch.", ""),
                   encoder_compiled=cfg.model.encoder.compile)
        return out
    finally:
        tmp.cleanup()


def _data(cfg: Config, tokenizer, bs: int, data_batches: int, dev: torch.device, cache_dir: str | None,
          tmp: Path, say) -> tuple[dict, dict, int]:
    """DataLoader figures from images and from the cache (built when needed); the step's batches: the
    training loader's first batch from images and from the cache, each unpadded and packed, on ``dev``
    (keyed ``(source, packed)``); and the batch size (lowered to the training set's size)."""
    image_cfg = copy.deepcopy(cfg)
    image_cfg.data.feature_cache = None
    dataset = build_dataset(image_cfg.data, "train", geometry_cfg=cfg.model.geometry, seed=cfg.train.seed)
    if len(dataset) < bs:
        bs = len(dataset)
        log.warning("the training set has only %d samples: batch size lowered to %d", bs, bs)
    say(f"bench: DataLoader from images ({cfg.data.num_workers} workers, batch {bs})")
    loader = _train_loader(image_cfg, tokenizer, bs, dataset)
    data = {"images": time_loader(loader, data_batches)}
    batches = _step_batches(cfg, tokenizer, loader, bs, dev, "uncached")

    cache_used = cache_dir or cfg.data.feature_cache  # --cache first: the config's is not looked at
    data["cache_build_s"] = None
    if not cache_used:
        say("bench: building a feature cache of the training split")
        t0 = time.perf_counter()
        cache_used = str(build_feature_cache(cfg, tmp / "features", ("train",), progress=False))
        data["cache_build_s"] = time.perf_counter() - t0
    elif cache_dir and not Path(cache_dir, "index.json").is_file():
        say(f"bench: building the feature cache {cache_dir} of the training split")
        build_feature_cache(cfg, cache_dir, ("train",), progress=False)
    cached_cfg = copy.deepcopy(cfg)
    cached_cfg.data.feature_cache = str(cache_used)
    say("bench: DataLoader from cached features")
    cached_loader = _train_loader(cached_cfg, tokenizer, bs)
    data["cached"] = time_loader(cached_loader, data_batches)
    batches.update(_step_batches(cfg, tokenizer, cached_loader, bs, dev, "cached"))
    return data, batches, bs


def _train_loader(cfg: Config, tokenizer, bs: int, dataset=None):
    """The training loader as ``vqkit train`` builds it (packing, batches measured in tokens)."""
    return build_dataloader(cfg, "train", tokenizer, batch_size=bs, shuffle=True, drop_last=True, dataset=dataset,
                            pack=cfg.data.packing, tokens_per_batch=cfg.train.tokens_per_batch)


def _step_batches(cfg: Config, tokenizer, loader, bs: int, dev: torch.device, name: str) -> dict:
    """The loader's first batch of samples collated unpadded and packed: ``{(name, packed): batch}``."""
    if loader.batch_sampler is not None and cfg.train.tokens_per_batch:
        items = next(iter(loader.batch_sampler))
    else:
        items = list(itertools.islice(iter(loader.sampler), bs))
    samples = [loader.dataset[item] for item in items]
    return {(name, packed): move_to_device(Collator(tokenizer, cfg.model, cfg.data, pack=packed)(samples), dev)
            for packed in (False, True)}


def packing_figures(results: dict) -> dict[str, Any]:
    """The same samples unpadded and packed, from images and cached: per variant the step (median s), the
    per-part breakdown, label tokens and their rate, padding share; and packed over unpadded."""
    out: dict[str, Any] = {}
    for (name, packed), r in results.items():
        out[f"{name}_{'packed' if packed else 'unpacked'}"] = {
            "step_s": r["step"][0], "step_s_spread": list(r["step"][1:]), "cpu_s": r["cpu"],
            "breakdown_s": r["parts"], "samples": r["samples"], "label_tokens": r["label_tokens"],
            "label_tokens_per_s": r["label_tokens"] / r["step"][0], "tokens": r["tokens"],
            "padding_share": r["padding_share"], "seq_len": r["seq_len"]}
    for name in ("uncached", "cached"):
        out[f"{name}_speedup"] = (out[f"{name}_packed"]["label_tokens_per_s"]
                                  / out[f"{name}_unpacked"]["label_tokens_per_s"])
    return out


def _flops(result: dict, step_s: float, peak: float | None) -> dict[str, Any]:
    """Per part {model, hardware} FLOPs and utilisation (of the part's own time), the step's totals and MFU."""
    ledgers, parts_s = result["ledgers"], result["parts"]
    by_part = {}
    for part, ledger in ledgers.items():
        if part == "optimizer":
            continue
        seconds = parts_s["llm_fwd_bwd" if part == "llm" else part]
        by_part[part] = {"model": ledger.model, "hardware": ledger.hardware, "seconds": seconds,
                         "model_utilisation": ledger.model / seconds / peak if peak and seconds > 0 else None,
                         "hardware_utilisation": ledger.hardware / seconds / peak if peak and seconds > 0 else None}
    model = sum(p["model"] for p in by_part.values())
    hardware = sum(p["hardware"] for p in by_part.values())
    return {"by_part": by_part, "model": model, "hardware": hardware,
            "mfu_model": model / step_s / peak if peak else None,
            "mfu_hardware": hardware / step_s / peak if peak else None,
            "attention": {part: ledger.attention for part, ledger in ledgers.items() if ledger.attention}}


def _figures(results: dict, bs: int, dev: torch.device, data: dict, peak: float | None) -> dict[str, Any]:
    """What ``--json`` prints, from the measured steps and loaders."""
    unc, cac = results["uncached"], results["cached"]
    step_s, step_c = unc["step"][0], cac["step"][0]
    fu, fc = _flops(unc, step_s, peak), _flops(cac, step_c, peak)
    bs = cac["samples"]  # the step's samples (a batch measured in tokens holds as many as fit)
    train_sps = bs / step_c
    return {
        "config": None, "device": device_name(dev), "batch_size": bs,
        "label_tokens": cac["label_tokens"], "label_tokens_per_s": unc["label_tokens"] / step_s,
        "label_tokens_per_s_cached": cac["label_tokens"] / step_c,
        "data_samples_per_s": data["images"]["samples_per_s"],
        "data_samples_per_s_cached": data["cached"]["samples_per_s"], "cache_build_s": data["cache_build_s"],
        "step_s": step_s, "step_s_cached": step_c,
        "step_s_spread": list(unc["step"][1:]), "step_s_cached_spread": list(cac["step"][1:]),
        "step_cpu_s": unc["cpu"], "step_cpu_s_cached": cac["cpu"],
        "cache_speedup": step_s / step_c,
        "train_samples_per_s": train_sps, "train_samples_per_s_uncached": bs / step_s,
        "data_to_step_ratio": data["cached"]["samples_per_s"] / train_sps,
        "data_to_step_ratio_uncached": data["images"]["samples_per_s"] / (bs / step_s),
        "breakdown_s": unc["parts"], "breakdown_s_cached": cac["parts"],
        "tokens_per_s": cac["tokens"] / step_c, "tokens_per_s_uncached": unc["tokens"] / step_s,
        "padding_share": unc["padding_share"], "padding_share_cached": cac["padding_share"],
        "seq_len": unc["seq_len"], "answer_positions": unc["answer_positions"],
        "model_flops_per_step": fu["model"], "model_flops_per_step_cached": fc["model"],
        "hardware_flops_per_step": fu["hardware"], "hardware_flops_per_step_cached": fc["hardware"],
        "flops_by_part": fu["by_part"], "flops_by_part_cached": fc["by_part"],
        "achieved_tflops": fu["model"] / step_s / 1e12, "achieved_tflops_cached": fc["model"] / step_c / 1e12,
        "mfu_model": fu["mfu_model"], "mfu_model_cached": fc["mfu_model"],
        "mfu_hardware": fu["mfu_hardware"], "mfu_hardware_cached": fc["mfu_hardware"],
        "attention_kernels": fu["attention"], "attention_kernels_cached": fc["attention"],
    }
