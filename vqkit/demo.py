"""``vqkit demo``: the kit's main job end to end on the embedded synthetic benchmark, on a CPU.

1. generate the synthetic posed rooms (``vqkit synth``; reused when already there),
2. encode every view set once with the frozen aggregator (``vqkit cache-features``),
3. train the demo config (tiny aggregator, Perceiver, tiny Qwen3 + the synthetic tokenizer),
4. train the blind baseline: the same recipe with text-only prompts,
5. evaluate both on the validation split (EM and refined EM per qtype) and measure the answer loss
   with the right views and with views shuffled across samples,
6. print the table and write ``RUN/demo_summary.json``.

Whether vision matters is measured two ways: EM of the full model vs the blind one, and how much the
answer loss of the full model rises when each question is shown another room's views.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

from vqkit.cli import add_overrides_argument
from vqkit.config import Config, SourceConfig, load_config
from vqkit.errors import CheckpointError

DEFAULT_SYNTH = {"scenes": 3000, "views": 4, "image_size": 112, "seed": 0}


def ensure_synth(data_dir: Path, *, scenes: int, views: int, image_size: int, seed: int,
                 progress: bool = True) -> dict:
    """Generate the synthetic set unless ``data_dir`` already holds one made with these arguments."""
    from vqkit.data.synth import GENERATOR_VERSION, generate

    stats_file = data_dir / "stats.json"
    if stats_file.is_file():
        stats = json.loads(stats_file.read_text())
        args = stats.get("args", {})
        same_args = (args.get("scenes"), args.get("views"), args.get("image_size"), args.get("seed")) == (
            scenes, views, image_size, seed)
        if same_args and stats.get("generator_version") == GENERATOR_VERSION:
            print(f"demo: reusing the synthetic rooms in {data_dir}", flush=True)
            return stats
    return generate(data_dir, scenes=scenes, views=views, image_size=image_size, seed=seed, progress=progress)


def point_config_at(cfg: Config, data_dir: Path) -> None:
    """Use the synthetic set in ``data_dir`` (records and its tokenizer)."""
    cfg.data.train = [SourceConfig(path=str(data_dir / "train.jsonl"))]
    cfg.data.val = [SourceConfig(path=str(data_dir / "val.jsonl"))]
    cfg.model.llm.name_or_path = str(data_dir / "tokenizer")


@torch.no_grad()
def answer_losses(model, cfg: Config, data_path: str, *, batch_size: int = 128, seed: int = 0) -> dict:
    """Mean answer loss (teacher forcing) on ``data_path`` with each question's own views, and with
    the views (features, images and geometry) of another sample of the same batch.

    The shuffle is a derangement within groups of samples that have the same number of views, so
    every question sees a different room and the vision-token count stays valid.
    """
    from vqkit.data.dataset import build_dataloader

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
    from vqkit.data.dataset import build_dataset

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


def format_table(full: dict, blind: dict, losses: dict) -> str:
    qtypes = sorted(set(full.get("by_qtype", {})) | set(blind.get("by_qtype", {})))
    rows = [("overall", full["overall"], blind["overall"])] + [(q, full["by_qtype"].get(q, {}), blind["by_qtype"].get(q, {})) for q in qtypes]
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


def run_demo(config: str = "configs/demo.yaml", data_dir: str = "data/synth", run_dir: str = "runs/demo",
             overrides: list[str] | None = None, synth: dict | None = None, progress: bool = True) -> dict:
    """Run the whole demo; returns the summary written to ``RUN/demo_summary.json``."""
    from vqkit import load_model
    from vqkit.cache import build_feature_cache
    from vqkit.eval.run import evaluate, write_results
    from vqkit.train import run

    started = time.time()
    synth = {**DEFAULT_SYNTH, **(synth or {})}
    data_dir, run_path = Path(data_dir), Path(run_dir)
    timings = {}

    t = time.time()
    ensure_synth(data_dir, progress=progress, **synth)
    timings["synth_s"] = time.time() - t

    cfg = load_config(config, overrides)
    point_config_at(cfg, data_dir)
    cfg.train.output_dir = str(run_path)
    cfg.train.overwrite = True  # the demo's run folder is the demo's own; say so when replacing it
    if run_path.exists():
        print(f"demo: replacing the previous demo run in {run_path}", flush=True)

    t = time.time()
    cache_dir = data_dir / "features"
    try:  # reuses what an earlier demo encoded with the same encoder
        build_feature_cache(cfg, cache_dir, progress=progress)
    except CheckpointError as e:  # another encoder config: the demo's own cache is rebuilt
        print(f"demo: rebuilding the feature cache ({e})", flush=True)
        build_feature_cache(cfg, cache_dir, overwrite=True, progress=progress)
    cfg.data.feature_cache = str(cache_dir)
    timings["cache_s"] = time.time() - t

    t = time.time()
    result = run(cfg, progress=progress)
    timings["train_s"] = time.time() - t
    if result.interrupted:  # Ctrl-C / SIGTERM: the run saved a checkpoint; stop the demo here
        raise KeyboardInterrupt

    blind_cfg = copy.deepcopy(cfg)
    blind_cfg.data.blind = True
    blind_cfg.train.output_dir = str(run_path / "blind")
    blind_cfg.train.save_every_steps = 0
    t = time.time()
    blind_result = run(blind_cfg, progress=progress)
    timings["train_blind_s"] = time.time() - t
    if blind_result.interrupted:
        raise KeyboardInterrupt

    t = time.time()
    val = str(data_dir / "val.jsonl")
    model = load_model(result.final_dir)
    # BLEU/METEOR need a JVM start (~30 s); the demo reports EM, `vqkit eval --predictions` adds the rest.
    predictions, metrics = evaluate(model, cfg, val, progress=progress, language=False)
    write_results(run_path / "eval", predictions, metrics)
    losses = answer_losses(model, cfg, val)
    blind_model = load_model(blind_result.final_dir)
    blind_predictions, blind_metrics = evaluate(blind_model, blind_cfg, val, blind=True, progress=progress,
                                                   language=False)
    write_results(run_path / "eval_blind", blind_predictions, blind_metrics)
    timings["eval_s"] = time.time() - t

    minutes = (time.time() - started) / 60
    summary = {
        "em_full": metrics["overall"]["em"], "em_blind": blind_metrics["overall"]["em"],
        "em_refined_full": metrics["overall"]["em_refined"], "em_refined_blind": blind_metrics["overall"]["em_refined"],
        **losses, "loss_ratio": losses["loss_shuffled_views"] / max(losses["loss_views"], 1e-9),
        "minutes": minutes, "timings_s": timings, "train_steps": result.steps,
        "by_qtype": {q: {"full": metrics["by_qtype"][q], "blind": blind_metrics["by_qtype"].get(q)}
                     for q in metrics.get("by_qtype", {})},
        "n_val": metrics["overall"]["n"], "synth": synth, "config": config,
    }
    (run_path / "demo_summary.json").write_text(json.dumps(summary, indent=1))

    print()
    print(format_table(metrics, blind_metrics, losses))
    print(f"\nfull model EM {summary['em_full']:.1f} vs blind {summary['em_blind']:.1f} "
          f"({summary['em_full'] - summary['em_blind']:+.1f} points); {minutes:.1f} minutes end to end\n")
    print(f"run:          {run_path}  (model: {result.final_dir}, summary: {run_path / 'demo_summary.json'})")
    print(f"predictions:  {run_path / 'eval' / 'predictions.jsonl'}  (blind: {run_path / 'eval_blind' / 'predictions.jsonl'})")
    print(f"TensorBoard:  .venv/bin/tensorboard --logdir {run_path}")
    print("next:")
    print("  notebooks:  .venv/bin/jupyter lab notebooks/   (01 data + 3D poses, 02 model, 03 debug run, 04 answer viewer)")
    print(f"  ask:        .venv/bin/vqkit ask --model {result.final_dir} --images {data_dir}/scenes/scene00000/rgb_0*.png "
          f"--question \"What colour are the walls?\"")
    print("  real data:  docs/real_data.md (vqkit prep scanqa|sqa3d|arkit), then configs/stage1_3d.yaml")
    print("  cluster:    README.md, 'Training on a cluster' (scripts/slurm/train.sbatch)")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vqkit demo",
        description="Synthetic rooms -> train the demo model and a blind baseline -> evaluate both, on CPU.")
    parser.add_argument("--config", default="configs/demo.yaml", help="demo experiment YAML")
    parser.add_argument("--data-dir", default="data/synth", help="where the synthetic rooms are (generated when missing)")
    parser.add_argument("--run-dir", default="runs/demo", help="run folder (replaced if it holds an earlier demo)")
    parser.add_argument("--scenes", type=int, default=DEFAULT_SYNTH["scenes"], help="synthetic rooms to generate")
    parser.add_argument("--views", type=int, default=DEFAULT_SYNTH["views"], help="views per room")
    parser.add_argument("--image-size", type=int, default=DEFAULT_SYNTH["image_size"], help="image size (px)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SYNTH["seed"], help="seed of the synthetic rooms")
    add_overrides_argument(parser, "override a config value, e.g. --set train.max_steps=200 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="log lines only, no progress bars")
    args = parser.parse_args(argv)
    run_demo(args.config, args.data_dir, args.run_dir, args.overrides,
             synth={"scenes": args.scenes, "views": args.views, "image_size": args.image_size, "seed": args.seed},
             progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    from vqkit.cli import run_main

    sys.exit(run_main(main, None, "vqkit demo"))
