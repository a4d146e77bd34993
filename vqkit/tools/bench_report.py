"""``vqkit bench``'s figures (:func:`vqkit.tools.bench.run_bench`) as a text table."""

from __future__ import annotations

from typing import Any

PART_LABELS = {"encoder": "encoder (frozen)", "projector": "projector fwd+bwd", "llm": "LLM fwd+bwd"}


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:9.1f} ms"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _steps(r: dict[str, Any]) -> list[str]:
    b, c = r["breakdown_s"], r["breakdown_s_cached"]
    lines = [f"{'':28}{'from images':>16}{'cached features':>18}",
             f"{'DataLoader samples/s':28}{r['data_samples_per_s']:16.1f}{r['data_samples_per_s_cached']:18.1f}",
             f"{'training step':28}{_ms(r['step_s']):>16}{_ms(r['step_s_cached']):>18}",
             f"{'  (min-max)':28}{'-'.join(f'{1000 * x:.0f}' for x in r['step_s_spread']) + ' ms':>16}"
             f"{'-'.join(f'{1000 * x:.0f}' for x in r['step_s_cached_spread']) + ' ms':>18}",
             f"{'  CPU time of the process':28}{_ms(r['step_cpu_s']):>16}{_ms(r['step_cpu_s_cached']):>18}"]
    for key, label in (("encoder", "  encoder (frozen)"), ("projector", "  projector fwd+bwd"),
                       ("llm_fwd_bwd", "  LLM fwd+bwd"), ("optimizer", "  optimizer"), ("total", "  sum of parts")):
        lines.append(f"{label:28}{_ms(b[key]):>16}{_ms(c[key]):>18}")
    lines += [f"{'train samples/s':28}{r['train_samples_per_s_uncached']:16.1f}{r['train_samples_per_s']:18.1f}",
              f"{'data / step throughput':28}{r['data_to_step_ratio_uncached']:15.1f}x{r['data_to_step_ratio']:17.1f}x",
              f"{'LLM tokens/s':28}{r['tokens_per_s_uncached']:16.0f}{r['tokens_per_s']:18.0f}",
              f"{'padding share of the batch':28}{_pct(r['padding_share']):>16}{_pct(r['padding_share_cached']):>18}"]
    return lines


def _flops(r: dict[str, Any]) -> list[str]:
    """Model and hardware FLOPs per part, their utilisation of the part's time, and the step's MFU."""
    peak = r.get("peak_flops")
    lines = ["", f"FLOPs per step (GFLOP) and utilisation of {r['peak_source']}" if peak else
             f"FLOPs per step (GFLOP); {r['peak_source']}",
             f"{'':20}{'model':>10}{'hardware':>10}{'model util':>12}{'hw util':>9}   "
             f"{'model':>10}{'hardware':>10}   (cached features)"]
    u, c = r["flops_by_part"], r["flops_by_part_cached"]
    for part, label in PART_LABELS.items():
        a, b = u[part], c[part]
        lines.append(f"{label:20}{a['model'] / 1e9:10.1f}{a['hardware'] / 1e9:10.1f}"
                     f"{_pct(a['model_utilisation']):>12}{_pct(a['hardware_utilisation']):>9}   "
                     f"{b['model'] / 1e9:10.1f}{b['hardware'] / 1e9:10.1f}")
    lines.append(f"{'step':20}{r['model_flops_per_step'] / 1e9:10.1f}{r['hardware_flops_per_step'] / 1e9:10.1f}"
                 f"{'':21}   {r['model_flops_per_step_cached'] / 1e9:10.1f}"
                 f"{r['hardware_flops_per_step_cached'] / 1e9:10.1f}")
    lines.append(f"{'achieved TFLOP/s (model)':28}{r['achieved_tflops']:16.3f}{r['achieved_tflops_cached']:18.3f}")
    if peak:
        lines += [f"{'MFU (model FLOPs)':28}{_pct(r['mfu_model']):>16}{_pct(r['mfu_model_cached']):>18}",
                  f"{'hardware FLOPs utilisation':28}{_pct(r['mfu_hardware']):>16}{_pct(r['mfu_hardware_cached']):>18}"]
    kernels = "; ".join(f"{part} " + ", ".join(f"{k} x{n}" for k, n in calls.items())
                        for part, calls in r["attention_kernels"].items())
    lines.append(f"attention kernels (from images): {kernels or 'none'}")
    return lines


