"""``vqkit demo``: the kit's main job end to end on the embedded synthetic benchmark, on a CPU.

1. generate the synthetic posed rooms (``vqkit synth``; reused when already there; 16 questions per
   training room and its describe question, 8 questions per val room), then, with
   ``encoder_pretrain`` (a ``vqkit pretrain-encoder`` config: the default demo's is
   configs/demo_encoder.yaml), pretrain the demo-size
   aggregator on the rooms' semantic maps into ``RUN_encoder`` (beside the run folder), as DINOv2
   pretrains the real VGGT's encoder, with VGGT's camera and depth heads beside it; the demo model's
   frozen aggregator then loads those weights, and its heads give photos without cameras their geometry,
2. encode every view set once with the frozen aggregator (``vqkit cache-features``),
3. train the demo config (the default: configs/demo.yaml, a 4-block aggregator read through the
   patch merger by a tiny Qwen3 with the synthetic tokenizer, 16 questions about the views a sample),
4. train the blind baseline: the same recipe with text-only prompts, one question per sample,
5. evaluate both on the validation split (EM and refined EM per qtype), each into its own run's
   ``eval/`` folder (``RUN/eval``, ``RUN/blind/eval``), and measure the answer loss with the right
   views and with views shuffled across samples,
6. print the table and write ``RUN/demo_summary.json``.

With ``synth={"grounding": True}`` (``vqkit demo --grounding``) the rooms' grounding questions
(:mod:`vqkit.synth.grounding`) are mixed in: each training room's sample carries them as more turns
beside its questions (one reading of its views for both), and the validation rooms' expressions are
scored beside the questions (Acc@0.25 / Acc@0.5, ``metrics.json`` ``grounding``).

Whether vision matters is measured two ways: EM of the full model vs the blind one, and how much the
answer loss of the full model rises when each question is shown another room's views.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path

from vqkit.config.io import load_config
from vqkit.data.record_files import read_records_once
from vqkit.errors import CheckpointError
from vqkit.eval.generate import evaluate
from vqkit.eval.loss import answer_losses
from vqkit.eval.results import default_out_dir, evaluation_info, write_results
from vqkit.models.builder import load_model
from vqkit.synth.benchmark import ensure_synth, use_synthetic_data
from vqkit.synth.questions import DESCRIBE_QTYPE
from vqkit.tools.cache_writer import build_feature_cache
from vqkit.train import run
from vqkit.train.encoder_pretrain import WEIGHTS_FILE, pretrain_encoder
from vqkit.train.encoder_weights import check_encoder_weights

# Why each default (the runs behind them: docs/experiments/demo_levers.md):
# 16 questions per training room: with data.turns every reading of a room's views trains all of them.
# Rendered without antialiasing (render_scale 1; `vqkit synth` renders at 2x and filters down): the
# rooms take less time, and the model scores the same within run-to-run spread.
# Every training room also gets the describe question ("What objects are in the room?" -> "2 pink beds,
# 1 yellow chair"), the 17th turn of its sample: one answer pairs every colour the views show with its
# category, which the one-category questions each teach once.
# Train and val only: the demo evaluates on val, so the test rooms are not rendered (the two splits
# are byte-identical to those of a set with all three).
DEFAULT_SYNTH = {"scenes": 3000, "views": 4, "image_size": 112, "seed": 0, "train_questions_per_scene": 16,
                 "render_scale": 1, "train_describe": True, "splits": ("train", "val")}
# The default demo: its config and the pretraining of its aggregator.
DEFAULT_CONFIG = "configs/demo.yaml"
# The most grounding questions a synthetic room gets (one per well-visible object a relation tells apart):
# the turns `vqkit demo --grounding` adds to a room's sample.
GROUNDING_TURNS = 14
DEFAULT_ENCODER_PRETRAIN = "configs/demo_encoder.yaml"


def format_table(full: dict, blind: dict, losses: dict) -> str:
    qtypes = sorted(set(full.get("by_qtype", {})) | set(blind.get("by_qtype", {})))
    rows = [("overall", full["overall"], blind["overall"])]
    rows += [(q, full["by_qtype"].get(q, {}), blind["by_qtype"].get(q, {})) for q in qtypes]
    lines = [f"{'qtype':<20}{'n':>6}{'EM full':>10}{'EM blind':>10}{'refined full':>14}{'refined blind':>15}",
             "-" * 75]
    for name, f, b in rows:
        lines.append(f"{name:<20}{f.get('n', 0):>6}{f.get('em', 0):>10.1f}{b.get('em', 0):>10.1f}"
                     f"{f.get('em_refined', 0):>14.1f}{b.get('em_refined', 0):>15.1f}")
    lines.append("-" * 75)
    ratio = losses["loss_shuffled_views"] / max(losses["loss_views"], 1e-9)
    lines.append(f"answer loss on val: {losses['loss_views']:.3f} with the right views, "
                 f"{losses['loss_shuffled_views']:.3f} with views shuffled across samples ({ratio:.2f}x)")
    return "\n".join(lines)


@read_records_once()  # every stage reads the training or validation records: each file read and validated once
def run_demo(config: str | None = None, data_dir: str = "data/synth", run_dir: str = "runs/demo",
             overrides: list[str] | None = None, synth: dict | None = None, progress: bool = True,
             encoder_pretrain: str | None = None, encoder_overrides: list[str] | None = None) -> dict:
    """Run the whole demo; returns the summary written to ``RUN/demo_summary.json``.

    ``config`` None: :data:`DEFAULT_CONFIG`, its aggregator first pretrained with the ``vqkit
    pretrain-encoder`` config ``encoder_pretrain`` (default :data:`DEFAULT_ENCODER_PRETRAIN`, changed by
    ``encoder_overrides``); with a ``config`` given, ``encoder_pretrain`` None keeps that config's encoder."""
    started = time.time()
    if config is None:
        config, encoder_pretrain = DEFAULT_CONFIG, encoder_pretrain or DEFAULT_ENCODER_PRETRAIN
    synth = {**DEFAULT_SYNTH, **(synth or {})}
    data_dir, run_path = Path(data_dir), Path(run_dir)
    val = [str(data_dir / "val.jsonl")]
    if synth.get("grounding"):
        val.append(str(data_dir / "grounding_val.jsonl"))
    timings = {}
    cfg = prepare_demo_run(config, overrides, data_dir, run_path, synth, encoder_pretrain, encoder_overrides,
                           progress, timings, adapt=_mix_grounding if synth.get("grounding") else None)
    result, blind_cfg, blind_result = train_with_blind_baseline(cfg, run_path, progress, timings)

    t = time.time()
    metrics, eval_dir = evaluate_into_run(result.final_dir, cfg, val, blind=False, progress=progress)
    losses = answer_losses(load_model(result.final_dir), cfg, val[0])
    # The baseline is a model *trained* blind, evaluated as trained into its own run's eval/ folder
    # (RUN/blind/eval); RUN/eval_views_removed is `vqkit eval --blind` of the full model, another experiment.
    blind_metrics, blind_eval_dir = evaluate_into_run(blind_result.final_dir, blind_cfg, val, blind=True,
                                                      progress=progress)
    timings["eval_s"] = time.time() - t

    minutes = (time.time() - started) / 60
    summary = {
        "em_full": metrics["overall"]["em"], "em_blind": blind_metrics["overall"]["em"],
        "em_refined_full": metrics["overall"]["em_refined"], "em_refined_blind": blind_metrics["overall"]["em_refined"],
        **losses, "loss_ratio": losses["loss_shuffled_views"] / max(losses["loss_views"], 1e-9),
        "minutes": minutes, "timings_s": timings, "train_steps": result.steps,
        "by_qtype": {q: {"full": metrics["by_qtype"][q], "blind": blind_metrics["by_qtype"].get(q)}
                     for q in metrics.get("by_qtype", {})},
        "n_val": metrics["overall"]["n"], "synth": synth, "config": config, "encoder_pretrain": encoder_pretrain,
        "encoder_weights": cfg.model.encoder.weights, "geometry_source": cfg.model.geometry.source,
        "eval_dir": str(eval_dir), "blind_eval_dir": str(blind_eval_dir),
    }
    if metrics.get("grounding"):
        g, gb = metrics["grounding"], blind_metrics["grounding"]
        summary.update(acc25_full=g["acc@0.25"], acc25_blind=gb["acc@0.25"], acc50_full=g["acc@0.5"],
                       acc50_blind=gb["acc@0.5"], grounding={"full": g, "blind": gb})
    (run_path / "demo_summary.json").write_text(json.dumps(summary, indent=1))
    print()
    print(format_table(metrics, blind_metrics, losses))
    if metrics.get("grounding"):
        print(f"grounding ({g['n']} expressions): Acc@0.25 {g['acc@0.25']:.1f} full, {gb['acc@0.25']:.1f} blind; "
              f"Acc@0.5 {g['acc@0.5']:.1f} full, {gb['acc@0.5']:.1f} blind; parse rate {g['parse_rate']:.1f}%")
    _print_next_steps(summary, run_path, result.final_dir, data_dir)
    return summary


