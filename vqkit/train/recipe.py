"""Training: one function, ``run(cfg)``, for notebooks, the CLI and every launcher.

``vqkit-train``, ``vqkit train`` and ``python -m vqkit.train`` only parse arguments and call
:func:`run`. The same command works in one process, under ``torchrun``, ``accelerate launch`` and
the ``deepspeed`` launcher: accelerate reads the process group from the environment.

The recipe (torchtune style) is :class:`Recipe`: ``setup`` (accelerator, run dir, model, optimizer,
resume, data) -> ``train`` (steps of :func:`vqkit.train.step.train_step`, logging, checkpoints,
periodic eval) -> ``cleanup`` (final model folder).

Reliability:
- checkpoints every ``train.save_every_steps``, written atomically (:mod:`vqkit.train.checkpoint`),
  with the data position and RNG states, so ``--resume auto`` continues with the same losses;
- a non-finite loss skips its optimizer step with a warning (the decision is taken on all ranks
  together), and ``train.max_nonfinite_steps`` in a row abort the run;
- Ctrl-C (SIGINT) or SIGTERM (Slurm's pre-emption) saves a checkpoint before exiting;
- an existing run directory is never overwritten silently; a folder left by an attempt that failed
  before its first step is reused, and a failure is recorded in ``RUN/failed.json`` (``vqkit monitor``);
- a resumed run trains with the config its checkpoint was saved with: each checkpoint stores it, and
  any change outside :data:`vqkit.train.run_dir.RESUMABLE_KEYS` (``max_steps``, log / save / eval
  intervals, eval settings, data workers) is refused, so ``RUN/config.yaml`` always says what trains.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

from vqkit.config.io import load_config, save_config, to_dict
from vqkit.config.schema import Config
from vqkit.errors import VQKitError
from vqkit.train import checkpoint as ckpt
from vqkit.train.accelerator import describe, gather_trainable, make_accelerator
from vqkit.train.logging import RunLogger, format_duration
from vqkit.train.optim import build_optimizer, cosine_schedule
from vqkit.train.run_dir import StopRequest, prepare_run_dir, record_failure, resume_config_changes
from vqkit.train.step import train_step
from vqkit.utils.files import write_json_atomic
from vqkit.utils.runtime import set_seed


@dataclass
class TrainResult:
    run_dir: Path
    final_dir: Path | None
    steps: int
    last_loss: float | None
    minutes: float
    interrupted: bool = False


class BatchStream:
    """Training batches forever, epoch after epoch, resumable at (epoch, batch in epoch).

    The dataset is built (and validated) once; each epoch only reshuffles its sampler. Resuming in the
    middle of an epoch skips the batches already seen, so the data order equals an uninterrupted run's.
    """

    def __init__(self, cfg: Config, tokenizer, accelerator, epoch: int = 0, batch_in_epoch: int = 0):
        self.cfg, self.tokenizer, self.accelerator = cfg, tokenizer, accelerator
        self.epoch, self.batch_in_epoch = epoch, batch_in_epoch
        self.dataset = None
        self._iter = self._batches()

    def _loader(self):
        from vqkit.data.dataset import build_dataloader

        loader = build_dataloader(self.cfg, "train", self.tokenizer, batch_size=self.cfg.train.batch_size_per_gpu,
                                  shuffle=True, rank=self.accelerator.process_index,
                                  world_size=self.accelerator.num_processes, epoch=self.epoch, drop_last=True,
                                  blind=self.cfg.data.blind, dataset=self.dataset)
        self.dataset = loader.dataset
        return loader

    def _batches(self):
        while True:
            loader = self._loader()
            if len(loader) == 0:
                raise VQKitError("the training set is smaller than one batch per process; lower "
                                 "train.batch_size_per_gpu or add data")
            if self.batch_in_epoch:
                from accelerate.data_loader import skip_first_batches

                loader = skip_first_batches(loader, self.batch_in_epoch)
            for batch in loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def take(self, n: int) -> list[dict]:
        """The next ``n`` batches (one optimizer step's micro-batches)."""
        return [next(self._iter) for _ in range(n)]


class Recipe:
    """One training run: :meth:`setup`, :meth:`train`, :meth:`cleanup` (see :func:`run`)."""

    def __init__(self, cfg: Config, *, resume: str | None = None, progress: bool | None = None):
        self.cfg = copy.deepcopy(cfg)
        self.resume = resume
        self.progress = progress
        self.started = time.time()
        self.step = 0
        self.last_loss: float | None = None
        self.nonfinite_in_a_row = 0
        self.interrupted = False
        self.run_dir: Path | None = None  # set once the run directory is this run's
        self.rank = 0
        self.config_changes: dict = {}

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        """Accelerator, run directory and its config.yaml, model, optimizer, schedule, resume, data."""
        from tqdm.auto import tqdm

        from vqkit.models.builder import build_model
        from vqkit.tokenizer import load_tokenizer

        cfg = self.cfg
        self.accelerator = accelerator = make_accelerator(cfg)
        self.is_main = accelerator.is_main_process
        self.rank = accelerator.process_index
        self.resumed_from = ckpt.resolve_resume(self.resume, cfg.train.output_dir)
        if self.resumed_from is not None:  # before anything is written: a refused change leaves the run as it was
            self.config_changes = resume_config_changes(self._checkpoint_config(self.resumed_from), to_dict(cfg),
                                                        self.resumed_from)
        run_dir = prepare_run_dir(cfg.train.output_dir, resuming=self.resumed_from is not None,
                                  overwrite=cfg.train.overwrite, is_main=self.is_main)
        accelerator.wait_for_everyone()
        self.run_dir = run_dir
        if self.is_main:
            save_config(cfg, self.run_dir / "config.yaml")

        # Same seed on every rank: identical model init; data shards differ by rank in the sampler.
        set_seed(cfg.train.seed)
        self.tokenizer = load_tokenizer(cfg.model.llm)
        model = build_model(cfg, tokenizer=self.tokenizer)
        model.assert_frozen()
        optimizer = build_optimizer(model, cfg.train)
        # The scheduler stays ours: accelerate would step it once per process per call.
        self.scheduler = cosine_schedule(optimizer, cfg.train)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.core = accelerator.unwrap_model(self.model)

        epoch, batch_in_epoch = 0, 0
        if self.resumed_from is not None:
            state = ckpt.load_checkpoint(self.resumed_from, accelerator=accelerator, model=self.model,
                                         optimizer=self.optimizer, scheduler=self.scheduler,
                                         load_trainable=self.core.load_trainable_state_dict)
            self.step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
            self.nonfinite_in_a_row = state.get("nonfinite_in_a_row", 0)

        self.bar = tqdm(total=cfg.train.max_steps, initial=self.step, desc="train", dynamic_ncols=True,
                        disable=not self.is_main or self.progress is False, mininterval=1.0)
        self.logger = RunLogger(self.run_dir, self.is_main, self.bar if not self.bar.disable else None)
        self.logger.print(f"vqkit train: run {self.run_dir} | {describe(accelerator, cfg)}")
        self.logger.print(self.core.parameter_table())
        if self.resumed_from is not None:
            self.logger.print(f"resumed from {self.resumed_from} at step {self.step}")
        if self.config_changes:
            self.logger.print("config changed on resume: " + ", ".join(
                f"{k} {v[0]!r} -> {v[1]!r}" for k, v in self.config_changes.items()))
            self.logger.log({"step": self.step, "resumed_from": str(self.resumed_from),
                             "config_changes": self.config_changes})
        self.stream = BatchStream(cfg, self.tokenizer, accelerator, epoch, batch_in_epoch)

    def _checkpoint_config(self, checkpoint: Path) -> dict:
        """The config a checkpoint was trained with: stored in its trainer state, or (checkpoints
        written before it was) RUN/config.yaml."""
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        if isinstance(state.get("config"), dict):
            return state["config"]
        saved = Path(self.cfg.train.output_dir) / "config.yaml"
        return to_dict(load_config(saved)) if saved.is_file() else to_dict(self.cfg)

    def record_failure(self, error: BaseException) -> None:
        """RUN/failed.json for an error that ends the run (only once the run directory is this run's)."""
        if self.run_dir is not None:
            record_failure(self.run_dir, error, self.step, rank=self.rank)

    # ------------------------------------------------------------------ checkpoints

    @property
    def samples_per_step(self) -> int:
        t = self.cfg.train
        return t.batch_size_per_gpu * t.grad_accum * self.accelerator.num_processes

    def trainer_state(self) -> dict:
        return {"step": self.step, "epoch": self.stream.epoch, "batch_in_epoch": self.stream.batch_in_epoch,
                "nonfinite_in_a_row": self.nonfinite_in_a_row, "world_size": self.accelerator.num_processes,
                "samples_seen": self.step * self.samples_per_step, "config": to_dict(self.cfg)}

    def save_checkpoint(self) -> Path:
        """A complete checkpoint of the current step (every rank must call this)."""
        trainable = gather_trainable(self.accelerator, self.core)
        return ckpt.save_checkpoint(self.run_dir, self.step, accelerator=self.accelerator, model=self.model,
                                    optimizer=self.optimizer, scheduler=self.scheduler, trainable_state=trainable,
                                    trainer_state=self.trainer_state(), keep=self.cfg.train.keep_checkpoints)

    # ------------------------------------------------------------------ train

    def train(self) -> None:
        """Steps until ``train.max_steps`` or a stop request (Ctrl-C, SIGTERM)."""
        cfg = self.cfg
        window = _Window()
        self.model.train()
        with StopRequest() as stop:
            try:
                while self.step < cfg.train.max_steps:
                    result = train_step(self.model, self.optimizer, self.stream.take(cfg.train.grad_accum),
                                        accelerator=self.accelerator, max_grad_norm=cfg.train.max_grad_norm)
                    self.step += 1
                    self.bar.update(1)
                    if result.skipped:
                        self._count_nonfinite()
                        continue
                    self.nonfinite_in_a_row = 0
                    self.scheduler.step()
                    self.last_loss = result.loss
                    window.add(result)
                    self.bar.set_postfix(loss=f"{result.loss:.4f}", refresh=False)
                    if self.step % cfg.train.log_every_steps == 0 or self.step == cfg.train.max_steps:
                        self._log(window)
                        window = _Window()
                    if cfg.train.eval_every_steps and self.step % cfg.train.eval_every_steps == 0:
                        self._periodic_eval()
                        self.model.train()
                    if (cfg.train.save_every_steps and self.step % cfg.train.save_every_steps == 0
                            and self.step < cfg.train.max_steps):
                        self.logger.print(f"checkpoint {self.save_checkpoint()}")
                    if stop.requested:
                        self.interrupted = True
                        break
            except KeyboardInterrupt:
                self.interrupted = True

    def _count_nonfinite(self) -> None:
        self.nonfinite_in_a_row += 1
        limit = self.cfg.train.max_nonfinite_steps
        self.logger.print(f"warning: non-finite loss at step {self.step}; step skipped "
                          f"({self.nonfinite_in_a_row} in a row, limit {limit})")
        if self.nonfinite_in_a_row >= limit:
            raise VQKitError(f"{self.nonfinite_in_a_row} non-finite losses in a row at step {self.step}; stopping. "
                             f"Lower train.lr / train.proj_lr, check the data, or resume from "
                             f"{ckpt.latest_checkpoint(self.run_dir)}")

    def _log(self, window: "_Window") -> None:
        max_steps = self.cfg.train.max_steps
        elapsed = time.time() - window.t0
        steps_done = window.n
        lrs = self.scheduler.get_last_lr()
        record = {"step": self.step, "loss": window.loss, "lr": lrs[0], "proj_lr": lrs[-1],
                  "samples_per_s": steps_done * self.samples_per_step / max(elapsed, 1e-9),
                  "tokens_per_s": window.tokens / max(elapsed, 1e-9),
                  "epoch": self.stream.epoch, "elapsed_s": time.time() - self.started}
        eta = (max_steps - self.step) * elapsed / max(1, steps_done)
        record["eta_s"] = eta
        self.logger.log(record)
        self.logger.print(f"step {self.step}/{max_steps} | loss {record['loss']:.4f} | lr {record['lr']:.2e}"
                          f" | {record['samples_per_s']:.1f} samples/s | {record['tokens_per_s']:.0f} tok/s"
                          f" | elapsed {format_duration(record['elapsed_s'])} | eta {format_duration(eta)}")

    def _periodic_eval(self) -> None:
        """Held-out loss and EM on the first train.eval_samples validation records."""
        cfg = self.cfg
        if not cfg.data.val:
            return
        from vqkit.eval.generate import evaluate_loss_and_em

        self.model.eval()
        metrics = evaluate_loss_and_em(self.core, cfg, self.tokenizer, accelerator=self.accelerator,
                                       limit=cfg.train.eval_samples)
        record = {"step": self.step, **{f"eval_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}}
        self.logger.log(record)
        self.logger.print(f"eval @ step {self.step}: " + ", ".join(
            f"{k[5:]} {v:.4f}" if isinstance(v, float) else f"{k[5:]} {v}" for k, v in record.items() if k != "step"))

    # ------------------------------------------------------------------ cleanup

    def cleanup(self) -> TrainResult:
        """A checkpoint when interrupted; otherwise the last checkpoint and the final model folder."""
        final_dir = None
        if self.interrupted:
            path = self.save_checkpoint()
            self.logger.print(f"interrupted: checkpoint {path}; continue with --resume auto")
        else:
            if self.cfg.train.save_every_steps:
                self.save_checkpoint()
            final_dir = self.run_dir / "final"
            trainable = gather_trainable(self.accelerator, self.core)
            if self.is_main:
                self.core.save_pretrained(final_dir, state_dict=trainable)
                # the step it was saved at, for the metrics.json of its evaluations
                state = {k: v for k, v in self.trainer_state().items() if k != "config"}
                write_json_atomic(final_dir / "trainer_state.json", state)
                self.logger.print(f"model saved to {final_dir} (load with vqkit.load_model or vqkit eval --model)")
        self.accelerator.wait_for_everyone()
        self.logger.close()
        self.bar.close()
        result = TrainResult(run_dir=self.run_dir, final_dir=final_dir, steps=self.step, last_loss=self.last_loss,
                             minutes=(time.time() - self.started) / 60, interrupted=self.interrupted)
        self.accelerator.end_training()
        return result


class _Window:
    """Sums over the steps since the last log line. Its loss is token-weighted like each step's: the
    summed token loss of the window's steps over their label tokens (all ranks)."""

    def __init__(self):
        self.token_loss, self.n, self.tokens, self.t0 = 0.0, 0, 0, time.time()

    def add(self, result) -> None:
        self.token_loss += result.loss * result.global_tokens
        self.n += 1
        self.tokens += result.global_tokens

    @property
    def loss(self) -> float:
        return self.token_loss / max(1, self.tokens)


def run(cfg: Config, *, resume: str | None = None, progress: bool | None = None) -> TrainResult:
    """Train ``cfg``; returns where the run went. Used by notebook 03 and ``vqkit-train``.

    resume: None (new run), "auto" (newest complete checkpoint of cfg.train.output_dir, or a new
    run when there is none) or a checkpoint folder.
    """
    recipe = Recipe(cfg, resume=resume, progress=progress)
    try:
        recipe.setup()
        recipe.train()
        return recipe.cleanup()
    except Exception as e:
        recipe.record_failure(e)
        raise
