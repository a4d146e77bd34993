"""Training: one function, ``run(cfg)``, for notebooks, the CLI and every launcher.

``vqkit-train``, ``vqkit train`` and ``python -m vqkit.train`` only parse arguments and call
:func:`run`. The same command works in one process, under ``torchrun``, ``accelerate launch`` and
the ``deepspeed`` launcher: accelerate reads the process group from the environment.

The recipe (torchtune style) is :class:`Recipe`, a :class:`vqkit.train.loop.TrainingLoop`: ``setup``
(accelerator, run dir, model, optimizer, resume, data) -> ``train`` (steps of
:func:`vqkit.train.step.train_step`, logging, checkpoints, periodic eval) -> ``cleanup`` (final model
folder). What it shares with ``vqkit pretrain-encoder`` (the run folder, resume, checkpoints, stop
requests, logging, failures) is the loop's; see :mod:`vqkit.train.loop` for the guarantees.
"""

from __future__ import annotations

from pathlib import Path

from vqkit.config.schema import Config
from vqkit.train.accelerator import gather_trainable
from vqkit.train.loop import LogWindow, StepOutcome, TrainingLoop, TrainResult
from vqkit.train.optim import build_optimizer
from vqkit.train.step import train_step

__all__ = ["Recipe", "TrainResult", "run"]


class Recipe(TrainingLoop):
    """One training run of the vision-question model: :meth:`setup`, :meth:`train`, :meth:`cleanup`."""

    name = "train"

    def build(self):
        from vqkit.models.builder import build_model
        from vqkit.tokenizer import load_tokenizer

        self.tokenizer = load_tokenizer(self.cfg.model.llm)
        model = build_model(self.cfg, tokenizer=self.tokenizer)
        model.assert_frozen()
        return model, build_optimizer(model, self.cfg.train)

    def make_loader(self, epoch: int):
        from vqkit.data.dataset import build_dataloader

        cfg = self.cfg
        loader = build_dataloader(cfg, "train", self.tokenizer, batch_size=cfg.train.batch_size_per_gpu,
                                  shuffle=True, rank=self.accelerator.process_index,
                                  world_size=self.accelerator.num_processes, epoch=epoch, drop_last=True,
                                  blind=cfg.data.blind, dataset=getattr(self, "dataset", None),
                                  pack=cfg.data.packing, tokens_per_batch=cfg.train.tokens_per_batch)
        if getattr(self, "dataset", None) is None:
            from vqkit.data.mixing import describe_sources

            self.logger.print(describe_sources(loader.dataset))  # each source's samples and share of an epoch
        self.dataset = loader.dataset  # built (and validated) once; each epoch only reshuffles its sampler
        return loader

    def run_step(self, micro_batches: list[dict]) -> StepOutcome:
        result = train_step(self.model, self.optimizer, micro_batches, accelerator=self.accelerator,
                            max_grad_norm=self.cfg.train.max_grad_norm)
        return StepOutcome(loss=result.loss, weight=result.global_tokens, skipped=result.skipped,
                           samples=result.global_samples)

    def log_fields(self, window: LogWindow, elapsed: float) -> tuple[dict, str]:
        tokens_per_s = window.weight / max(elapsed, 1e-9)  # the window's weight is its label tokens
        return {"tokens_per_s": tokens_per_s}, f" | {tokens_per_s:.0f} tok/s"

    def periodic_eval(self) -> dict[str, float] | None:
        """Held-out loss and EM on the first train.eval_samples validation records."""
        cfg = self.cfg
        if not cfg.data.val:
            return None
        from vqkit.eval.loss import evaluate_loss_and_em

        self.model.eval()
        return evaluate_loss_and_em(self.core, cfg, self.tokenizer, accelerator=self.accelerator,
                                    limit=cfg.train.eval_samples)

    def save_final(self) -> Path:
        """RUN/final: the model folder (vqkit.load_model) and the step it was saved at."""
        final_dir = self.run_dir / "final"
        trainable = gather_trainable(self.accelerator, self.core)
        if self.is_main:
            self.core.save_pretrained(final_dir, state_dict=trainable)
            self.write_final_state(final_dir)  # the step it was saved at, for its evaluations' metrics.json
            self.logger.print(f"model saved to {final_dir} (load with vqkit.load_model or vqkit eval --model)")
        return final_dir


def run(cfg: Config, *, resume: str | None = None, progress: bool | None = None) -> TrainResult:
    """Train ``cfg``; returns where the run went. Used by notebook 03 and ``vqkit-train``.

    resume: None (new run), "auto" (newest complete checkpoint of cfg.train.output_dir, or a new
    run when there is none) or a checkpoint folder.
    """
    return Recipe(cfg, resume=resume, progress=progress).run()
