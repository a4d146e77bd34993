"""``vqkit eval``: batched generation over a record file, predictions + metrics, a blind baseline.

Usable from Python (notebooks, training's periodic eval, tests) and from the command line::

    predictions, metrics = evaluate(model, cfg, "data/synth/val.jsonl", blind=False)
    write_results("runs/demo/eval", predictions, metrics)
    print(format_table(metrics))
    metrics = rescore("runs/demo/eval/predictions.jsonl")       # no model needed

    vqkit eval --model runs/demo/final --data data/synth/val.jsonl [--out DIR] [--blind]
    vqkit eval --predictions runs/demo/eval/predictions.jsonl  # re-score only

Distributed (``torchrun --nproc_per_node N -m vqkit.eval.run ...`` or from a training loop under
accelerate/DeepSpeed): rank r generates the examples r, r + N, r + 2N, ... (no padding duplicates),
every rank's predictions are gathered with ``all_gather_object``, sorted back into file order and
checked to hold every example exactly once; rank 0 scores (the Java metrics run once) and broadcasts
the metrics, and only rank 0 writes files. Under ZeRO-3 every rank must run the same number of
forward passes, so ranks with one batch fewer run a dummy batch whose output is dropped and
``generate`` gets ``synced_gpus=True``.

Metrics (``metrics.json``): ``overall`` (:func:`vqkit.eval.metrics.score` over every QA example),
``by_task`` (the same per ``task``), ``by_qtype`` ({qtype: n, em, em_refined}; the record's ``qtype``,
else the SQA3D first-word type), ``roomplan`` (Stage 2 layout scores from
:func:`vqkit.roomplan.score_layouts` when the data has ``task: roomplan`` records) and ``info``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch

from vqkit.cli import add_overrides_argument, run_main
from vqkit.errors import CheckpointError, ConfigError, DataError
from vqkit.eval.metrics import score, sqa3d_qtype

if TYPE_CHECKING:  # pragma: no cover
    from torch.utils.data import Dataset

    from vqkit.config import Config

log = logging.getLogger("vqkit.eval")

PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
ROOMPLAN_TASK = "roomplan"


# --------------------------------------------------------------------------------------------
# Distributed helpers
# --------------------------------------------------------------------------------------------


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    dist = _dist()
    return (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)


def zero3_active(model: torch.nn.Module, accelerator=None) -> bool:
    """Whether the model's parameters are partitioned by DeepSpeed ZeRO-3 (then every rank must call
    generate the same number of times, with ``synced_gpus=True``)."""
    plugin = getattr(getattr(accelerator, "state", None), "deepspeed_plugin", None)
    if plugin is not None and getattr(plugin, "zero_stage", None) == 3:
        return True
    try:
        from transformers.integrations import is_deepspeed_zero3_enabled

        if is_deepspeed_zero3_enabled():
            return True
    except ImportError:  # pragma: no cover - old transformers
        pass
    # Partitioned parameters carry DeepSpeed's bookkeeping attributes.
    return any(hasattr(p, "ds_id") for p in model.parameters())


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """The positions rank ``rank`` evaluates: rank, rank + W, ... (disjoint, union = all, no padding)."""
    return list(range(rank, n, world_size))


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def build_eval_dataset(cfg: "Config", data: Any = None) -> "Dataset":
    """The dataset to evaluate: ``data`` may be a Dataset (used as is), a path or glob, a list of
    paths / ``SourceConfig``, or None for ``cfg.data.val``. Evaluation never drops views at random
    (the dataset is built in "val" mode: uniform view choice, no view dropout)."""
    from vqkit.data.dataset import build_dataset

    if data is not None and hasattr(data, "__getitem__") and hasattr(data, "__len__") \
            and not isinstance(data, (str, os.PathLike, list, tuple)):
        return data
    if data is None:
        sources = None
        if not cfg.data.val:
            raise ConfigError("nothing to evaluate: pass --data FILE (or set data.val in the config)")
    elif isinstance(data, (str, os.PathLike)):
        sources = [str(data)]
    else:
        sources = [s if hasattr(s, "path") else str(s) for s in data]
    dataset = build_dataset(cfg.data, "val", geometry_cfg=cfg.model.geometry, seed=cfg.train.seed,
                            sources=sources)
    if cfg.data.feature_cache:
        # Encoder features cached by `vqkit cache-features` are used when they cover every record
        # (same answers, less work); any other data is read from its images.
        from vqkit.cache import attach_feature_cache

        try:
            attach_feature_cache(dataset, cfg)
        except (DataError, CheckpointError, ConfigError, OSError) as e:
            for part in getattr(dataset, "datasets", [dataset]):
                part.feature_cache = None
            log.info("evaluating from images: the feature cache %s does not cover this data (%s)",
                     cfg.data.feature_cache, e)
    return dataset


def _batches(dataset, indices: Sequence[int], collator, batch_size: int, num_workers: int
             ) -> Iterator[tuple[list[int], dict]]:
    """(positions, collated batch) over ``indices`` in order."""
    from torch.utils.data import DataLoader

    chunks = [list(indices[i:i + batch_size]) for i in range(0, len(indices), batch_size)]
    loader = DataLoader(dataset, batch_sampler=chunks, collate_fn=collator, num_workers=num_workers)
    yield from zip(chunks, loader)


def qtype_of(meta: dict) -> str:
    """The question type used for ``by_qtype``: the record's ``qtype``, else SQA3D's first-word type."""
    return meta.get("qtype") or sqa3d_qtype(meta.get("question") or "")


def _prediction_row(position: int, meta: dict, prediction: str, blind: bool) -> dict:
    task = meta.get("task")
    answers = [str(a) for a in meta.get("answers") or []]
    if not answers and meta.get("roomplan") is None and meta.get("answer") is not None:
        answers = [meta["answer"]]  # a QA record without "answers": its answer is the reference
    row = {"index": position, "id": meta.get("id"), "task": task, "qtype": qtype_of(meta),
           "question": meta.get("question"), "prediction": prediction, "answers": answers,
           "scene_id": meta.get("scene_id"), "images": meta.get("images"), "blind": blind}
    if meta.get("situation"):
        row["situation"] = meta["situation"]
    if meta.get("roomplan") is not None:
        row["roomplan"] = meta["roomplan"]  # the gold layout, so re-scoring needs no data
    return row


def _is_roomplan(row: dict) -> bool:
    return row.get("task") == ROOMPLAN_TASK or (row.get("roomplan") is not None and not row.get("answers"))


def generation_kwargs(cfg: "Config") -> dict:
    """transformers generate() options from ``cfg.eval`` (greedy by default)."""
    e = cfg.eval
    kwargs: dict[str, Any] = {"do_sample": bool(e.do_sample)}
    if e.do_sample:
        kwargs.update(temperature=e.temperature, top_p=e.top_p)
    if e.num_beams > 1:
        kwargs["num_beams"] = e.num_beams
    return kwargs


# --------------------------------------------------------------------------------------------
# Evaluate
# --------------------------------------------------------------------------------------------


def _unwrap(model, accelerator):
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    while hasattr(model, "module") and not hasattr(model, "generate"):
        model = model.module  # DDP / DeepSpeed engine
    return model


def _gather(rows: list[dict], skipped: list[dict]) -> tuple[list[dict], list[dict]]:
    dist = _dist()
    if dist is None:
        return rows, skipped
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (rows, skipped))
    return [r for p in parts for r in p[0]], [s for p in parts for s in p[1]]


def evaluate(model, cfg: "Config | None" = None, data: Any = None, *, blind: bool = False,
             batch_size: int | None = None, max_new_tokens: int | None = None, limit: int | None = None,
             accelerator=None, language: bool = True, progress: bool = True, tokenizer=None,
             sync_ranks: bool | None = None) -> tuple[list[dict], dict]:
    """Generate an answer for every example and score them.

    Args:
        model: a :class:`vqkit.models.vlm.VQModel` (or a DDP/DeepSpeed/accelerate wrapper of one).
        cfg: the config (default: the model's own); ``cfg.eval`` holds the generation options.
        data: see :func:`build_eval_dataset` (a path, sources, a Dataset, or None = ``data.val``).
        blind: drop the vision block (and with it vision and geometry tokens): the text-only baseline.
        batch_size: generation batch per rank (default ``eval.batch_size``).
        max_new_tokens: budget for every example (default ``eval.max_new_tokens``, and
            ``eval.roomplan_max_new_tokens`` for batches with Stage 2 records).
        limit: evaluate only the first ``limit`` examples.
        accelerator: the training ``Accelerator`` (detects ZeRO-3; not needed otherwise).
        language: compute BLEU/METEOR/ROUGE-L/CIDEr (Java, a few seconds).
        progress: a tqdm bar on rank 0.
        tokenizer: default the model's.
        sync_ranks: keep ranks in step (same number of generate calls, ``synced_gpus``); None =
            when DeepSpeed ZeRO-3 partitions the model.

    Returns ``(predictions, metrics)`` on every rank: predictions in file order, one dict per
    example (index, id, task, qtype, question, prediction, answers, scene_id, images, blind, and
    situation / gold roomplan when present); metrics as :func:`compute_metrics` plus ``info``.
    """
    from tqdm.auto import tqdm

    from vqkit.data.collate import Collator

    core = _unwrap(model, accelerator)
    cfg = cfg if cfg is not None else core.config
    tokenizer = tokenizer if tokenizer is not None else core.tokenizer
    batch_size = int(batch_size or cfg.eval.batch_size)
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    rank, world = rank_and_world()
    started = time.time()

    dataset = build_eval_dataset(cfg, data)
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n == 0:
        raise DataError("nothing to evaluate: the dataset is empty (or --limit 0)")
    mine = shard_indices(n, rank, world)
    blind = blind or cfg.data.blind  # a model trained blind is evaluated blind
    collator = Collator(tokenizer, cfg.model, cfg.data, mode="generate", blind=blind)
    gen_kwargs = generation_kwargs(cfg)
    zero3 = world > 1 and (zero3_active(core, accelerator) if sync_ranks is None else sync_ranks)
    if zero3:
        gen_kwargs["synced_gpus"] = True
    if cfg.eval.do_sample:
        torch.manual_seed(cfg.train.seed + rank)  # sampling is reproducible per rank and seed

    rows: list[dict] = []
    skipped: list[dict] = []
    # Every rank runs ceil(ceil(n / world) / batch_size) batches under ZeRO-3 (see module docstring).
    n_steps = math.ceil(math.ceil(n / world) / batch_size)
    bar = tqdm(total=n_steps, desc="eval" + (" (blind)" if blind else ""), unit="batch",
               disable=not progress or rank != 0, dynamic_ncols=True)
    was_training = core.training
    core.eval()
    steps = 0
    try:
        for positions, batch in _batches(dataset, mine, collator, batch_size, cfg.data.num_workers):
            budget = max_new_tokens or (cfg.eval.roomplan_max_new_tokens
                                        if any(_is_roomplan(m) for m in batch["meta"])
                                        else cfg.eval.max_new_tokens)
            texts = core.generate(batch, max_new_tokens=budget, **gen_kwargs)
            for pos, meta, text in zip(positions, batch["meta"], texts):
                if meta.get("replaced_from") is not None:
                    # on_error=skip replaced an undecodable record: its answer is not this record's
                    skipped.append({"index": pos, "id": meta["replaced_from"]})
                else:
                    rows.append(_prediction_row(pos, meta, text, blind))
            steps += 1
            bar.update(1)
        if zero3:
            dummy = collator([dataset[mine[0] if mine else 0]])
            for _ in range(steps, n_steps):
                core.generate(dummy, max_new_tokens=max_new_tokens or cfg.eval.max_new_tokens, **gen_kwargs)
                bar.update(1)
    finally:
        bar.close()
        core.train(was_training)

    rows, skipped = _gather(rows, skipped)
    rows.sort(key=lambda r: r["index"])
    seen = sorted([r["index"] for r in rows] + [s["index"] for s in skipped])
    if seen != list(range(n)):
        raise RuntimeError(f"distributed eval lost or duplicated examples: {len(seen)} results for {n} "
                           f"examples ({len(set(seen))} distinct)")
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        warnings.warn(f"{len(ids) - len(set(ids))} duplicate record ids in the evaluated data", stacklevel=2)

    metrics = None
    if rank == 0:
        metrics = compute_metrics(rows, language=language)
        metrics["info"] = {
            "blind": blind, "examples": n, "skipped": [s["id"] for s in skipped], "world_size": world,
            "batch_size": batch_size, "max_new_tokens": max_new_tokens,
            "generation": {k: v for k, v in gen_kwargs.items() if k != "synced_gpus"}, "synced_ranks": zero3,
            "seconds": round(time.time() - started, 2),
        }

    dist = _dist()
    if dist is not None:
        box = [metrics]
        dist.broadcast_object_list(box, src=0)
        metrics = box[0]
    return rows, metrics


def evaluate_loss_and_em(model, cfg: "Config", tokenizer=None, *, accelerator=None, limit: int | None = None,
                         data: Any = None, batch_size: int | None = None) -> dict:
    """Training's periodic held-out check: answer loss (teacher forcing) and generated EM on the first
    ``limit`` records of ``data`` (default ``data.val``), sharded like :func:`evaluate`. The loss uses
    batches of ``batch_size`` (default ``train.batch_size_per_gpu``), generation ``eval.batch_size``.

    Returns ``{"loss", "em", "em_refined", "n"}`` on every rank (BLEU etc. are skipped: no Java in the
    training loop).
    """
    from vqkit.data.collate import Collator

    core = _unwrap(model, accelerator)
    tokenizer = tokenizer if tokenizer is not None else core.tokenizer
    loss_batch = int(batch_size or cfg.train.batch_size_per_gpu)
    dataset = build_eval_dataset(cfg, data)
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    rank, world = rank_and_world()
    mine = shard_indices(n, rank, world)
    collator = Collator(tokenizer, cfg.model, cfg.data, mode="train", blind=cfg.data.blind)
    zero3 = world > 1 and zero3_active(core, accelerator)
    n_steps = math.ceil(math.ceil(n / world) / loss_batch)

    was_training = core.training
    core.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    tokens = torch.zeros((), dtype=torch.float64)
    steps = 0
    try:
        with torch.no_grad():
            for _, batch in _batches(dataset, mine, collator, loss_batch, cfg.data.num_workers):
                out = core(batch)
                # the model's loss is the mean over label tokens: weight batches by their token count
                count = float((batch["labels"][:, 1:] != -100).sum())
                loss_sum += float(out.loss) * count
                tokens += count
                steps += 1
            if zero3:
                dummy = collator([dataset[mine[0] if mine else 0]])
                for _ in range(steps, n_steps):
                    core(dummy)
    finally:
        core.train(was_training)
    dist = _dist()
    if dist is not None:
        both = torch.stack([loss_sum, tokens]).to(core.device)
        dist.all_reduce(both)
        loss_sum, tokens = both[0].cpu(), both[1].cpu()
    _, metrics = evaluate(model, cfg, dataset, limit=n, accelerator=accelerator, language=False,
                          progress=False, tokenizer=tokenizer)
    return {"loss": float(loss_sum / tokens) if tokens > 0 else float("nan"),
            "em": metrics["overall"]["em"], "em_refined": metrics["overall"]["em_refined"],
            "n": metrics["overall"]["n"]}


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def _score_rows(rows: list[dict], language: bool) -> dict:
    return score([r["prediction"] for r in rows], [r["answers"] for r in rows],
                 [r.get("qtype") or sqa3d_qtype(r.get("question") or "") for r in rows], language=language)


def score_roomplan(rows: list[dict]) -> dict | None:
    """Stage 2 layout metrics of roomplan predictions (text) against their gold CapturedRoom dicts,
    with :func:`vqkit.roomplan.score_layouts`; None (with a warning) when that is unavailable."""
    try:
        from vqkit.roomplan import Room, score_layouts
    except ImportError as e:
        warnings.warn(f"roomplan records not scored: vqkit.roomplan.score_layouts is unavailable ({e})",
                      RuntimeWarning, stacklevel=2)
        return None
    gold = []
    for r in rows:
        if r.get("roomplan") is None:
            raise DataError(f"prediction '{r.get('id')}': task roomplan but no gold 'roomplan' layout")
        gold.append(Room.from_capturedroom(r["roomplan"], where=f"record '{r.get('id')}' roomplan"))
    out = score_layouts([r["prediction"] for r in rows], gold)
    out["n"] = len(rows)
    return out


def compute_metrics(rows: list[dict], *, language: bool = True) -> dict:
    """Metrics of prediction rows (as written to predictions.jsonl).

    ``{"n", "overall": score(...) without by_qtype, "by_task": {task: score(...)},
    "by_qtype": {qtype: {n, em, em_refined}}, "roomplan": layout scores or None}``. ``overall``
    covers the question-answering rows; Stage 2 rows (task roomplan) are scored as layouts only.
    """
    qa = [r for r in rows if not _is_roomplan(r)]
    rp = [r for r in rows if _is_roomplan(r)]
    out: dict[str, Any] = {"n": len(rows)}
    if qa:
        overall = _score_rows(qa, language)
    else:
        overall = score([], [], [], language=False)
    out["by_qtype"] = overall.pop("by_qtype")
    out["overall"] = overall
    tasks: dict[str, list[dict]] = {}
    for r in qa:
        tasks.setdefault(r.get("task") or "unknown", []).append(r)
    by_task = {}
    for task in sorted(tasks):
        if len(tasks) == 1:
            by_task[task] = {**overall, "by_qtype": out["by_qtype"]}  # same rows: do not score twice
        else:
            by_task[task] = _score_rows(tasks[task], language)
    out["by_task"] = by_task
    out["roomplan"] = score_roomplan(rp) if rp else None
    return out


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _json_safe(obj):
    """NaN/inf -> None (JSON has no NaN), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_results(out_dir: str | os.PathLike, predictions: list[dict], metrics: dict | None) -> Path:
    """Write ``predictions.jsonl`` (one row per example) and ``metrics.json`` into ``out_dir``
    (each file atomically). Call on rank 0 only."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / PREDICTIONS_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in predictions))
    if metrics is not None:
        _atomic_write(out / METRICS_FILE, json.dumps(_json_safe(metrics), indent=2, allow_nan=False) + "\n")
    return out


def read_predictions(path: str | os.PathLike) -> list[dict]:
    """Rows of a predictions.jsonl; a malformed row raises DataError naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line_no}: expected a JSON object")
        if not isinstance(row.get("prediction"), str):
            raise DataError(f"{path}:{line_no}: field 'prediction': expected a string")
        answers = row.get("answers")
        if _is_roomplan(row):
            if not isinstance(row.get("roomplan"), dict):
                raise DataError(f"{path}:{line_no}: field 'roomplan': a roomplan prediction needs its gold layout")
        elif not (isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers)):
            raise DataError(f"{path}:{line_no}: field 'answers': expected a non-empty list of strings")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no predictions")
    return rows


