"""Teacher-forced answer loss on held-out data: training's periodic check (loss and EM), and the answer
loss with each question's own views vs. another room's views (how much the model reads its views).

The model's loss is the mean cross-entropy over a batch's label tokens, so these weight each batch by
its number of label tokens: the result is the mean over every label token of the data.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch

from vqkit.config.schema import SourceConfig
from vqkit.data.collate import Collator
from vqkit.data.dataset import build_dataloader, build_dataset
from vqkit.eval.generate import build_eval_dataset, evaluate, iter_batches, shard_indices, unwrap_model, zero3_active
from vqkit.utils import distributed

if TYPE_CHECKING:  # pragma: no cover
    from vqkit.config.schema import Config


def evaluate_loss_and_em(model, cfg: Config, tokenizer=None, *, accelerator=None, limit: int | None = None,
                         data: Any = None, batch_size: int | None = None) -> dict:
    """Training's periodic held-out check: answer loss (teacher forcing) and generated EM on the first
    ``limit`` records of ``data`` (default ``data.val``), sharded like :func:`evaluate`. The loss uses
    batches of ``batch_size`` (default ``train.batch_size_per_gpu``), generation ``eval.batch_size``.

    Returns ``{"loss", "em", "em_refined", "n"}`` on every rank (BLEU etc. are skipped: no Java in the
    training loop).
    """
    core = unwrap_model(model, accelerator)
    tokenizer = tokenizer if tokenizer is not None else core.tokenizer
    loss_batch = int(batch_size or cfg.train.batch_size_per_gpu)
    dataset = build_eval_dataset(cfg, data)
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    rank, world = distributed.rank_and_world()
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
            for _, batch in iter_batches(dataset, mine, collator, loss_batch, cfg.data.num_workers):
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
    dist = distributed.active()
    if dist is not None:
        both = torch.stack([loss_sum, tokens]).to(core.device)
        dist.all_reduce(both)
        loss_sum, tokens = both[0].cpu(), both[1].cpu()
    _, metrics = evaluate(model, cfg, dataset, limit=n, accelerator=accelerator, language=False,
                          progress=False, tokenizer=tokenizer)
    return {"loss": float(loss_sum / tokens) if tokens > 0 else float("nan"),
            "em": metrics["overall"]["em"], "em_refined": metrics["overall"]["em_refined"],
            "n": metrics["overall"]["n"]}


@torch.no_grad()
def answer_losses(model, cfg: Config, data_path: str, *, batch_size: int = 128, seed: int = 0) -> dict:
    """Mean answer loss (teacher forcing) on ``data_path`` with each question's own views, and with
    the views (features, images and geometry) of another sample of the same batch.

    The shuffle is a derangement within groups of samples that have the same number of views, so
    every question sees a different room and the vision-token count stays valid.
    """
    model.eval()
    loader = build_dataloader(cfg, "val", model.tokenizer, batch_size=batch_size, shuffle=False,
                              dataset=None if data_path is None else _val_dataset(cfg, data_path))
    generator = torch.Generator().manual_seed(seed)
    total = {"views": 0.0, "shuffled": 0.0}
    tokens = 0
    for batch in loader:
        n_answer = int((batch["labels"][:, 1:] != -100).sum())
        total["views"] += float(model(batch).loss) * n_answer
        total["shuffled"] += float(model(shuffle_views(batch, generator)).loss) * n_answer
        tokens += n_answer
    return {"loss_views": total["views"] / max(1, tokens), "loss_shuffled_views": total["shuffled"] / max(1, tokens)}


def _val_dataset(cfg: Config, data_path: str):
    data_cfg = copy.deepcopy(cfg.data)
    data_cfg.val = [SourceConfig(path=str(data_path))]
    dataset = build_dataset(data_cfg, "val", geometry_cfg=cfg.model.geometry, seed=cfg.train.seed)
    return dataset


def shuffle_views(batch: dict, generator: torch.Generator) -> dict:
    """A copy of ``batch`` whose visual inputs (and geometry) are permuted across samples.

    Samples only swap with samples of the same view count and geometry presence, so each prompt's
    vision-token count stays right; within such a group the permutation is a derangement.
    """
    view_counts = batch["view_mask"].sum(1)
    has_geometry = batch["geom_mask"].long() if batch.get("geom_mask") is not None else torch.zeros_like(view_counts)
    group = view_counts * 2 + has_geometry
    order = torch.arange(len(group))
    for key in group.unique():
        idx = (group == key).nonzero().flatten()
        if len(idx) > 1:
            shift = int(torch.randint(1, len(idx), (1,), generator=generator))
            order[idx] = idx.roll(shift)  # a roll by 1..n-1 moves every sample
    out = dict(batch)
    for key in ("images", "features", "view_mask", "geom_mask"):
        if batch.get(key) is not None:
            out[key] = batch[key][order]
    if batch.get("geometry") is not None:
        out["geometry"] = {k: (v[order] if torch.is_tensor(v) and v.shape[:1] == order.shape else v)
                           for k, v in batch["geometry"].items()}
    return out