def _packing(r: dict[str, Any]) -> list[str]:
    """The same samples unpadded and packed: padding, label tokens/s, the step and its parts."""
    p = r.get("packing")
    if not p:
        return []
    v = [p[f"{source}_{form}"] for source in ("uncached", "cached") for form in ("unpacked", "packed")]
    trains = "packed" if r.get("data_packing") else "unpacked"
    if r.get("tokens_per_batch"):
        trains += f", batches of {r['tokens_per_batch']} tokens"
    lines = ["", f"packing: the same {v[0]['samples']} samples unpadded and packed in one row (the config trains "
                 f"{trains})",
             f"{'':28}{'images':>12}{'images':>12}{'cached':>12}{'cached':>12}",
             f"{'':28}{'unpacked':>12}{'packed':>12}{'unpacked':>12}{'packed':>12}",
             f"{'rows x length':28}" + "".join(f"{_rows(x):>12}" for x in v),
             f"{'padding share':28}" + "".join(f"{_pct(x['padding_share']):>12}" for x in v),
             f"{'training step':28}" + "".join(f"{1000 * x['step_s']:10.1f}ms" for x in v)]
    for key, label in (("encoder", "  encoder (frozen)"), ("projector", "  projector fwd+bwd"),
                       ("llm_fwd_bwd", "  LLM fwd+bwd"), ("optimizer", "  optimizer")):
        lines.append(f"{label:28}" + "".join(f"{1000 * x['breakdown_s'][key]:10.1f}ms" for x in v))
    lines.append(f"{'label tokens/s':28}" + "".join(f"{x['label_tokens_per_s']:12.0f}" for x in v))
    lines.append(f"packed over unpacked, label tokens/s: {p['uncached_speedup']:.2f}x from images, "
                 f"{p['cached_speedup']:.2f}x cached ({v[0]['label_tokens']} label tokens a step)")
    return lines


def _rows(x: dict[str, Any]) -> str:
    rows = round(x["tokens"] / max(1e-9, 1 - x["padding_share"]) / x["seq_len"])
    return f"{rows}x{x['seq_len']}"


def format_table(r: dict[str, Any]) -> str:
    """The figures as an aligned text table."""
    enc = r["encoder_8x518"]
    on_gpu = "cpu" not in r["device"]
    decided_by = r.get("gradient_checkpointing_decided_by")
    lines = [f"vqkit bench on {r['device']}, batch {r['batch_size']}, {r['num_workers']} DataLoader workers; "
             f"gradient checkpointing {'on' if r['gradient_checkpointing'] else 'off'}"
             f"{' (' + decided_by + ')' if decided_by else ''}"
             f", Liger kernels {'on' if r['liger_kernels'] else 'off'}, {r['optimizer']}, encoder matmul weights "
             f"{r['encoder_matmul_dtype']}{', compiled' if r['encoder_compiled'] else ''}", ""]
    lines += _steps(r) + _flops(r) + _packing(r)
    lines += ["", f"aggregator, 8 frames of 518 x 518: {enc['s']:.3f} s ({1000 * enc['s_per_frame']:.1f} ms per frame; "
                  f"{enc['setup']}; attention "
                  f"{', '.join(f'{k} x{n}' for k, n in enc['attention'].items()) or 'none'})"]
    if not on_gpu:
        lines.append("  (measured in fp32 on the CPU with the config's aggregator: VGGT's published 0.11 s is for "
                     "the 1B model in bf16 on an H100)")
    lines += ["", f"cached step is {r['cache_speedup']:.2f}x faster; peak memory {r['peak_mem_mb']:.0f} MB "
                  f"({'max allocated on the GPU' if on_gpu else 'peak RSS'})"]
    return "\n".join(lines)


def format_encoder(r: dict[str, Any]) -> str:
    """``vqkit bench --encoder-only``'s one figure."""
    enc = r["encoder_8x518"]
    util = f", {_pct(r['encoder_utilisation_8x518'])} of {r['peak_source']}" if r.get("peak_flops") else ""
    return (f"aggregator, 8 frames of 518 x 518: {enc['s']:.3f} s "
            f"(min-max {enc['spread'][0]:.3f}-{enc['spread'][1]:.3f};"
            f" {1000 * enc['s_per_frame']:.1f} ms per frame; {enc['flops'] / 1e12:.2f} TFLOP{util}; {enc['setup']}; "
            f"attention {', '.join(f'{k} x{n}' for k, n in enc['attention'].items()) or 'none'})")
