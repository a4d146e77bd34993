"""What every vqkit training recipe shares: the run folder, accelerate / DeepSpeed, resume, the step
loop with its logging, checkpoints and stop requests, and the end of a run.

:class:`TrainingLoop` is the skeleton (torchtune style: ``setup`` -> ``train`` -> ``cleanup``); a recipe
fills in what differs through a few hooks:

- :meth:`TrainingLoop.build`: the model (a module with ``param_groups``, ``trainable_state_dict``,
  ``load_trainable_state_dict`` and ``parameter_table``) and its optimizer;
- :meth:`TrainingLoop.make_loader`: the data loader of an epoch (sharded by rank, seeded by epoch);
- :meth:`TrainingLoop.run_step`: one optimizer step over a step's micro-batches (usually
  :func:`vqkit.train.step.train_step`);
- :meth:`TrainingLoop.save_final`: what the finished run leaves besides its checkpoints;
- optionally :meth:`TrainingLoop.periodic_eval`, :meth:`TrainingLoop.log_fields`.

:class:`vqkit.train.recipe.Recipe` (``vqkit train``: question answering and layouts) and
:class:`vqkit.train.encoder_pretrain.EncoderPretrainRecipe` (``vqkit pretrain-encoder``) are the two.

Reliability, the same for both:
- checkpoints every ``train.save_every_steps``, written atomically (:mod:`vqkit.train.checkpoint`),
  with the data position and RNG states, so ``--resume auto`` continues with the same losses;
- a non-finite loss skips its optimizer step with a warning (the decision is taken on all ranks
  together), and ``train.max_nonfinite_steps`` in a row abort the run;
- Ctrl-C (SIGINT) or SIGTERM (Slurm's pre-emption) saves a checkpoint before exiting;
- an existing run directory is never overwritten silently; a folder left by an attempt that failed
  before its first step is reused, and a failure is recorded in ``RUN/failed.json`` (``vqkit monitor``);
- a resumed run trains with the config its checkpoint was saved with: each checkpoint stores it, and
  any change outside :data:`vqkit.train.run_dir.RESUMABLE_KEYS` is refused before anything is written.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

from vqkit.config.io import config_from_dict, load_config, save_config, to_dict
from vqkit.config.schema import Config
from vqkit.errors import ConfigError, VQKitError
from vqkit.train import checkpoint as ckpt
from vqkit.train.accelerator import describe, gather_trainable, make_accelerator
from vqkit.train.encoder_weights import check_encoder_weights
from vqkit.train.logging import RunLogger, format_duration
from vqkit.train.optim import cosine_schedule, schedule_warning
from vqkit.train.run_dir import (
    RunDirLock,
    StopRequest,
    prepare_run_dir,
    record_failure,
    resume_config_changes,
)
from vqkit.utils import distributed
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


@dataclass
class StepOutcome:
    """One optimizer step as the loop logs it."""

    loss: float
    """The step's loss (not finite when the step was skipped)."""
    weight: float
    """What the step's loss is an average over (label tokens, samples): the log window weighs by it."""
    skipped: bool
    """A loss was not finite on some rank: no update anywhere."""
    parts: dict[str, float] = field(default_factory=dict)
    """Further values to average over the window (e.g. the loss's terms), weighted like ``loss``."""
    samples: int = 0
    """Samples the step trained on, over every rank (0: the configured batch, ``samples_per_step``)."""