def rescore(predictions_path: str | os.PathLike, *, language: bool = True) -> dict:
    """Metrics of an existing predictions.jsonl (no model, no images)."""
    rows = read_predictions(predictions_path)
    metrics = compute_metrics(rows, language=language)
    metrics["info"] = {"rescored_from": str(predictions_path), "examples": len(rows),
                       "blind": bool(rows[0].get("blind", False))}
    return metrics


# --------------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------------

_COLUMNS = [("n", "n"), ("em", "EM"), ("em_refined", "EM-R"), ("bleu1", "B-1"), ("bleu4", "B-4"),
            ("meteor", "METEOR"), ("rouge_l", "ROUGE-L"), ("cider", "CIDEr")]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}"


def format_table(metrics: dict) -> str:
    """The metrics as a readable table: overall, per task, per question type (and Stage 2 F1)."""
    show = [c for c in _COLUMNS if c[0] in ("n", "em", "em_refined")
            or metrics["overall"].get(c[0]) is not None]
    rows: list[tuple[str, dict]] = [("overall", metrics["overall"])]
    if len(metrics.get("by_task", {})) > 1:
        rows += [(f"task {t}", m) for t, m in metrics["by_task"].items()]
    rows += [(f"qtype {q}", m) for q, m in metrics.get("by_qtype", {}).items()]
    width = max(16, *(len(name) + 1 for name, _ in rows))
    lines = [f"{'':<{width}}" + "".join(f"{title:>9}" for _, title in show)]
    for name, m in rows:
        lines.append(f"{name:<{width}}" + "".join(f"{_cell(m.get(key)):>9}" for key, _ in show))
    rp = metrics.get("roomplan")
    if rp:
        lines.append("")
        lines.append(f"roomplan ({rp.get('n', '?')} rooms, parse rate {100 * rp.get('parse_rate', 0):.1f}%)")
        for kind in ("walls", "doors", "windows", "openings", "objects"):
            if isinstance(rp.get(kind), dict):
                f1 = {k: v for k, v in rp[kind].items() if k.startswith("f1@")}
                lines.append(f"  {kind:<10}" + "  ".join(f"{k} {100 * v:.1f}" for k, v in f1.items()))
    info = metrics.get("info") or {}
    if info.get("skipped"):
        lines.append(f"skipped {len(info['skipped'])} record(s) whose files could not be decoded")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqkit eval",
        description="Generate answers with a saved model, write predictions.jsonl + metrics.json and "
                    "print a table. Runs under torchrun unchanged (each rank evaluates its share).",
        epilog="examples:\n"
               "  vqkit eval --model runs/demo/final --data data/synth/val.jsonl\n"
               "  vqkit eval --model runs/demo/final --data data/synth/val.jsonl --blind\n"
               "  vqkit eval --predictions runs/demo/eval/predictions.jsonl   # re-score, no model\n"
               "  torchrun --nproc_per_node 8 -m vqkit.eval.run --model RUN/final --data val.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="saved model folder (RUN/final or a checkpoint's model folder)")
    parser.add_argument("--data", action="append", metavar="FILE",
                        help="records to evaluate (JSON/JSONL file or glob; repeatable); default: the "
                             "model config's data.val")
    parser.add_argument("--predictions", metavar="FILE", help="re-score an existing predictions.jsonl (no model)")
    parser.add_argument("--out", help="output folder (default: RUN/eval, or RUN/eval_blind with --blind, "
                                      "next to the model folder; with --predictions: that file's folder)")
    parser.add_argument("--blind", action="store_true", help="text-only baseline: no vision or geometry tokens")
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
    parser.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK when available), cpu, cuda:0, ...")
    return parser


