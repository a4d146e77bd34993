"""One optimizer step: the same code for ``vqkit train``, ``vqkit bench`` and ``vqkit plan --probe``.

:func:`train_step` takes the step's micro-batches (``train.grad_accum`` of them), runs forward and
backward on each, clips, and steps the optimizer. With an ``accelerate.Accelerator`` (training) the
backward, gradient synchronisation and accumulation are accelerate's (DDP or DeepSpeed); without one
(bench, plan) it is plain PyTorch on one device.

A non-finite loss skips the optimizer step on every rank together (the decision is all-reduced, so no
collective is left waiting); the caller counts skipped steps.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import torch

from vqkit.utils.runtime import move_to_device


@dataclass
class StepResult:
    loss: float
    """Mean over micro-batches of each micro-batch's mean answer loss (what metrics.jsonl logs)."""
    tokens: int
    """Label tokens in this rank's micro-batches."""
    skipped: bool
    """A loss was not finite on some rank: no update was made anywhere."""


def label_tokens(batch: dict) -> int:
    labels = batch.get("labels")
    return int((labels != -100).sum()) if labels is not None else 0


def train_step(model, optimizer, micro_batches: Sequence[dict], *, accelerator=None, max_grad_norm: float = 0.0,
               autocast=None) -> StepResult:
    """Forward and backward over ``micro_batches``, then one optimizer step (see the module docstring).

    ``accelerator``: the training run's ``Accelerator`` (its ``gradient_accumulation_steps`` must equal
    ``len(micro_batches)``); None for a plain single-device step. ``autocast``: a context for the forward
    pass when no accelerator manages precision (default none).
    """
    if accelerator is not None:
        return _accelerated_step(model, optimizer, micro_batches, accelerator, max_grad_norm)
    autocast = autocast if autocast is not None else contextlib.nullcontext()
    device = next(p.device for p in model.parameters())
    n = len(micro_batches)
    total, tokens, bad = 0.0, 0, False
    for batch in micro_batches:
        batch = move_to_device(batch, device)
        with autocast:
            loss = model(batch).loss
        if not torch.isfinite(loss.detach()):
            bad = True
            continue
        (loss / n if n > 1 else loss).backward()
        total += loss.detach().float().item() / n
        tokens += label_tokens(batch)
    if not bad:
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss=total, tokens=tokens, skipped=bad)


def _accelerated_step(model, optimizer, micro_batches, accelerator, max_grad_norm) -> StepResult:
    using_deepspeed = getattr(accelerator.state, "deepspeed_plugin", None) is not None
    n = len(micro_batches)
    total, tokens, bad = 0.0, 0, False
    for batch in micro_batches:
        batch = move_to_device(batch, accelerator.device)
        with accelerator.accumulate(model):
            loss = model(batch).loss
            nonfinite = torch.tensor(0.0 if torch.isfinite(loss.detach()) else 1.0, device=accelerator.device)
            if accelerator.reduce(nonfinite, reduction="sum").item() > 0:
                # Every rank skips together, so no collective is left waiting.
                bad = True
                continue
            accelerator.backward(loss)
            if accelerator.sync_gradients and not bad and max_grad_norm > 0 and not using_deepspeed:
                accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
            if not bad:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        total += loss.detach().float().item() / n
        tokens += label_tokens(batch)
    if bad:
        optimizer.zero_grad(set_to_none=True)
        if using_deepspeed:
            model.zero_grad()
    return StepResult(loss=total, tokens=tokens, skipped=bad)