class BatchStream:
    """Training batches forever, epoch after epoch, resumable at (epoch, batch in epoch).

    ``make_loader(epoch)`` gives the epoch's loader (the recipe builds and validates its dataset
    once and only reshuffles per epoch). Resuming in the middle of an epoch skips the batches already
    seen, so the data order equals an uninterrupted run's.
    """

    def __init__(self, make_loader, epoch: int = 0, batch_in_epoch: int = 0):
        self.make_loader = make_loader
        self.epoch, self.batch_in_epoch = epoch, batch_in_epoch
        self._iter = self._batches()

    def _batches(self):
        while True:
            loader = self.make_loader(self.epoch)
            skipped = self.batch_in_epoch
            if skipped:
                from accelerate.data_loader import skip_first_batches

                loader = skip_first_batches(loader, self.batch_in_epoch)
            for batch in loader:
                self.batch_in_epoch += 1
                yield batch
            # (Not len(loader): batches measured in tokens would be counted by tokenizing the whole epoch.)
            if self.batch_in_epoch == 0 and not skipped:
                raise VQKitError(_too_small(loader))
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def take(self, n: int) -> list[dict]:
        """The next ``n`` batches (one optimizer step's micro-batches)."""
        return [next(self._iter) for _ in range(n)]


def _too_small(loader) -> str:
    """Why an epoch has no batch, with the numbers: the samples, the batch per process, the processes."""
    sampler = loader.sampler if loader.batch_size else getattr(loader.batch_sampler, "sampler", None)
    processes = getattr(sampler, "world_size", 1)
    if not loader.batch_size:  # micro-batches measured in tokens (train.tokens_per_batch)
        return (f"the training set is smaller than one batch per process: {len(loader.dataset)} sample(s) over "
                f"{processes} process(es) fill no micro-batch of train.tokens_per_batch tokens; lower it or add data")
    return (f"the training set is smaller than one batch per process: {len(loader.dataset)} sample(s) for "
            f"train.batch_size_per_gpu {loader.batch_size} x {processes} process(es) = "
            f"{loader.batch_size * processes}; lower train.batch_size_per_gpu or add data")


class LogWindow:
    """Sums over the steps since the last log line, weighted like each step's loss (e.g. the summed
    token loss of the window's steps over their label tokens)."""

    def __init__(self):
        self.weighted, self.n, self.weight, self.t0 = 0.0, 0, 0.0, time.time()
        self.samples = 0
        self.parts: dict[str, float] = {}

    def add(self, outcome: StepOutcome) -> None:
        self.weighted += outcome.loss * outcome.weight
        self.n += 1
        self.samples += outcome.samples
        self.weight += outcome.weight
        for key, value in outcome.parts.items():
            self.parts[key] = self.parts.get(key, 0.0) + value * outcome.weight

    @property
    def loss(self) -> float:
        return self.weighted / max(1e-12, self.weight)

    def mean_parts(self) -> dict[str, float]:
        return {k: v / max(1e-12, self.weight) for k, v in self.parts.items()}


def normalised_config(saved: dict) -> dict:
    """A config dict as it reads with today's defaults (keys added since it was saved filled in), so a
    resumed run is compared key for key; a dict that no longer parses is returned as it is."""
    try:
        return to_dict(config_from_dict(copy.deepcopy(saved)))
    except ConfigError:
        return saved


