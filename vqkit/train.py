"""Training: one function, ``run(cfg)``, for notebooks, the CLI and every launcher.

``vqkit-train``, ``vqkit train`` and ``python -m vqkit.train`` only parse arguments and call
:func:`run`. The same command works in one process, under ``torchrun``, ``accelerate launch`` and
the ``deepspeed`` launcher: accelerate reads the process group from the environment.

Recipe (torchtune style): setup (accelerator, run dir, model, optimizer, data) -> train loop
(accumulate, clip, step, log, checkpoint, periodic eval) -> cleanup (final model folder).

Reliability:
- checkpoints every ``train.save_every_steps``, written atomically (vqkit.checkpoint), with the
  data position and RNG states, so ``--resume auto`` continues with the same losses;
- a non-finite loss skips its optimizer step with a warning (the decision is taken on all ranks
  together), and ``train.max_nonfinite_steps`` in a row abort the run;
- Ctrl-C (SIGINT) or SIGTERM (Slurm's pre-emption) saves a checkpoint before exiting;
- an existing run directory is never overwritten silently.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch

from vqkit.cli import add_overrides_argument
from vqkit.config import Config, ConfigError, load_config, save_config
from vqkit.errors import VQKitError

# ----------------------------------------------------------------------------------------------
# Setup helpers
# ----------------------------------------------------------------------------------------------


def resolve_mixed_precision(train_cfg) -> str:
    """'auto' -> bf16 on a CUDA GPU with bf16 support, else no mixed precision (CPU: fp32)."""
    if train_cfg.mixed_precision != "auto":
        return train_cfg.mixed_precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def fill_deepspeed_config(path: str | Path, cfg: Config, world_size: int) -> dict:
    """Read a DeepSpeed JSON and replace every "auto" with the value from the vqkit config,
    so batch size, accumulation, clipping and precision are defined in one place."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"train.deepspeed: {path} not found (see configs/deepspeed/)")
    try:
        ds = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e
    t = cfg.train
    precision = resolve_mixed_precision(t)
    values = {
        "train_micro_batch_size_per_gpu": t.batch_size_per_gpu,
        "gradient_accumulation_steps": t.grad_accum,
        "train_batch_size": t.batch_size_per_gpu * t.grad_accum * world_size,
        "gradient_clipping": t.max_grad_norm if t.max_grad_norm > 0 else 0.0,
    }
    for key, value in values.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    for key, on in (("bf16", precision == "bf16"), ("fp16", precision == "fp16")):
        section = ds.setdefault(key, {})
        if section.get("enabled", "auto") == "auto":
            section["enabled"] = on
    zero = ds.get("zero_optimization", {})
    hidden = _llm_hidden_size(cfg)
    auto_zero = {"reduce_bucket_size": hidden * hidden, "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
                 "stage3_param_persistence_threshold": 10 * hidden}
    for key, value in auto_zero.items():
        if zero.get(key) == "auto":
            zero[key] = value
    leftover = [k for k, v in _walk(ds) if v == "auto"]
    if leftover:
        raise ConfigError(f"{path}: no vqkit value for 'auto' at {', '.join(leftover)}")
    return ds