def prepare_demo_run(config: str, overrides: list[str] | None, data_dir: Path, run_path: Path, synth: dict,
                     encoder_pretrain: str | None, encoder_overrides: list[str] | None, progress: bool,
                     timings: dict, *, records: str = "", adapt=None):
    """What every demo starts from: the synthetic rooms (generated or reused), ``config`` with its overrides,
    its aggregator pretrained with ``encoder_pretrain`` when given, the set's ``records`` (file prefix, e.g.
    ``"grounding_"``) as its data, ``adapt(cfg, data_dir)`` for a demo's own changes to the recipe, the run
    folder ``run_path`` (replaced, saying so) and the features cached once; returns the config to train,
    each stage's seconds in ``timings``."""
    t = time.time()
    ensure_synth(data_dir, progress=progress, **synth)
    timings["synth_s"] = time.time() - t
    cfg = load_config(config, overrides)
    if encoder_pretrain:
        t = time.time()
        cfg.model.encoder.weights = str(_pretrain_encoder(encoder_pretrain, encoder_overrides, cfg.model.encoder,
                                                          data_dir, run_path, progress))
        timings["encoder_pretrain_s"] = time.time() - t
    use_synthetic_data(cfg, data_dir, records=records)
    if adapt is not None:
        adapt(cfg, data_dir)
    cfg.train.output_dir = str(run_path)
    cfg.train.overwrite = True  # the demo's run folder is the demo's own; say so when replacing it
    if run_path.exists():
        print(f"demo: replacing the previous demo run in {run_path}", flush=True)
    t = time.time()
    cfg.data.feature_cache = str(_feature_cache(cfg, data_dir / "features", progress))
    timings["cache_s"] = time.time() - t
    return cfg