class TrainingLoop:
    """One training run: :meth:`setup`, :meth:`train`, :meth:`cleanup` (module docstring)."""

    name = "train"
    """Label of the progress bar and the first log line."""

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
        self.run_lock = RunDirLock(cfg.train.output_dir)  # the main process's, from setup to the end
        self.rank = 0
        self.samples_seen = 0
        self.config_changes: dict = {}

    # ------------------------------------------------------------------ hooks

    def build(self):
        """(model, optimizer) for this run, before ``accelerator.prepare``."""
        raise NotImplementedError

    def make_loader(self, epoch: int):
        """The training loader of ``epoch``."""
        raise NotImplementedError

    def run_step(self, micro_batches: list[dict]) -> StepOutcome:
        """Forward, backward and the optimizer step over one step's micro-batches."""
        raise NotImplementedError

    def save_final(self) -> Path | None:
        """Write the finished run's artefact after the last checkpoint; returns where. Every rank calls
        it (gathering ZeRO-3 partitions is collective); the main process writes."""
        raise NotImplementedError

    def periodic_eval(self) -> dict[str, float] | None:
        """Held-out figures every ``train.eval_every_steps`` (every rank calls it); None = none."""
        return None

    def log_fields(self, window: LogWindow, elapsed: float) -> tuple[dict, str]:
        """Extra fields of a step's metrics.jsonl record, and their text on the console line."""
        parts = window.mean_parts()
        return parts, "".join(f" | {k.removeprefix('loss_')} {v:.4f}" for k, v in parts.items())

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        """Accelerator, run directory and its config.yaml, model, optimizer, schedule, resume, data."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        check_encoder_weights(cfg)  # before anything is written: a missing file names the command that makes it
        self.accelerator = accelerator = make_accelerator(cfg)
        self.is_main = accelerator.is_main_process
        self.rank = accelerator.process_index
        if self.is_main:  # the folder is this run's before anything in it is read or removed
            self.run_lock.acquire()
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
        model, optimizer = self.build()
        # The scheduler stays ours: accelerate would step it once per process per call.
        self.scheduler = cosine_schedule(optimizer, cfg.train)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.core = accelerator.unwrap_model(self.model)

        epoch, batch_in_epoch, resumed_layout = 0, 0, ""
        if self.resumed_from is not None:
            state = ckpt.load_checkpoint(self.resumed_from, accelerator=accelerator, model=self.model,
                                         optimizer=self.optimizer, scheduler=self.scheduler,
                                         load_trainable=self.core.load_trainable_state_dict)
            self.step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
            positions = state.get("data_positions") or []
            if len(positions) == accelerator.num_processes:  # each rank's own (token batches differ by rank)
                epoch, batch_in_epoch = positions[self.rank]
            self.nonfinite_in_a_row = state.get("nonfinite_in_a_row", 0)
            self.samples_seen = state.get("samples_seen", self.step * self.samples_per_step)
            batch_in_epoch, resumed_layout = self._position_in_this_layout(state, batch_in_epoch)

        self.bar = tqdm(total=cfg.train.max_steps, initial=self.step, desc=self.name, dynamic_ncols=True,
                        disable=not self.is_main or self.progress is False, mininterval=1.0)
        self.logger = RunLogger(self.run_dir, self.is_main, self.bar if not self.bar.disable else None)
        self.logger.print(f"vqkit {self.name}: run {self.run_dir} | {describe(accelerator, cfg)}")
        self.logger.print(self.core.parameter_table())
        if self.resumed_from is not None:
            self.logger.print(f"resumed from {self.resumed_from} at step {self.step}")
            if resumed_layout:
                self.logger.print(resumed_layout)
        if (warning := schedule_warning(cfg.train)) is not None:
            self.logger.print(f"warning: {warning}")
        if self.config_changes:
            self.logger.print("config changed on resume: " + ", ".join(
                f"{k} {v[0]!r} -> {v[1]!r}" for k, v in self.config_changes.items()))
            self.logger.log({"step": self.step, "resumed_from": str(self.resumed_from),
                             "config_changes": self.config_changes})
        self.stream = BatchStream(self.make_loader, epoch, batch_in_epoch)

    def _position_in_this_layout(self, state: dict, batch_in_epoch: int) -> tuple[int, str]:
        """The checkpoint's data position in this run's micro-batches, and a line when the processes or the
        per-process batch changed. After k micro-batches of B samples on each of N ranks an epoch has used
        exactly its first k x B x N samples, whatever B and N (ranks take interleaved slices of one order),
        so a run resumed on another GPU count continues with the next sample; with train.global_batch_size
        its steps also keep their size."""
        t, n = self.cfg.train, self.accelerator.num_processes
        if t.tokens_per_batch:  # micro-batches of tokens hold varying samples: the count is kept as it is
            return batch_in_epoch, ""
        old_n = int(state.get("world_size", n))
        old_batch = int(state.get("config", {}).get("train", {}).get("batch_size_per_gpu", t.batch_size_per_gpu))
        if (old_n, old_batch) == (n, t.batch_size_per_gpu):
            return batch_in_epoch, ""
        samples = batch_in_epoch * old_batch * old_n
        position = samples // (t.batch_size_per_gpu * n)
        old_global = state.get("samples_seen", 0) // max(1, self.step) if self.step else None
        kept = old_global in (None, self.samples_per_step)
        line = (f"resumed on {n} process(es) x batch {t.batch_size_per_gpu} (the checkpoint: {old_n} x {old_batch}): "
                f"global batch {self.samples_per_step} = {t.batch_size_per_gpu} x grad_accum {self.accumulation} x {n}"
                + (" as before" if kept else f", was {old_global}; set train.global_batch_size to keep a global batch "
                                             f"on any number of GPUs"))
        again = samples - position * t.batch_size_per_gpu * n
        if again:
            line += f" ({again} samples of the epoch are seen again: its position falls inside a micro-batch)"
        return position, line

    def _checkpoint_config(self, checkpoint: Path) -> dict:
        """The config a checkpoint was trained with: stored in its trainer state, or (checkpoints
        written before it was) RUN/config.yaml; keys added to vqkit since then take their defaults."""
        state = ckpt.read_trainer_state(checkpoint)
        if isinstance(state.get("config"), dict):
            return normalised_config(state["config"])
        saved = Path(self.cfg.train.output_dir) / "config.yaml"
        return to_dict(load_config(saved)) if saved.is_file() else to_dict(self.cfg)

    def record_failure(self, error: BaseException) -> None:
        """RUN/failed.json for an error that ends the run (only once the run directory is this run's)."""
        if self.run_dir is not None:
            record_failure(self.run_dir, error, self.step, rank=self.rank)

    # ------------------------------------------------------------------ checkpoints

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step on this run's processes (train.global_batch_size or grad_accum)."""
        return self.cfg.train.accumulation(self.accelerator.num_processes)

    @property
    def samples_per_step(self) -> int:
        return self.cfg.train.global_batch(self.accelerator.num_processes)

    def trainer_state(self, data_positions: list | None = None) -> dict:
        """What a checkpoint stores besides the weights: the step, rank 0's data position (and with
        ``data_positions`` every rank's: :meth:`data_positions`), counters and the config."""
        state = {"step": self.step, "epoch": self.stream.epoch, "batch_in_epoch": self.stream.batch_in_epoch,
                 "nonfinite_in_a_row": self.nonfinite_in_a_row, "world_size": self.accelerator.num_processes,
                 "samples_seen": self.samples_seen, "config": to_dict(self.cfg)}
        if data_positions is not None:
            state["data_positions"] = data_positions
        return state

    def data_positions(self) -> list[list[int]]:
        """Every rank's (epoch, batch in epoch), gathered (collective: every rank calls it). Ranks differ
        when batches are measured in tokens, each rank's samples filling its own number of batches."""
        import torch

        mine = torch.tensor([self.stream.epoch, self.stream.batch_in_epoch], dtype=torch.long,
                            device=self.accelerator.device)
        return self.accelerator.gather(mine).view(-1, 2).tolist()

    def write_final_state(self, folder: Path) -> None:
        """``folder/trainer_state.json``: the finished run's step and data position (its config is the
        folder's config.yaml)."""
        state = {k: v for k, v in self.trainer_state().items() if k != "config"}
        write_json_atomic(folder / ckpt.TRAINER_STATE, state)

    def save_checkpoint(self) -> Path:
        """A complete checkpoint of the current step (every rank must call this)."""
        trainable = gather_trainable(self.accelerator, self.core)
        state = self.trainer_state(self.data_positions())
        return ckpt.save_checkpoint(self.run_dir, self.step, accelerator=self.accelerator, model=self.model,
                                    optimizer=self.optimizer, scheduler=self.scheduler, trainable_state=trainable,
                                    trainer_state=state, keep=self.cfg.train.keep_checkpoints)

    # ------------------------------------------------------------------ train

    def train(self) -> None:
        """Steps until ``train.max_steps`` or a stop request (Ctrl-C, SIGTERM)."""
        cfg = self.cfg
        window = LogWindow()
        self.model.train()
        with StopRequest() as stop:
            try:
                while self.step < cfg.train.max_steps:
                    outcome = self.run_step(self.stream.take(self.accumulation))
                    self.step += 1
                    self.samples_seen += outcome.samples or self.samples_per_step
                    self.bar.update(1)
                    if outcome.skipped:
                        self._count_nonfinite()
                        continue
                    self.nonfinite_in_a_row = 0
                    self.scheduler.step()
                    self.last_loss = outcome.loss
                    window.add(outcome)
                    self.bar.set_postfix(loss=f"{outcome.loss:.4f}", refresh=False)
                    if self.step % cfg.train.log_every_steps == 0 or self.step == cfg.train.max_steps:
                        self._log(window)
                        window = LogWindow()
                    if cfg.train.eval_every_steps and self.step % cfg.train.eval_every_steps == 0:
                        self._log_eval()
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

    def _log(self, window: LogWindow) -> None:
        max_steps = self.cfg.train.max_steps
        elapsed = time.time() - window.t0
        lrs = self.scheduler.get_last_lr()
        samples = window.samples or window.n * self.samples_per_step
        record = {"step": self.step, "loss": window.loss, "lr": lrs[0], "proj_lr": lrs[-1],
                  "samples_per_s": samples / max(elapsed, 1e-9)}
        extra, text = self.log_fields(window, elapsed)
        record.update(extra)
        record.update(epoch=self.stream.epoch, elapsed_s=time.time() - self.started)
        eta = (max_steps - self.step) * elapsed / max(1, window.n)
        record["eta_s"] = eta
        self.logger.log(record)
        self.logger.print(f"step {self.step}/{max_steps} | loss {record['loss']:.4f} | lr {record['lr']:.2e}"
                          f" | {record['samples_per_s']:.1f} samples/s{text}"
                          f" | elapsed {format_duration(record['elapsed_s'])} | eta {format_duration(eta)}")

    def _log_eval(self) -> None:
        metrics = self.periodic_eval()
        if not metrics:
            return
        record = {"step": self.step, **{f"eval_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}}
        self.logger.log(record)
        self.logger.print(f"eval @ step {self.step}: " + ", ".join(
            f"{k[5:]} {v:.4f}" if isinstance(v, float) else f"{k[5:]} {v}" for k, v in record.items() if k != "step"))

    # ------------------------------------------------------------------ cleanup

    def cleanup(self) -> TrainResult:
        """A checkpoint when interrupted; otherwise the last checkpoint and the final artefact."""
        final_dir = None
        if self.interrupted:
            path = self.save_checkpoint()
            self.logger.print(f"interrupted: checkpoint {path}; continue with --resume auto")
        else:
            if self.cfg.train.save_every_steps:
                self.save_checkpoint()
            final_dir = self.save_final()
        self.accelerator.wait_for_everyone()
        self.logger.close()
        self.bar.close()
        result = TrainResult(run_dir=self.run_dir, final_dir=final_dir, steps=self.step, last_loss=self.last_loss,
                             minutes=(time.time() - self.started) / 60, interrupted=self.interrupted)
        self.accelerator.end_training()  # after the barrier above: destroys the process group
        self.run_lock.release()
        return result

    def run(self) -> TrainResult:
        """setup, train, cleanup; a failure is recorded in RUN/failed.json and raised. The run folder's
        lock is released however the run ends."""
        try:
            self.setup()
            self.train()
            return self.cleanup()
        except BaseException as e:
            if isinstance(e, Exception):
                self.record_failure(e)
            # The process group accelerate joined is left here too (cleanup's end_training does it on
            # success): alive at exit, gloo can abort the process and hide the error. No barrier: the
            # other ranks may never reach one.
            distributed.destroy(barrier=False)
            raise
        finally:
            self.run_lock.release()