def _walk(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


def _llm_hidden_size(cfg: Config) -> int:
    return int(cfg.model.llm.config_overrides.get("hidden_size", 2560))


def make_accelerator(cfg: Config):
    """An accelerate.Accelerator for this config: DDP or DeepSpeed, gloo when there is no GPU."""
    from accelerate import Accelerator, DeepSpeedPlugin
    from accelerate.utils import InitProcessGroupKwargs

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    handlers = []
    if world_size > 1:
        # Without a GPU, NCCL is unavailable: gloo lets 2-process DDP / ZeRO-3 runs work on CPU.
        timeout = timedelta(minutes=int(os.environ.get("VQKIT_DIST_TIMEOUT_MIN", "30")))
        handlers.append(InitProcessGroupKwargs(backend="nccl" if torch.cuda.is_available() else "gloo",
                                               timeout=timeout))
    plugin = None
    if cfg.train.deepspeed:
        plugin = DeepSpeedPlugin(hf_ds_config=fill_deepspeed_config(cfg.train.deepspeed, cfg, world_size))
    # Without cpu=True accelerate treats a multi-process CPU job as single-process (barriers become
    # no-ops); DeepSpeed brings its own CPU accelerator.
    return Accelerator(cpu=not torch.cuda.is_available() and plugin is None,
                       gradient_accumulation_steps=cfg.train.grad_accum,
                       mixed_precision=resolve_mixed_precision(cfg.train),
                       deepspeed_plugin=plugin, kwargs_handlers=handlers)


def cosine_schedule(optimizer, train_cfg):
    """Linear warmup to the base LRs, then cosine decay to base * min_lr_ratio at max_steps."""
    warmup, total, floor = train_cfg.warmup_steps, train_cfg.max_steps, train_cfg.min_lr_ratio

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def prepare_run_dir(cfg: Config, resume: str | None, is_main: bool) -> Path:
    """Create the run directory; refuse to overwrite another run unless told to."""
    run_dir = Path(cfg.train.output_dir)
    if is_main:
        existing = run_dir.is_dir() and any((run_dir / name).exists() for name in
                                            ("config.yaml", "metrics.jsonl", "checkpoints", "final"))
        if existing and resume is None and not cfg.train.overwrite:
            raise VQKitError(f"run directory {run_dir} already holds a run; continue it with --resume auto, "
                             f"choose another --output-dir, or --set train.overwrite=true to start over")
        if existing and resume is None and cfg.train.overwrite:
            import shutil

            for name in ("metrics.jsonl", "tb", "checkpoints", "final", "eval"):
                target = run_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def set_seed(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def move_to_device(batch, device):
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and torch.is_tensor(batch[0]):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


# ----------------------------------------------------------------------------------------------
# Logging
# ----------------------------------------------------------------------------------------------


class RunLogger:
    """Console lines, metrics.jsonl and TensorBoard, written by the main process only."""

    def __init__(self, run_dir: Path, enabled: bool, progress_bar):
        self.enabled = enabled
        self.bar = progress_bar
        self.writer = None
        self.metrics_file = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"))
            self.metrics_file = open(run_dir / "metrics.jsonl", "a", buffering=1)

    def print(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        self.metrics_file.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key.replace("eval_", "eval/") if key.startswith("eval_") else f"train/{key}",
                                       value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.metrics_file is not None:
            self.metrics_file.close()


def _fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


# ----------------------------------------------------------------------------------------------
# The training function
# ----------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    run_dir: Path
    final_dir: Path | None
    steps: int
    last_loss: float | None
    minutes: float
    interrupted: bool = False


class _StopRequest:
    """Turns SIGINT / SIGTERM into a flag checked between steps, so a checkpoint can be saved."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        if hasattr(signal, "SIGTERM") and _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def run(cfg: Config, *, resume: str | None = None, progress: bool | None = None) -> TrainResult:
    """Train ``cfg``; returns where the run went. Used by notebook 03 and ``vqkit-train``.

    resume: None (new run), "auto" (newest complete checkpoint of cfg.train.output_dir, or a new
    run when there is none) or a checkpoint folder.
    """
    from tqdm.auto import tqdm

    from vqkit import checkpoint as ckpt
    from vqkit.data.dataset import build_dataloader
    from vqkit.data.tokenizer import load_tokenizer
    from vqkit.models.vlm import build_model

    started = time.time()
    cfg = copy.deepcopy(cfg)
    accelerator = make_accelerator(cfg)
    is_main = accelerator.is_main_process
    run_dir = prepare_run_dir(cfg, resume, is_main)
    accelerator.wait_for_everyone()
    if is_main:
        save_config(cfg, run_dir / "config.yaml")

    # Same seed on every rank: identical model init; data shards differ by rank in the sampler.
    set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model.llm)
    model = build_model(cfg, tokenizer=tokenizer)
    model.assert_frozen()
    optimizer = torch.optim.AdamW(model.param_groups(cfg.train), lr=cfg.train.lr, betas=tuple(cfg.train.betas))
    scheduler = cosine_schedule(optimizer, cfg.train)
    # The scheduler stays ours: accelerate would step it once per process per call.
    model, optimizer = accelerator.prepare(model, optimizer)
    core = accelerator.unwrap_model(model)
    using_deepspeed = getattr(accelerator.state, "deepspeed_plugin", None) is not None

    # Resume.
    start_step, epoch, batch_in_epoch, nonfinite_run = 0, 0, 0, 0
    resume_from = ckpt.resolve_resume(resume, run_dir)
    if resume_from is not None:
        state = ckpt.load_checkpoint(resume_from, accelerator=accelerator, model=model, optimizer=optimizer,
                                     scheduler=scheduler, load_trainable=core.load_trainable_state_dict)
        start_step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        nonfinite_run = state.get("nonfinite_in_a_row", 0)

    bar = tqdm(total=cfg.train.max_steps, initial=start_step, desc="train", dynamic_ncols=True,
               disable=not is_main or progress is False, mininterval=1.0)
    logger = RunLogger(run_dir, is_main, bar if not bar.disable else None)
    logger.print(f"vqkit train: run {run_dir} | {accelerator.num_processes} process(es) on {accelerator.device}"
                 f"{' with DeepSpeed ZeRO-' + str(accelerator.state.deepspeed_plugin.zero_stage) if using_deepspeed else ''}"
                 f" | mixed precision {resolve_mixed_precision(cfg.train)}")
    logger.print(core.parameter_table())
    if resume_from is not None:
        logger.print(f"resumed from {resume_from} at step {start_step}")

    train_dataset = None  # built (and validated) once; each epoch only reshuffles its sampler

    def make_loader(ep: int):
        nonlocal train_dataset
        loader = build_dataloader(cfg, "train", tokenizer, batch_size=cfg.train.batch_size_per_gpu, shuffle=True,
                                  rank=accelerator.process_index, world_size=accelerator.num_processes,
                                  epoch=ep, drop_last=True, blind=cfg.data.blind, dataset=train_dataset)
        train_dataset = loader.dataset
        return loader

    def batches():
        nonlocal epoch, batch_in_epoch
        while True:
            loader = make_loader(epoch)
            if len(loader) == 0:
                raise VQKitError("the training set is smaller than one batch per process; lower "
                                 "train.batch_size_per_gpu or add data")
            if batch_in_epoch:
                from accelerate.data_loader import skip_first_batches

                loader = skip_first_batches(loader, batch_in_epoch)
            for batch in loader:
                batch_in_epoch += 1
                yield batch
            epoch, batch_in_epoch = epoch + 1, 0

    stream = batches()
    samples_per_step = cfg.train.batch_size_per_gpu * cfg.train.grad_accum * accelerator.num_processes
    step, last_loss, window = start_step, None, {"loss": 0.0, "n": 0, "tokens": 0, "t0": time.time()}
    nonfinite_total, interrupted = 0, False

    def trainer_state() -> dict:
        return {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "nonfinite_in_a_row": nonfinite_run,
                "world_size": accelerator.num_processes, "samples_seen": step * samples_per_step}

    def save(at_step: int) -> Path:
        trainable = _gather_trainable(accelerator, model, core, using_deepspeed)
        return ckpt.save_checkpoint(run_dir, at_step, accelerator=accelerator, model=model, optimizer=optimizer,
                                    scheduler=scheduler, trainable_state=trainable, trainer_state=trainer_state(),
                                    keep=cfg.train.keep_checkpoints)

    model.train()
    with _StopRequest() as stop:
        try:
            while step < cfg.train.max_steps:
                step_bad, step_loss, step_tokens = False, 0.0, 0
                for _ in range(cfg.train.grad_accum):
                    batch = move_to_device(next(stream), accelerator.device)
                    with accelerator.accumulate(model):
                        loss = model(batch).loss
                        bad = torch.tensor(0.0 if torch.isfinite(loss.detach()) else 1.0, device=accelerator.device)
                        if accelerator.reduce(bad, reduction="sum").item() > 0:
                            # Every rank skips together, so no collective is left waiting.
                            step_bad = True
                            continue
                        accelerator.backward(loss)
                        if accelerator.sync_gradients and not step_bad and cfg.train.max_grad_norm > 0 and not using_deepspeed:
                            accelerator.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
                        if not step_bad:
                            optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                    step_loss += loss.detach().float().item() / cfg.train.grad_accum
                    step_tokens += int((batch["labels"] != -100).sum()) if batch.get("labels") is not None else 0
                if step_bad:
                    optimizer.zero_grad(set_to_none=True)
                    if using_deepspeed:
                        model.zero_grad()
                    nonfinite_run += 1
                    nonfinite_total += 1
                    logger.print(f"warning: non-finite loss at step {step + 1}; step skipped "
                                 f"({nonfinite_run} in a row, limit {cfg.train.max_nonfinite_steps})")
                    if nonfinite_run >= cfg.train.max_nonfinite_steps:
                        raise VQKitError(f"{nonfinite_run} non-finite losses in a row at step {step + 1}; stopping. "
                                         f"Lower train.lr / train.proj_lr, check the data, or resume from "
                                         f"{ckpt.latest_checkpoint(run_dir)}")
                    step += 1
                    bar.update(1)
                    continue
                nonfinite_run = 0
                scheduler.step()
                step += 1
                last_loss = step_loss
                window["loss"] += step_loss
                window["n"] += 1
                window["tokens"] += step_tokens
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.4f}", refresh=False)

                if step % cfg.train.log_every_steps == 0 or step == cfg.train.max_steps:
                    elapsed = time.time() - window["t0"]
                    steps_done = window["n"]
                    record = {"step": step, "loss": window["loss"] / max(1, steps_done),
                              "lr": scheduler.get_last_lr()[0], "proj_lr": scheduler.get_last_lr()[-1],
                              "samples_per_s": steps_done * samples_per_step / max(elapsed, 1e-9),
                              "tokens_per_s": window["tokens"] * accelerator.num_processes / max(elapsed, 1e-9),
                              "epoch": epoch, "elapsed_s": time.time() - started}
                    eta = (cfg.train.max_steps - step) * elapsed / max(1, steps_done)
                    record["eta_s"] = eta
                    logger.log(record)
                    logger.print(f"step {step}/{cfg.train.max_steps} | loss {record['loss']:.4f} | lr {record['lr']:.2e}"
                                 f" | {record['samples_per_s']:.1f} samples/s | {record['tokens_per_s']:.0f} tok/s"
                                 f" | elapsed {_fmt_time(record['elapsed_s'])} | eta {_fmt_time(eta)}")
                    window = {"loss": 0.0, "n": 0, "tokens": 0, "t0": time.time()}

                if cfg.train.eval_every_steps and step % cfg.train.eval_every_steps == 0:
                    _periodic_eval(cfg, model, core, tokenizer, accelerator, logger, step)
                    model.train()
                if cfg.train.save_every_steps and step % cfg.train.save_every_steps == 0 and step < cfg.train.max_steps:
                    path = save(step)
                    logger.print(f"checkpoint {path}")
                if stop.requested:
                    interrupted = True
                    break
        except KeyboardInterrupt:
            interrupted = True

    final_dir = None
    if interrupted:
        path = save(step)
        logger.print(f"interrupted: checkpoint {path}; continue with --resume auto")
    else:
        if cfg.train.save_every_steps:
            save(step)
        final_dir = run_dir / "final"
        trainable = _gather_trainable(accelerator, model, core, using_deepspeed)
        if is_main:
            core.save_pretrained(final_dir, state_dict=trainable)
            logger.print(f"model saved to {final_dir} (load with vqkit.load_model or vqkit eval --model)")
    accelerator.wait_for_everyone()
    logger.close()
    bar.close()
    result = TrainResult(run_dir=run_dir, final_dir=final_dir, steps=step, last_loss=last_loss,
                         minutes=(time.time() - started) / 60, interrupted=interrupted)
    accelerator.end_training()
    return result


def _gather_trainable(accelerator, model, core, using_deepspeed) -> dict[str, torch.Tensor] | None:
    """The trainable weights as one CPU state dict; under ZeRO-3 only rank 0 gets it (others None).

    ZeRO-3 leaves each rank a partition of every parameter, so the trainable ones are gathered
    first: a collective, every rank must call this. Only the trainable parameters are gathered,
    never the frozen LLM and encoder (``accelerator.get_state_dict`` would gather the whole model
    onto rank 0 for every checkpoint).
    """
    if using_deepspeed and accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        named = [(n, p) for n, p in core.named_parameters() if p.requires_grad]
        with deepspeed.zero.GatheredParameters([p for _, p in named]):
            if accelerator.is_main_process:
                return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in named}
        return None
    return core.trainable_state_dict()


def _periodic_eval(cfg, model, core, tokenizer, accelerator, logger, step) -> None:
    """Held-out loss and EM on the first train.eval_samples validation records."""
    if not cfg.data.val:
        return
    from vqkit.eval.run import evaluate_loss_and_em

    model.eval()
    metrics = evaluate_loss_and_em(core, cfg, tokenizer, accelerator=accelerator, limit=cfg.train.eval_samples)
    record = {"step": step, **{f"eval_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}}
    logger.log(record)
    logger.print("eval @ step {}: ".format(step) + ", ".join(f"{k[5:]} {v:.4f}" if isinstance(v, float) else f"{k[5:]} {v}"
                                                              for k, v in record.items() if k != "step"))


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqkit-train",
        description="Train a vqkit model. Works unchanged under torchrun, accelerate launch and deepspeed.",
        epilog="example: vqkit-train --config configs/demo.yaml --set train.max_steps=100 --output-dir runs/try",
    )
    parser.add_argument("--config", required=True, help="experiment YAML (see configs/)")
    add_overrides_argument(parser, "override a config value, e.g. --set train.lr=1e-4 (repeatable)")
    parser.add_argument("--output-dir", help="run directory (train.output_dir)")
    parser.add_argument("--resume", help="'auto' (newest complete checkpoint of the run dir) or a checkpoint folder")
    parser.add_argument("--deepspeed", help="DeepSpeed JSON, e.g. configs/deepspeed/zero3.json (train.deepspeed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    # The deepspeed launcher appends --local_rank; accelerate reads LOCAL_RANK from the environment.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"train.output_dir={args.output_dir}")
    if args.deepspeed:
        overrides.append(f"train.deepspeed={args.deepspeed}")
    cfg = load_config(args.config, overrides)
    result = run(cfg, resume=args.resume, progress=not args.no_progress)
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    from vqkit.cli import run_main

    sys.exit(run_main(main, None, "vqkit-train"))
