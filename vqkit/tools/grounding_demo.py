"""``vqkit demo --task grounding``: 3D visual grounding end to end on the synthetic rooms, on a CPU.

1. the synthetic rooms with their grounding questions (``vqkit synth --grounding``; added to a set that
   lacks them, everything else reused), then, as the question-answering demo does, the demo-size
   aggregator pretrained on the rooms' semantic maps (configs/demo_encoder.yaml) into ``RUN_encoder``,
2. the frozen aggregator's features cached once (``vqkit cache-features``),
3. the grounding recipe trained (configs/grounding_demo.yaml: the demo's model writing the box of the
   object a referring expression names, as one object line, all of a room's expressions a sample),
4. its blind baseline trained: the same recipe with text-only prompts (the expression alone), one
   expression a sample at twice the batch,
5. both evaluated on the validation rooms' expressions (Acc@0.25 / Acc@0.5 of oriented 3D IoU, overall
   and unique / multiple, parse rate), beside the "category's mean box" baseline (every expression
   answered with its target category's mean training box in the recipe's frame),
6. the table printed and ``RUN/demo_summary.json`` written (``acc25_full``, ``acc25_blind``,
   ``acc50_full``, ``acc50_blind`` in percent, ``minutes``, and the rest).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from vqkit.data.record_files import read_records_once
from vqkit.data.schema import load_records
from vqkit.eval.grounding import mean_box_baseline
from vqkit.eval.results import default_out_dir
from vqkit.tools.demo import (
    DEFAULT_ENCODER_PRETRAIN,
    DEFAULT_SYNTH,
    evaluate_into_run,
    prepare_demo_run,
    train_with_blind_baseline,
)

DEFAULT_GROUNDING_CONFIG = "configs/grounding_demo.yaml"
GROUNDING_RECORDS = "grounding_"


def format_grounding_table(full: dict, blind: dict, mean_box: dict) -> str:
    """Acc@0.25 and Acc@0.5 of the recipe, its blind baseline and the category's mean box, overall and
    per subset, and the parse rates (percent)."""
    head = f"{'':<10}{'n':>6}" + "".join(f"{f'Acc@{k} {who}':>18}" for k in ("0.25", "0.5")
                                          for who in ("full", "blind", "mean box"))
    lines = [head, "-" * len(head)]
    rows = [("overall", full, blind, mean_box)] + [
        (s, full["by_subset"][s], blind["by_subset"].get(s, {}), mean_box["by_subset"].get(s, {}))
        for s in full.get("by_subset", {})]
    for name, f, b, m in rows:
        cells = [x.get(f"acc@{k}") for k in ("0.25", "0.5") for x in (f, b, m)]
        lines.append(f"{name:<10}{f['n']:>6}" + "".join(f"{'-' if c is None else f'{c:.1f}':>18}" for c in cells))
    lines.append("-" * len(head))
    lines.append(f"parse rate: full {full['parse_rate']:.1f}%, blind {blind['parse_rate']:.1f}%; mean IoU: full "
                 f"{full['mean_iou']:.1f}, blind {blind['mean_iou']:.1f}, mean box {mean_box['mean_iou']:.1f}")
    return "\n".join(lines)


@read_records_once()  # the pretraining, the cache, two trainings and two evaluations read the same records
def run_grounding_demo(config: str | None = None, data_dir: str = "data/synth", run_dir: str = "runs/grounding_demo",
                       overrides: list[str] | None = None, synth: dict | None = None, progress: bool = True,
                       encoder_pretrain: str | None = None, encoder_overrides: list[str] | None = None) -> dict:
    """Run the grounding demo (module docstring); returns the summary written to ``RUN/demo_summary.json``.

    ``config`` None: :data:`DEFAULT_GROUNDING_CONFIG`, its aggregator pretrained first with
    ``encoder_pretrain`` (default: the question-answering demo's); with a ``config`` given,
    ``encoder_pretrain`` None keeps that config's encoder (e.g. weights named with ``--set``)."""
    started = time.time()
    if config is None:
        config, encoder_pretrain = DEFAULT_GROUNDING_CONFIG, encoder_pretrain or DEFAULT_ENCODER_PRETRAIN
    synth = {**DEFAULT_SYNTH, **(synth or {}), "grounding": True}
    data_dir, run_path = Path(data_dir), Path(run_dir)
    timings = {}
    cfg = prepare_demo_run(config, overrides, data_dir, run_path, synth, encoder_pretrain, encoder_overrides,
                           progress, timings, records=GROUNDING_RECORDS)
    result, blind_cfg, blind_result = train_with_blind_baseline(cfg, run_path, progress, timings)

    t = time.time()
    val = [str(data_dir / f"{GROUNDING_RECORDS}val.jsonl")]
    full = evaluate_into_run(result.final_dir, cfg, val, blind=False, progress=progress)[0]["grounding"]
    blind = evaluate_into_run(blind_result.final_dir, blind_cfg, val, blind=True, progress=progress)[0]["grounding"]
    train_records = load_records(str(data_dir / f"{GROUNDING_RECORDS}train.jsonl"), check_files=False)
    mean_box = mean_box_baseline(train_records, load_records(val[0], check_files=False), cfg.data.box_frame)
    timings["eval_s"] = time.time() - t

    summary = {
        "acc25_full": full["acc@0.25"], "acc25_blind": blind["acc@0.25"],
        "acc50_full": full["acc@0.5"], "acc50_blind": blind["acc@0.5"],
        "acc25_mean_box": mean_box["acc@0.25"], "acc50_mean_box": mean_box["acc@0.5"],
        "parse_rate_full": full["parse_rate"], "parse_rate_blind": blind["parse_rate"],
        "minutes": (time.time() - started) / 60, "timings_s": timings, "train_steps": result.steps,
        "full": full, "blind": blind, "mean_box": mean_box, "n_val": full["n"], "synth": synth, "config": config,
        "encoder_pretrain": encoder_pretrain, "encoder_weights": cfg.model.encoder.weights,
        "box_frame": cfg.data.box_frame, "box_step_cm": cfg.data.box_step_cm,
        "eval_dir": str(default_out_dir(result.final_dir, views_removed=False)),
        "blind_eval_dir": str(default_out_dir(blind_result.final_dir, views_removed=False)),
    }
    (run_path / "demo_summary.json").write_text(json.dumps(summary, indent=1))
    print()
    print(format_grounding_table(full, blind, mean_box))
    gain = summary["acc25_full"] - summary["acc25_blind"]
    print(f"\nAcc@0.25 {summary['acc25_full']:.1f} vs blind {summary['acc25_blind']:.1f} ({gain:+.1f} points); "
          f"{summary['minutes']:.1f} minutes end to end")
    print(f"run: {run_path}  (model: {result.final_dir}, summary: {run_path / 'demo_summary.json'}, predictions: "
          f"{Path(summary['eval_dir']) / 'predictions.jsonl'})")
    print(f"ask: vqkit ask --model {result.final_dir} --images {data_dir}/scenes/scene00000/rgb_0*.png "
          f"--ground \"the bed\"")
    return summary

