"""``vqkit eval``: predictions and metrics of a saved model on a record file (or re-scoring a predictions
file); runs unchanged under ``torchrun -m vqkit eval`` (each rank evaluates its share).

A folder that already holds an evaluation is refused unless ``--overwrite`` (results are never replaced
silently); ``--blind`` on a model trained with views writes ``RUN/eval_views_removed`` (see
:mod:`vqkit.eval.results`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vqkit.commands.common import add_overrides_argument
from vqkit.errors import ConfigError
from vqkit.eval.missing_geometry import effective_source
from vqkit.eval.results import (
    check_out_dir,
    default_out_dir,
    evaluation_info,
    format_table,
    rescore_into,
    write_results,
)
from vqkit.utils import distributed
from vqkit.utils.runtime import resolve_device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqkit eval",
        description="Generate answers with a saved model, write predictions.jsonl + metrics.json and "
                    "print a table. Runs under torchrun unchanged (each rank evaluates its share). "
                    "metrics.json records the model folder, its training step, the data files, whether "
                    "the model was trained blind and whether its views were removed. An output folder "
                    "that already holds an evaluation is refused unless --overwrite.",
        epilog="examples:\n"
               "  vqkit eval --model runs/demo/final --data data/synth/val.jsonl            # -> runs/demo/eval\n"
               "  vqkit eval --model runs/demo/final --data data/synth/val.jsonl --blind    "
               "# -> runs/demo/eval_views_removed\n"
               "  vqkit eval --model runs/demo/blind/final --data data/synth/val.jsonl      "
               "# the blind-trained baseline -> runs/demo/blind/eval\n"
               "  vqkit eval --predictions runs/demo/eval/predictions.jsonl   # re-score, no model\n"
               "  vqkit eval --model RUN/final --data data/scanqa/test_w_obj.jsonl \\\n"
               "      --scanqa-export pred.test_w_obj.json\n"
               "  torchrun --nproc_per_node 8 -m vqkit eval --model RUN/final --data val.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="saved model folder (RUN/final or a checkpoint's model folder)")
    parser.add_argument("--data", action="append", metavar="FILE",
                        help="records to evaluate (JSON/JSONL file or glob; repeatable); default: the "
                             "model config's data.val")
    parser.add_argument("--predictions", metavar="FILE", help="re-score an existing predictions.jsonl (no model)")
    parser.add_argument("--out", help="output folder (default: RUN/eval next to the model folder, or "
                                      "RUN/eval_views_removed with --blind on a model trained with views; with "
                                      "--predictions: that file's folder, whose metrics.json is re-scored in place)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results in an output folder that already holds an evaluation "
                             "(without it such a folder is refused)")
    parser.add_argument("--blind", action="store_true",
                        help="remove the views: no vision or geometry tokens. On a model trained with views "
                             "this is a views-removed evaluation (RUN/eval_views_removed), not the blind-trained "
                             "baseline; a model trained blind (data.blind) is always evaluated blind")
    parser.add_argument("--batch-size", type=int, help="generation batch per process (default eval.batch_size)")
    parser.add_argument("--max-new-tokens", type=int,
                        help="generation budget (default eval.max_new_tokens; eval.roomplan_max_new_tokens "
                             "for Stage 2 records)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N records")
    add_overrides_argument(parser, "config override on top of the model's config, e.g. eval.do_sample=true "
                             "or data.image_root=/data/scannet (repeatable)")
    parser.add_argument("--encoder-weights", help="VGGT checkpoint path when the saved one does not exist here")
    parser.add_argument("--no-language-metrics", action="store_true",
                        help="skip BLEU/METEOR/ROUGE-L/CIDEr (they need Java and take a few seconds)")
    parser.add_argument("--scanqa-export", metavar="FILE",
                        help="write ScanQA's test-server submission instead of scoring: per question its 10 best "
                             "answers (beam search) and the box of its object (asked as a grounding question), "
                             "schema-checked (records from `vqkit prep scanqa --scans`, in ScanQA's box frame)")
    parser.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK when available), cpu, cuda:0, ...")
    return parser


def _print_note(text: str, warning: bool) -> None:
    print(f"vqkit eval: {'warning' if warning else 'note'}: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    from vqkit.eval.generate import evaluate
    from vqkit.models.builder import load_model, load_model_config

    args = build_parser().parse_args(argv)
    language = not args.no_language_metrics
    if args.predictions:
        if args.model or args.data:
            raise ConfigError("--predictions re-scores a file: do not combine it with --model/--data")
        metrics, written = rescore_into(args.predictions, args.out, overwrite=args.overwrite, language=language)
        print(format_table(metrics))
        print(f"metrics written to {written}")
        return 0
    if not args.model:
        raise ConfigError("--model DIR is required (or --predictions FILE to re-score)")
    for name in ("batch_size", "max_new_tokens", "limit"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "limit" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be >= {0 if name == 'limit' else 1}, got {value}")
    model_dir = Path(args.model)
    cfg = load_model_config(model_dir, args.overrides)  # a missing model or a run folder: one line
    if args.encoder_weights:
        cfg.model.encoder.weights = args.encoder_weights  # where the heads are looked for
    # auto without VGGT heads in the encoder weights: answered from the records' geometry, and said so
    source, fallback = effective_source(cfg)
    cfg.model.geometry.source = source
    if args.scanqa_export:
        return _scanqa_export(args, model_dir, cfg)
    info = evaluation_info(model_dir, cfg, args.data, args.blind)
    out = check_out_dir(Path(args.out) if args.out else default_out_dir(model_dir, info["views_removed"]),
                        args.overwrite)  # before the model loads: a refusal costs nothing
    with distributed.process_group() as (rank, world):
        model = load_model(model_dir, device=resolve_device(args.device), encoder_weights=args.encoder_weights,
                           geometry_source=source)  # --set model.geometry.source=heads
        predictions, metrics = evaluate(model, cfg, args.data, blind=args.blind, batch_size=args.batch_size,
                                        max_new_tokens=args.max_new_tokens, limit=args.limit,
                                        language=language, on_note=_print_note, geometry_fallback=fallback)
        if rank == 0:
            metrics["info"].update(info)
            write_results(out, predictions, metrics)
            print(format_table(metrics))
            print(f"{len(predictions)} predictions and metrics written to {out}"
                  + (f" ({world} processes)" if world > 1 else ""))
    return 0


def _scanqa_export(args, model_dir: Path, cfg) -> int:
    """``--scanqa-export FILE``: the test-server submission (:mod:`vqkit.eval.scanqa_export`), one process."""
    from vqkit.eval.scanqa_export import scanqa_submission, submission_summary, write_submission
    from vqkit.models.builder import load_model

    out = Path(args.scanqa_export)
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} already exists; choose another --scanqa-export, or add --overwrite to replace it")
    if args.blind:
        raise ConfigError("--scanqa-export answers with the views: do not combine it with --blind")
    model = load_model(model_dir, device=resolve_device(args.device), encoder_weights=args.encoder_weights,
                       geometry_source=cfg.model.geometry.source)
    items, stats = scanqa_submission(model, cfg, args.data, batch_size=args.batch_size, limit=args.limit)
    write_submission(out, items)
    print(f"{submission_summary(stats)}; written to {out}")
    return 0