def train_with_blind_baseline(cfg, run_path: Path, progress: bool, timings: dict):
    """Train ``cfg`` into ``run_path`` and its blind baseline into ``run_path/blind`` (:func:`_train_blind`);
    (result, blind config, blind result). Ctrl-C / SIGTERM: the run saved a checkpoint, the demo stops."""
    t = time.time()
    result = run(cfg, progress=progress)
    timings["train_s"] = time.time() - t
    if result.interrupted:
        raise KeyboardInterrupt
    t = time.time()
    blind_cfg, blind_result = _train_blind(cfg, run_path, progress)
    timings["train_blind_s"] = time.time() - t
    return result, blind_cfg, blind_result


def evaluate_into_run(final_dir: Path, cfg, val: list[str], *, blind: bool, progress: bool) -> tuple[dict, Path]:
    """The metrics of a trained model on ``val``, its predictions written into its run's eval/ folder."""
    model = load_model(final_dir)
    # BLEU/METEOR need a JVM start; the demo reports EM, `vqkit eval --predictions` adds the rest.
    predictions, metrics = evaluate(model, cfg, val, blind=blind, progress=progress, language=False)
    metrics["info"].update(evaluation_info(final_dir, cfg, val, blind=blind))
    return metrics, write_results(default_out_dir(final_dir, views_removed=False), predictions, metrics)


def _mix_grounding(cfg, data_dir: Path) -> None:
    """Mix the rooms' grounding questions into the question-answering recipe (``cfg`` in place): read with
    the questions as one source, so a room's sample carries both as turns."""
    cfg.data.train[0].join = [str(data_dir / "grounding_train.jsonl")]
    cfg.data.turns += GROUNDING_TURNS
    cfg.data.max_length = max(cfg.data.max_length, 768)  # ~35 tokens a grounding turn
    llm = cfg.model.llm.config_overrides
    if llm and llm.get("max_position_embeddings", cfg.data.max_length) < cfg.data.max_length:
        llm["max_position_embeddings"] = cfg.data.max_length


