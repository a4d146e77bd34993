"""``vqkit plan --config FILE --gpus N [--deepspeed JSON | --zero 2|3] [--gpu-mem GB] [--probe]``: memory per
GPU and the largest batch that fits, without allocating the model (see :mod:`vqkit.tools.plan`)."""

from __future__ import annotations

import argparse
import json

from vqkit.commands.common import add_overrides_argument


def main(argv: list[str] | None = None) -> int:
    from vqkit.config import load_config
    from vqkit.tools.bench import ensure_data
    from vqkit.tools.plan import format_plan, make_plan
    from vqkit.tools.plan_probe import measure_step, probe_plan, step_setup

    parser = argparse.ArgumentParser(
        prog="vqkit plan",
        description="Memory per GPU (parameters, gradients, optimizer state, activations) and the largest "
                    "batch_size_per_gpu / grad_accum for a config, without allocating the model.",
        epilog="example: vqkit plan --config configs/stage1_3d.yaml --gpus 8 --deepspeed configs/deepspeed/zero2.json")
    parser.add_argument("--config", required=True, help="experiment YAML")
    add_overrides_argument(parser, "override a config value (repeatable)")
    parser.add_argument("--gpus", type=int, default=1, help="number of GPUs (data-parallel ranks)")
    parser.add_argument("--deepspeed", help="the DeepSpeed JSON of the launch line (sets train.deepspeed; the plan "
                                            "assumes its ZeRO stage), e.g. configs/deepspeed/zero2.json")
    parser.add_argument("--zero", type=int, choices=[0, 2, 3],
                        help="DeepSpeed ZeRO stage (0 = none; default: that of --deepspeed / train.deepspeed, else 0)")
    parser.add_argument("--gpu-mem", type=float, default=80.0,
                        help="memory per GPU in GB (CPU: RAM budget); the plan keeps 2 GB of it free for the CUDA "
                             "context and the allocator's fragmentation")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="plan a GPU run (default) or a CPU run (fp32, includes the framework baseline)")
    parser.add_argument("--seq-len", type=int, help="tokens per sample (default data.max_length)")
    parser.add_argument("--batch-size", type=int, help="report the total at this batch instead of the largest")
    parser.add_argument("--answer-tokens", type=int,
                        help="positions per sample that get logits (default: measured on the training data)")
    parser.add_argument("--probe", action="store_true",
                        help="confirm with real steps (GPU: increasing batch until OOM; CPU: one step)")
    parser.add_argument("--data", help="synthetic data folder (train.jsonl, tokenizer/) for --probe's steps "
                                       "(default: the config's data, generated when missing)")
    parser.add_argument("--max-batch", type=int, default=4096, help="largest batch --probe tries on a GPU")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # internal: one step, print JSON
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    overrides = args.overrides + ([f"train.deepspeed={args.deepspeed}"] if args.deepspeed else [])
    cfg = load_config(args.config, overrides)
    if args.data:
        cfg, _ = ensure_data(cfg, args.data)
    if args.measure:
        print(json.dumps(measure_step(step_setup(cfg, args.device), args.measure)))
        return 0
    plan_args = dict(gpus=args.gpus, zero=args.zero, gpu_mem_gb=args.gpu_mem, device=args.device)
    plan = make_plan(cfg, **plan_args, seq_len=args.seq_len, batch_size=args.batch_size,
                     answer_tokens=args.answer_tokens)
    result = plan.as_dict()
    text = format_plan(plan, args.config)
    if args.probe:
        result["probe"], probe_text = probe_plan(cfg, plan, config_path=args.config, overrides=overrides,
                                                 plan_args=plan_args, batch_size=args.batch_size,
                                                 data_dir=args.data, max_batch=args.max_batch)
        text += probe_text
    print(json.dumps(result) if args.json else text)
    return 0
