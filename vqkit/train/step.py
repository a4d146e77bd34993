"""One optimizer step: the same code for ``vqkit train``, ``vqkit bench`` and ``vqkit plan --probe``.

:func:`train_step` takes the step's micro-batches (``train.grad_accum`` of them), runs forward and
backward on each, clips, and steps the optimizer. With an ``accelerate.Accelerator`` (training) the
backward, gradient synchronisation and accumulation are accelerate's (DDP or DeepSpeed); without one
(bench, plan) it is plain PyTorch on one device.

The loss is weighted per label token, as one big batch would be: the step's loss is the sum of the
token losses of every micro-batch on every rank divided by the number of label tokens in the whole
global batch. (Another recipe counts other units: ``count`` and ``loss_of`` say what a micro-batch
holds and where its mean loss is; ``vqkit pretrain-encoder`` weighs by samples.)

Two losses, not to be confused:
- the per-micro-batch mean: ``VQModel.forward(batch).loss``, the mean over that micro-batch's label
  tokens (what evaluation reads; :attr:`StepResult.micro_batch_losses` keeps them for this rank);
- the step's loss, :attr:`StepResult.loss` (what ``metrics.jsonl`` logs and what is differentiated): a
  micro-batch of ``n`` label tokens in a global batch of ``N`` contributes its mean times ``n / N``.

Averaging the micro-batch means instead would weigh a token of a short answer more than one of a long
layout. ``N`` is counted before the forward passes, from the labels, with one all-reduce per step.

A non-finite loss skips the whole optimizer step on every rank: the losses are summed over ranks once
per step (the logged loss and the check in one all-reduce), after the last forward pass and before
the last backward, so no collective is left waiting. The caller counts skipped steps.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from vqkit.data.collate import IGNORE_INDEX
from vqkit.errors import DataError, VQKitError
from vqkit.train.accelerator import uses_deepspeed
from vqkit.utils.runtime import move_to_device


@dataclass
class StepResult:
    loss: float
    """The step's loss: the summed token loss of every micro-batch on every rank / ``global_tokens``
    (what metrics.jsonl logs). Not finite when the step was skipped."""
    tokens: int
    """Label tokens in this rank's micro-batches."""
    global_tokens: int
    """Label tokens in the whole global batch: every micro-batch of every rank."""
    skipped: bool
    """A loss was not finite on some rank: no update was made anywhere."""
    global_samples: int = 0
    """Samples in the whole global batch (with ``train.tokens_per_batch`` a step's count varies)."""
    micro_batch_losses: list[float] = field(default_factory=list)
    """This rank's micro-batches' own means (``loss_of(model output)``, by default the mean over the
    micro-batch's label tokens), unweighted, in order; NaN for a micro-batch without any. Not the
    step's loss: their plain average weighs a token of a short answer more than one of a long one."""


def label_tokens(batch: dict) -> int:
    """The label tokens of a training batch: the targets its loss averages over (``labels[:, 1:]``
    that are not ignored; position p predicts token p + 1, so the first label never is one)."""
    labels = batch.get("labels")
    if labels is None:
        raise DataError("a training micro-batch has no labels (build the Collator in train mode)")
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def batch_samples(batch: dict) -> int:
    """The samples of a micro-batch (its view sets: packed or not, each sample has one)."""
    return int(batch["view_mask"].shape[0])


def _loss_attribute(out) -> torch.Tensor:
    return out.loss


def train_step(model, optimizer, micro_batches: Sequence[dict], *, accelerator=None, max_grad_norm: float = 0.0,
               autocast=None, count: Callable[[dict], int] = label_tokens,
               loss_of: Callable[[object], torch.Tensor] = _loss_attribute) -> StepResult:
    """Forward and backward over ``micro_batches``, then one optimizer step (see the module docstring).

    ``accelerator``: the training run's ``Accelerator`` (its accumulation steps must equal
    ``len(micro_batches)``); None for a plain single-device step. ``autocast``: a context for the forward
    pass when no accelerator manages precision (default none). ``count(batch)``: the units the
    micro-batch's loss is a mean over (default: its label tokens); ``loss_of(model output)``: that mean
    (default ``output.loss``).

    Returns a :class:`StepResult`: ``loss`` is the step's loss weighted per label token over the whole
    global batch (logged, differentiated); ``micro_batch_losses`` are this rank's per-micro-batch means.
    """
    if not micro_batches:
        raise ValueError("train_step needs at least one micro-batch")
    counts = [count(batch) for batch in micro_batches]
    samples = sum(batch_samples(batch) for batch in micro_batches)
    if accelerator is not None:
        return _accelerated_step(model, optimizer, micro_batches, counts, samples, accelerator, max_grad_norm,
                                 loss_of)
    global_tokens = _check_tokens(sum(counts))
    autocast = autocast if autocast is not None else contextlib.nullcontext()
    device = next(p.device for p in model.parameters())
    loss = torch.zeros((), device=device)
    means = []
    for batch, n in zip(micro_batches, counts, strict=True):
        with autocast:
            out = model(move_to_device(batch, device))
        mean = loss_of(out)
        means.append(mean.detach().float())
        share = _share_of_step_loss(mean, n, global_tokens)
        share.backward()
        loss += share.detach().float()
    step_loss = float(loss)
    skipped = not math.isfinite(step_loss)
    if not skipped:
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss=step_loss, tokens=sum(counts), global_tokens=global_tokens, skipped=skipped,
                      global_samples=samples, micro_batch_losses=_means(means, counts))


