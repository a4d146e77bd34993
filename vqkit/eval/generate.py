"""``vqkit eval``'s engine: batched generation over a record file, sharded over ranks, gathered once.

Usable from Python (notebooks, training's periodic eval, tests) and from the command line::

    predictions, metrics = evaluate(model, cfg, "data/synth/val.jsonl", blind=False)
    write_results("runs/demo/eval", predictions, metrics)        # vqkit.eval.results
    print(format_table(metrics))

    vqkit eval --model runs/demo/final --data data/synth/val.jsonl [--out DIR] [--blind]

Distributed (``torchrun --nproc_per_node N -m vqkit eval ...`` or from a training loop under
accelerate/DeepSpeed): rank r generates the examples r, r + N, r + 2N, ... (no padding duplicates),
every rank's predictions are gathered with ``all_gather_object``, sorted back into file order and
checked to hold every example exactly once; rank 0 scores (the Java metrics run once) and broadcasts
the metrics, and only rank 0 writes files. Under ZeRO-3 every rank must run the same number of
forward passes, so ranks with one batch fewer run a dummy batch whose output is dropped and
``generate`` gets ``synced_gpus=True``.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from vqkit.data.collate import Collator
from vqkit.data.dataset import build_dataset
from vqkit.data.feature_cache import attach_feature_cache
from vqkit.errors import CheckpointError, ConfigError, DataError
from vqkit.eval.grounding import is_grounding_row
from vqkit.eval.missing_geometry import geometry_report
from vqkit.eval.results import compute_metrics, is_layout_row, prediction_row
from vqkit.utils import distributed

if TYPE_CHECKING:  # pragma: no cover
    from torch.utils.data import Dataset

    from vqkit.config.schema import Config

log = logging.getLogger("vqkit.eval")


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
    return distributed.zero3_partitioned(model)


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """The positions rank ``rank`` evaluates: rank, rank + W, ... (disjoint, union = all, no padding)."""
    return list(range(rank, n, world_size))


def build_eval_dataset(cfg: Config, data: Any = None) -> Dataset:
    """The dataset to evaluate: ``data`` may be a Dataset (used as is), a path or glob, a list of
    paths / ``SourceConfig``, or None for ``cfg.data.val``. Evaluation never drops views at random
    (the dataset is built in "val" mode: uniform view choice, no view dropout)."""
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
        try:
            attach_feature_cache(dataset, cfg)
        except (DataError, CheckpointError, ConfigError, OSError) as e:
            for part in getattr(dataset, "datasets", [dataset]):
                part.feature_cache = None
            log.info("evaluating from images: the feature cache %s does not cover this data (%s)",
                     cfg.data.feature_cache, e)
    return dataset


def iter_batches(dataset, indices: Sequence[int], collator, batch_size: int, num_workers: int
                 ) -> Iterator[tuple[list[int], dict]]:
    """(positions, collated batch) over ``indices`` in order."""
    from torch.utils.data import DataLoader

    chunks = [list(indices[i:i + batch_size]) for i in range(0, len(indices), batch_size)]
    loader = DataLoader(dataset, batch_sampler=chunks, collate_fn=collator, num_workers=num_workers)
    yield from zip(chunks, loader, strict=True)


def generation_kwargs(cfg: Config) -> dict:
    """transformers generate() options from ``cfg.eval`` (greedy by default)."""
    e = cfg.eval
    kwargs: dict[str, Any] = {"do_sample": bool(e.do_sample)}
    if e.do_sample:
        kwargs.update(temperature=e.temperature, top_p=e.top_p)
    if e.num_beams > 1:
        kwargs["num_beams"] = e.num_beams
    return kwargs


def unwrap_model(model, accelerator=None):
    """The VQModel inside accelerate / DDP / DeepSpeed wrappers."""
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    while hasattr(model, "module") and not hasattr(model, "generate"):
        model = model.module  # DDP / DeepSpeed engine
    return model


def evaluate(model, cfg: Config | None = None, data: Any = None, *, blind: bool = False,
             batch_size: int | None = None, max_new_tokens: int | None = None, limit: int | None = None,
             accelerator=None, language: bool = True, progress: bool = True, tokenizer=None,
             sync_ranks: bool | None = None, on_note: Callable[[str, bool], None] | None = None,
             geometry_fallback: str = "") -> tuple[list[dict], dict]:
    """Generate an answer for every example and score them.

    Args:
        model: a :class:`vqkit.models.vqmodel.VQModel` (or a DDP/DeepSpeed/accelerate wrapper of one).
        cfg: the config (default: the model's own); ``cfg.eval`` holds the generation options.
        data: see :func:`build_eval_dataset` (a path, sources, a Dataset, or None = ``data.val``).
        blind: drop the vision block (vision and geometry tokens): the model with its views removed.
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
        on_note, geometry_fallback: what is said about records without camera geometry (:func:`_report_geometry`).

    Returns ``(predictions, metrics)`` on every rank: predictions in file order, one dict per example (index,
    id, task, qtype, question, prediction, answers, scene_id, images, blind, and situation / gold roomplan /
    a conversation's assistant ``turn`` when present); metrics as :func:`compute_metrics` plus ``info``.
    """
    from tqdm.auto import tqdm

    core = unwrap_model(model, accelerator)
    cfg = cfg if cfg is not None else core.config
    tokenizer = tokenizer if tokenizer is not None else core.tokenizer
    batch_size = int(batch_size or cfg.eval.batch_size)
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    rank, world = distributed.rank_and_world()
    started = time.time()

    dataset = build_eval_dataset(cfg, data)
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n == 0:
        raise DataError("nothing to evaluate: the dataset is empty (or --limit 0)")
    mine = shard_indices(n, rank, world)
    blind = blind or cfg.data.blind  # a model trained blind is evaluated blind
    report = _report_geometry(cfg, dataset, n, blind, rank == 0, on_note, geometry_fallback)
    collator = Collator(tokenizer, cfg.model, cfg.data, mode="generate", blind=blind)
    gen_kwargs = generation_kwargs(cfg)
    zero3 = world > 1 and (zero3_active(core, accelerator) if sync_ranks is None else sync_ranks)
    if zero3:
        gen_kwargs["synced_gpus"] = True
    if cfg.eval.do_sample:
        torch.manual_seed(cfg.train.seed + rank)  # sampling is reproducible per rank and seed

    # Every rank runs ceil(ceil(n / world) / batch_size) batches under ZeRO-3 (see module docstring).
    n_steps = math.ceil(math.ceil(n / world) / batch_size)
    bar = tqdm(total=n_steps, desc="eval" + (" (trained blind)" if cfg.data.blind else " (views removed)" * blind),
               unit="batch", disable=not progress or rank != 0, dynamic_ncols=True)
    was_training = core.training
    core.eval()
    try:
        rows, skipped = _generate_shard(core, cfg, dataset, mine, collator, batch_size, max_new_tokens, gen_kwargs,
                                        blind, bar, n_steps if zero3 else 0)
    finally:
        bar.close()
        core.train(was_training)
    rows, skipped = _gather_every_example(rows, skipped, n)

    metrics = None
    if rank == 0:
        metrics = compute_metrics(rows, language=language)
        metrics["info"] = {
            "blind": blind, "examples": n, "skipped": [s["id"] for s in skipped], "world_size": world,
            "batch_size": batch_size, "max_new_tokens": max_new_tokens,
            "generation": {k: v for k, v in gen_kwargs.items() if k != "synced_gpus"}, "synced_ranks": zero3,
            "seconds": round(time.time() - started, 2),
            **({"geometry": report.as_info()} if report is not None else {}),
        }

    return rows, distributed.broadcast_object(metrics)


def _report_geometry(cfg, dataset, n: int, blind: bool, main: bool, on_note, fallback: str):
    """What is done about the records without camera geometry (:func:`geometry_report`), said on the main
    process before generating: ``on_note(text, is_warning)``, or None to log warnings only. ``fallback``:
    why a config asking for ``model.geometry.source`` auto was loaded with ``records`` (no heads)."""
    report = geometry_report(cfg, dataset, n, blind=blind, source=cfg.model.geometry.source,
                             why_not_predicted=fallback)
    if main and report is not None and report.text:
        if on_note is not None:
            on_note(report.text, report.warning)
        elif report.warning:
            log.warning("%s", report.text)
    return report


def generation_budget(cfg: Config, metas: Sequence[dict]) -> int:
    """New tokens for a batch: the longest its records need (a layout, a box line, or a short answer)."""
    budgets = [cfg.eval.roomplan_max_new_tokens if is_layout_row(m)
               else cfg.eval.grounding_max_new_tokens if is_grounding_row(m) else cfg.eval.max_new_tokens
               for m in metas]
    return max(budgets, default=cfg.eval.max_new_tokens)


def _generate_shard(core, cfg, dataset, positions: list[int], collator, batch_size: int, max_new_tokens, gen_kwargs,
                    blind: bool, bar, sync_steps: int) -> tuple[list[dict], list[dict]]:
    """Prediction rows of this rank's ``positions`` and the positions whose record was replaced. With
    ``sync_steps`` (ZeRO-3), dummy batches pad this rank's generate calls to that many."""
    rows: list[dict] = []
    skipped: list[dict] = []
    steps = 0
    for chunk, batch in iter_batches(dataset, positions, collator, batch_size, cfg.data.num_workers):
        texts = core.generate(batch, max_new_tokens=max_new_tokens or generation_budget(cfg, batch["meta"]),
                              **gen_kwargs)
        for pos, meta, text in zip(chunk, batch["meta"], texts, strict=True):
            if meta.get("replaced_from") is not None:
                # on_error=skip replaced an undecodable record: its answer is not this record's
                skipped.append({"index": pos, "id": meta["replaced_from"]})
            else:
                rows.append(prediction_row(pos, meta, text, blind, box_frame=cfg.data.box_frame))
        steps += 1
        bar.update(1)
    if steps < sync_steps:
        dummy = collator([dataset[positions[0] if positions else 0]])
        for _ in range(steps, sync_steps):
            core.generate(dummy, max_new_tokens=max_new_tokens or cfg.eval.max_new_tokens, **gen_kwargs)
            bar.update(1)
    return rows, skipped


def _gather_every_example(rows: list[dict], skipped: list[dict], n: int) -> tuple[list[dict], list[dict]]:
    """Every rank's rows in file order, checked to cover each of the ``n`` examples exactly once."""
    parts = distributed.all_gather_objects((rows, skipped))
    rows = sorted((r for p in parts for r in p[0]), key=lambda r: r["index"])
    skipped = [s for p in parts for s in p[1]]
    seen = sorted([r["index"] for r in rows] + [s["index"] for s in skipped])
    if seen != list(range(n)):
        raise RuntimeError(f"distributed eval lost or duplicated examples: {len(seen)} results for {n} "
                           f"examples ({len(set(seen))} distinct)")
    ids = [(r["id"], r.get("turn")) for r in rows]
    if len(set(ids)) != len(ids):
        warnings.warn(f"{len(ids) - len(set(ids))} duplicate record ids in the evaluated data", stacklevel=3)
    return rows, skipped
