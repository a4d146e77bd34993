"""The acceptance figures of the real-size GPU check, from what scripts/gpu_real_size.sh wrote into OUT_DIR.

    python scripts/gpu_real_size_summary.py OUT_DIR --config configs/stage1_3d.yaml [--set k=v ...]

Reads bench.json (this code; its "packing" section: the same samples unpadded and packed), packing.json
(the bench trained packed, if run), before_bench.json (the code before the change, if run), encoder.json
(the aggregator's 8 x 518 forward, eager and compiled), plan.json's "probe" (real steps beside the plan, if
run; probe.json in older runs), env.json (the machine, Liger's check, each stage's exit status); plans the
bench's batch at its measured sequence length with ``vqkit.tools.plan.make_plan`` (once: a summary.json that
already holds the plan of the same bench is reused, as the script summarises after every stage); writes
summary.json and prints it as lines. Files that are missing (a stage not run yet) are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# The targets of the performance work: MFU of model FLOPs at the configured batch, VGGT's published aggregator speed
# (H100, 8 frames of 518 px), the planner within 10% of the measured peak.
MFU_CACHED, MFU_IMAGES, ENCODER_8X518_S, PLAN_TOLERANCE = 0.35, 0.30, 0.11, 0.10


def read(out: Path, name: str) -> dict | None:
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else None


def plan_at(bench: dict, config: str, overrides: list[str], data: str | None) -> dict:
    """The plan for the bench's batch (images, not cached features) at its sequence length and answer positions,
    with the checkpointing the bench ran."""
    import torch

    from vqkit.config import load_config
    from vqkit.tools.bench import ensure_data
    from vqkit.tools.plan import MB, make_plan

    checkpointing = str(bench["gradient_checkpointing"]).lower()
    cfg = load_config(config, [*overrides, f"model.llm.gradient_checkpointing={checkpointing}",
                               "data.feature_cache=null"])
    if data:
        cfg, _ = ensure_data(cfg, data)
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30 if torch.cuda.is_available() else 80.0
    device = "cuda" if "cpu" not in bench["device"] else "cpu"
    plan = make_plan(cfg, gpus=1, gpu_mem_gb=memory, device=device, seq_len=bench["seq_len"],
                     batch_size=bench["batch_size"], answer_tokens=bench["answer_positions"])
    return {"predicted_mb": plan.total(bench["batch_size"]) / MB, "seq_len": bench["seq_len"],
            "answer_positions": bench["answer_positions"], "batch_size": bench["batch_size"]}


def summarise(out: Path, config: str, overrides: list[str], data: str | None = None) -> dict:
    """Long because it is one flat list of the target figures, each next to its source file."""
    after, before, env = read(out, "bench.json"), read(out, "before_bench.json"), read(out, "env.json") or {}
    previous = read(out, "summary.json") or {}
    summary: dict = {"files": sorted(p.name for p in out.glob("*.json") if p.name != "summary.json"),
                     "gpu": env.get("gpu"), "liger_check": env.get("liger_check"),
                     "stages": {k[len("stage_"):]: v for k, v in env.items() if k.startswith("stage_")}}
    acceptance: dict = {}
    if after:
        peak = after["peak_flops"]
        summary["after"] = {k: after.get(k) for k in (
            "device", "peak_source", "batch_size", "seq_len", "step_s", "step_s_cached", "step_cpu_s", "mfu_model",
            "mfu_model_cached", "mfu_hardware", "mfu_hardware_cached", "model_flops_per_step",
            "hardware_flops_per_step", "model_flops_per_step_cached", "gradient_checkpointing",
            "gradient_checkpointing_decided_by", "liger_kernels", "optimizer", "encoder_matmul_dtype",
            "padding_share", "attention_kernels", "attention_kernels_cached", "breakdown_s", "breakdown_s_cached",
            "step_s_spread", "step_s_cached_spread", "step_cpu_s_cached", "flops_by_part", "flops_by_part_cached",
            "tokens_per_s", "peak_mem_mb", "encoder_s_per_8_frames_518", "encoder_compiled")}
        summary["after"]["encoder_8x518_setup"] = after["encoder_8x518"]["setup"]
        if peak:
            acceptance[f"mfu_model_cached >= {MFU_CACHED}"] = after["mfu_model_cached"] >= MFU_CACHED
            acceptance[f"mfu_model (from images) >= {MFU_IMAGES}"] = after["mfu_model"] >= MFU_IMAGES
        plan = previous.get("memory") or {}
        if any(plan.get(k) != after[k] for k in ("batch_size", "seq_len", "answer_positions")) \
                or plan.get("measured_peak_mb") != after["peak_mem_mb"]:
            plan = plan_at(after, config, overrides, data)
        plan["measured_peak_mb"] = after["peak_mem_mb"]
        plan["error"] = plan["predicted_mb"] / after["peak_mem_mb"] - 1
        summary["memory"] = plan
        acceptance[f"plan within {PLAN_TOLERANCE:.0%} of the bench's peak"] = abs(plan["error"]) <= PLAN_TOLERANCE
    if before:
        summary["before"] = {k: before.get(k) for k in ("device", "batch_size", "step_s", "step_s_cached", "mfu",
                                                         "mfu_cached", "flops_per_step", "flops_per_step_cached",
                                                         "peak_mem_mb", "breakdown_s", "breakdown_s_cached")}
        summary["before"]["note"] = ("mfu/mfu_cached as that code counted them (every FLOP as run, the recomputed "
                                     "forward included); mfu_model_* below: this code's model FLOPs of the same "
                                     "batch over that code's step time")
        if after and after["peak_flops"] and before["batch_size"] == after["batch_size"]:
            summary["before"]["mfu_model"] = after["model_flops_per_step"] / before["step_s"] / after["peak_flops"]
            summary["before"]["mfu_model_cached"] = (after["model_flops_per_step_cached"] / before["step_s_cached"]
                                                     / after["peak_flops"])
        if after:
            summary["speedup"] = {"from_images": before["step_s"] / after["step_s"],
                                  "cached": before["step_s_cached"] / after["step_s_cached"]}
    encoder = {name: r["encoder_s_per_8_frames_518"] for name, r in (read(out, "encoder.json") or {}).items()}
    if after:
        encoder["in_bench"] = after["encoder_s_per_8_frames_518"]
    if encoder:
        summary["encoder_s_per_8_frames_518"] = encoder
        acceptance[f"aggregator 8 x 518 <= {ENCODER_8X518_S} s"] = min(encoder.values()) <= ENCODER_8X518_S
    packed = read(out, "packing.json")
    if after and after.get("packing"):
        p = after["packing"]
        fields = ("padding_share", "label_tokens_per_s", "step_s", "breakdown_s")
        summary["packing"] = {"speedup_label_tokens_per_s": {"from_images": p["uncached_speedup"],
                                                             "cached": p["cached_speedup"]},
                              **{k: {f: v[f] for f in fields} for k, v in p.items() if isinstance(v, dict)}}
    if packed:
        summary.setdefault("packing", {})["trained_packed"] = {k: packed.get(k) for k in (
            "step_s", "step_s_cached", "mfu_model", "mfu_model_cached", "mfu_hardware", "mfu_hardware_cached",
            "padding_share", "label_tokens_per_s", "label_tokens_per_s_cached", "attention_kernels", "peak_mem_mb")}
    probe = read(out, "probe.json") or {"probe": (read(out, "plan.json") or {}).get("probe", [])}
    if probe.get("probe"):
        keys = ("batch_size", "fits", "peak_mb", "predicted_mb", "seq_len", "step_s")
        summary["probe"] = [{k: r.get(k) for k in keys} for r in probe.get("probe", [])]
    summary["acceptance"] = acceptance
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data", help="the synthetic data folder the bench ran on")
    args = parser.parse_args()
    out = Path(args.out_dir)
    summary = summarise(out, args.config, args.overrides, args.data)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for key, value in summary.items():
        print(f"{key}: {json.dumps(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