def _check_tokens(global_tokens: int) -> int:
    if global_tokens <= 0:
        raise DataError("no micro-batch of this step has a label token (every label is -100): the loss is undefined")
    return global_tokens


def _means(means: list[torch.Tensor], counts: list[int]) -> list[float]:
    """The micro-batch means as floats (one device-to-host copy); NaN where there was nothing to average."""
    values = torch.stack(means).cpu().tolist()
    return [value if n > 0 else math.nan for value, n in zip(values, counts, strict=True)]


def _share_of_step_loss(loss: torch.Tensor, count: int, global_tokens: int) -> torch.Tensor:
    """This micro-batch's part of the step's loss: its mean token loss x ``count / global_tokens``
    (its summed token loss / the global count). A micro-batch without label tokens has no mean (0/0):
    it contributes a zero that is still part of the graph, so its backward reaches every parameter
    (DDP and ZeRO expect the same parameters in every backward)."""
    if count == 0:
        return torch.nan_to_num(loss.float()) * 0.0
    return loss.float() * (count / global_tokens)


def _accelerated_step(model, optimizer, micro_batches, counts, samples, accelerator, max_grad_norm,
                      loss_of) -> StepResult:
    """Long because the order of the collectives is the point: the token (and sample) count before the first
    forward, the loss sum after the last forward and before the last backward (under DeepSpeed that
    backward also steps the engine), the optimizer step after it.

    Each micro-batch's share is multiplied by ``accumulation steps x ranks`` before
    ``accelerator.backward``: accelerate (DDP) and DeepSpeed's engine divide the loss by the
    accumulation steps, and DDP and DeepSpeed average the gradients over ranks, so the gradient that
    reaches the optimizer is exactly that of the global token-weighted loss.
    """
    engine = accelerator.deepspeed_engine_wrapped.engine if uses_deepspeed(accelerator) else None
    accumulation = (engine.gradient_accumulation_steps() if engine is not None
                    else accelerator.gradient_accumulation_steps)
    if len(micro_batches) != accumulation:
        raise VQKitError(f"train_step got {len(micro_batches)} micro-batches but the accelerator accumulates "
                         f"{accumulation} (train.accumulation(world size))")
    local_tokens = sum(counts)
    totals = accelerator.reduce(torch.tensor([local_tokens, samples], dtype=torch.long, device=accelerator.device),
                                reduction="sum").tolist()
    global_tokens, global_samples = _check_tokens(int(totals[0])), int(totals[1])
    undo_averaging = accumulation * accelerator.num_processes
    loss = torch.zeros((), device=accelerator.device)
    last = len(micro_batches) - 1
    skipped = False
    means = []
    for i, (batch, count) in enumerate(zip(micro_batches, counts, strict=True)):
        with accelerator.accumulate(model):
            if accelerator.sync_gradients != (i == last):
                raise VQKitError("accelerate's gradient accumulation is out of step with train_step's micro-batches")
            mean = loss_of(model(move_to_device(batch, accelerator.device)))
            means.append(mean.detach().float())
            share = _share_of_step_loss(mean, count, global_tokens)
            loss = loss + share.detach()
            if i == last:
                loss = accelerator.reduce(loss, reduction="sum")
                skipped = not bool(torch.isfinite(loss))
                if skipped and engine is not None:
                    # DeepSpeed steps inside this backward. With non-finite gradients on every rank the
                    # engine drops the step itself, as for an fp16 overflow: it clears what it accumulated
                    # and counts the step (global_steps) as a skipped one (skipped_steps).
                    share = share * float("nan")
            # Every rank runs every backward, skipped step or not, so DDP's and ZeRO's gradient
            # collectives stay matched.
            accelerator.backward(share * undo_averaging)
            if i == last and not skipped:
                if max_grad_norm > 0 and engine is None:
                    accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()  # a no-op under DeepSpeed (its engine stepped in backward)
            optimizer.zero_grad(set_to_none=True)  # acts at the last micro-batch only (accelerate)
    if skipped and engine is not None and engine.was_step_applied():
        raise VQKitError("DeepSpeed applied a step whose gradients are not finite (its overflow check is off: "
                         "keep bf16.check_grad_overflow and zero_optimization.compute_grad_norm at their defaults); "
                         "resume from the last checkpoint")
    return StepResult(loss=float(loss), tokens=local_tokens, global_tokens=global_tokens, skipped=skipped,
                      global_samples=global_samples, micro_batch_losses=_means(means, counts))