def _train_blind(cfg, run_path: Path, progress: bool):
    """The blind baseline: the demo's recipe with text-only prompts, one question per sample (twice the
    batch when the full model trains several turns a sample), into RUN/blind; (its config, result)."""
    blind_cfg = copy.deepcopy(cfg)
    blind_cfg.data.blind = True
    # Turns share views; without views they share nothing, and the blind model they trained scored
    # lower for twice the time: the baseline takes the stronger one. One question a sample, though,
    # meets far fewer answers than the full model's turns: at the demo's batch the blind model met under
    # half the training questions and settled on one answer for whole question families; twice the
    # batch reaches the text-only plateau (docs/experiments/demo_levers.md, rows 30, 38 and 39).
    if cfg.data.turns > 1:
        blind_cfg.data.turns = 1
        blind_cfg.train.batch_size_per_gpu = 2 * cfg.train.batch_size_per_gpu
    # The describe question (the training rooms' object list) has a long answer only the views can
    # give: text-only, it took much of the blind model's answer tokens and lowered its score
    # (rows 61 and 62 there). The baseline trains on the benchmark's question families alone.
    blind_cfg.data.exclude_qtypes = sorted({*blind_cfg.data.exclude_qtypes, DESCRIBE_QTYPE})
    blind_cfg.train.output_dir = str(run_path / "blind")
    blind_cfg.train.save_every_steps = 0
    result = run(blind_cfg, progress=progress)
    if result.interrupted:
        raise KeyboardInterrupt
    return blind_cfg, result


def _pretrain_encoder(config: str, overrides: list[str] | None, encoder, data_dir: Path, run_path: Path,
                      progress: bool) -> Path:
    """Pretrain the demo's aggregator (``encoder``: the architecture of the demo config's ``model.encoder``,
    whatever the pretraining config names; its weights are what this run writes, so it starts from the
    pretraining config's own) with ``config`` on the synthetic rooms into ``RUN_encoder`` (replacing the
    previous demo's); returns the weights file."""
    cfg = load_config(config, overrides)
    cfg.model.encoder = dataclasses.replace(encoder, weights=cfg.model.encoder.weights)
    use_synthetic_data(cfg, data_dir, tokenizer=False)
    out = run_path.parent / f"{run_path.name}_encoder"
    cfg.train.output_dir, cfg.train.overwrite = str(out), True
    if out.exists():
        print(f"demo: replacing the previous demo's encoder pretraining in {out}", flush=True)
    result = pretrain_encoder(cfg, progress=progress)
    if result.interrupted:
        raise KeyboardInterrupt
    return result.final_dir / WEIGHTS_FILE


def _feature_cache(cfg, cache_dir: Path, progress: bool) -> Path:
    """The demo's feature cache: what an earlier demo encoded with the same encoder is reused; a cache
    of another encoder config is the demo's own, so it is rebuilt. A config's own aggregator that is not
    there is refused first, naming the command that writes it."""
    check_encoder_weights(cfg)
    try:
        return build_feature_cache(cfg, cache_dir, progress=progress)
    except CheckpointError as e:
        print(f"demo: rebuilding the feature cache ({e})", flush=True)
        return build_feature_cache(cfg, cache_dir, overwrite=True, progress=progress)


def _print_next_steps(summary: dict, run_path: Path, final_dir: Path, data_dir: Path) -> None:
    print(f"\nfull model EM {summary['em_full']:.1f} vs blind {summary['em_blind']:.1f} "
          f"({summary['em_full'] - summary['em_blind']:+.1f} points); {summary['minutes']:.1f} minutes end to end\n")
    print(f"run:          {run_path}  (model: {final_dir}, summary: {run_path / 'demo_summary.json'})")
    print(f"predictions:  {Path(summary['eval_dir']) / 'predictions.jsonl'}  "
          f"(blind-trained baseline: {Path(summary['blind_eval_dir']) / 'predictions.jsonl'})")
    print(f"TensorBoard:  .venv/bin/tensorboard --logdir {run_path}")
    print("next:")
    print("  notebooks:  .venv/bin/jupyter lab notebooks/   "
          "(01 data + 3D poses, 02 model, 03 debug run, 04 answer viewer)")
    print(f"  ask:        .venv/bin/vqkit ask --model {final_dir} --images {data_dir}/scenes/scene00000/rgb_0*.png "
          f"--question \"What colour are the walls?\"")
    if summary["geometry_source"] == "auto":  # photos without a cameras.json: the encoder's heads predict them
        print(f"  your photos: .venv/bin/vqkit ask --model {final_dir} --images my_room/*.jpg --question "
              f"\"What colour is the floor?\"   (their cameras predicted by the encoder's VGGT heads)")
    print("  real data:  docs/real_data.md (vqkit prep scanqa|sqa3d|arkit), then configs/stage1_3d.yaml")
    print("  cluster:    README.md, 'Training on a cluster' (scripts/slurm/train.sbatch)")