def default_out_dir(model_dir: str | os.PathLike, blind: bool) -> Path:
    """RUN/eval (or RUN/eval_blind) for RUN/final; MODEL/eval otherwise."""
    model_dir = Path(model_dir)
    name = "eval_blind" if blind else "eval"
    return model_dir.parent / name if model_dir.name == "final" else model_dir / name


def _init_distributed() -> bool:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU); True if this call made it."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def _device(arg: str) -> torch.device:
    if arg != "auto":
        return torch.device(arg)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _model_config(model_dir: Path, overrides: list[str]) -> "Config":
    from vqkit.config import apply_overrides, config_from_dict, load_config, to_dict

    cfg_path = model_dir / "config.yaml"
    if not cfg_path.is_file():
        raise CheckpointError(f"{model_dir} is not a vqkit model folder: config.yaml is missing")
    cfg = load_config(cfg_path)
    return config_from_dict(apply_overrides(to_dict(cfg), overrides)) if overrides else cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    language = not args.no_language_metrics
    if args.predictions:
        if args.model or args.data:
            raise ConfigError("--predictions re-scores a file: do not combine it with --model/--data")
        metrics = rescore(args.predictions, language=language)
        out = Path(args.out) if args.out else Path(args.predictions).parent
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / METRICS_FILE, json.dumps(_json_safe(metrics), indent=2, allow_nan=False) + "\n")
        print(format_table(metrics))
        print(f"metrics written to {out / METRICS_FILE}")
        return 0
    if not args.model:
        raise ConfigError("--model DIR is required (or --predictions FILE to re-score)")
    for name in ("batch_size", "max_new_tokens", "limit"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "limit" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be >= {0 if name == 'limit' else 1}, got {value}")
    model_dir = Path(args.model)
    if not model_dir.is_dir():
        raise CheckpointError(f"model folder not found: {model_dir}")
    created = _init_distributed()
    try:
        rank, world = rank_and_world()
        cfg = _model_config(model_dir, args.overrides)
        from vqkit.models.vlm import load_model

        model = load_model(model_dir, device=_device(args.device), encoder_weights=args.encoder_weights)
        predictions, metrics = evaluate(model, cfg, args.data, blind=args.blind, batch_size=args.batch_size,
                                        max_new_tokens=args.max_new_tokens, limit=args.limit,
                                        language=language)
        if rank == 0:
            metrics["info"].update(model=str(model_dir), data=args.data or [s.path for s in cfg.data.val])
            out = Path(args.out) if args.out else default_out_dir(model_dir, args.blind)
            write_results(out, predictions, metrics)
            print(format_table(metrics))
            print(f"{len(predictions)} predictions and metrics written to {out}"
                  + (f" ({world} processes)" if world > 1 else ""))
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, None, "vqkit eval"))
