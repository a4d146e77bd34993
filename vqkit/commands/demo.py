"""``vqkit demo``: synthetic rooms -> train the demo model and a blind baseline -> evaluate both, on a CPU
(see :mod:`vqkit.tools.demo`; ``--task grounding``: :mod:`vqkit.tools.grounding_demo`)."""

from __future__ import annotations

import argparse

from vqkit.commands.common import add_overrides_argument
from vqkit.synth.benchmark import QUESTIONS_PER_SCENE
from vqkit.tools.demo import DEFAULT_CONFIG, DEFAULT_ENCODER_PRETRAIN, DEFAULT_SYNTH, run_demo
from vqkit.tools.grounding_demo import DEFAULT_GROUNDING_CONFIG, run_grounding_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vqkit demo",
        description="Synthetic rooms -> train the demo model and a blind baseline -> evaluate both, on CPU.")
    parser.add_argument("--task", choices=["qa", "grounding"], default="qa",
                        help="qa: answer questions about the rooms (default); grounding: write the box of the object "
                             "a referring expression names ('the pink bed'), scored by Acc@0.25 / Acc@0.5")
    parser.add_argument("--config", default=None,
                        help=f"demo experiment YAML (default: {DEFAULT_CONFIG}, or {DEFAULT_GROUNDING_CONFIG} with "
                             f"--task grounding; its aggregator pretrained first with {DEFAULT_ENCODER_PRETRAIN})")
    parser.add_argument("--encoder-pretrain", default=None, metavar="CONFIG",
                        help="a vqkit pretrain-encoder config: pretrain the demo config's aggregator with it first; "
                             "default: the default demo's, or a given --config's own encoder")
    parser.add_argument("--data-dir", default="data/synth",
                        help="where the synthetic rooms are (generated when missing)")
    parser.add_argument("--run-dir", default=None,
                        help="run folder, replaced if it holds an earlier demo (default: runs/demo, or "
                             "runs/grounding_demo with --task grounding)")
    parser.add_argument("--scenes", type=int, default=DEFAULT_SYNTH["scenes"], help="synthetic rooms to generate")
    parser.add_argument("--views", type=int, default=DEFAULT_SYNTH["views"], help="views per room")
    parser.add_argument("--image-size", type=int, default=DEFAULT_SYNTH["image_size"], help="image size (px)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SYNTH["seed"], help="seed of the synthetic rooms")
    parser.add_argument("--train-questions-per-scene", type=int, default=DEFAULT_SYNTH["train_questions_per_scene"],
                        help=f"questions per training room (val rooms get {QUESTIONS_PER_SCENE}; default: %(default)s)")
    parser.add_argument("--render-scale", type=int, default=DEFAULT_SYNTH["render_scale"],
                        help="render the rooms' RGB at this multiple and filter it down (2 = antialiased, as "
                             "`vqkit synth` does; the rooms and questions are the same; default: %(default)s)")
    parser.add_argument("--train-describe", action=argparse.BooleanOptionalAction,
                        default=DEFAULT_SYNTH["train_describe"],
                        help="ask every training room 'What objects are in the room?' too (`vqkit synth "
                             "--train-describe`; default: %(default)s)")
    parser.add_argument("--grounding", action="store_true",
                        help="qa: mix the rooms' grounding questions into the training rooms' samples (more turns "
                             "of each room) and score them beside the questions (Acc@0.25 / Acc@0.5)")
    add_overrides_argument(parser, "override a config value, e.g. --set train.max_steps=200 (repeatable)")
    parser.add_argument("--encoder-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the --encoder-pretrain config, e.g. --encoder-set "
                             "train.max_steps=400 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="log lines only, no progress bars")
    args = parser.parse_args(argv)
    synth = {"scenes": args.scenes, "views": args.views, "image_size": args.image_size, "seed": args.seed,
             "train_questions_per_scene": args.train_questions_per_scene, "render_scale": args.render_scale,
             "train_describe": args.train_describe, "splits": DEFAULT_SYNTH["splits"]}
    if args.grounding and args.task == "qa":
        synth["grounding"] = True
    if args.task == "grounding":
        run_grounding_demo(args.config, args.data_dir, args.run_dir or "runs/grounding_demo", args.overrides,
                           synth=synth, progress=not args.no_progress, encoder_pretrain=args.encoder_pretrain,
                           encoder_overrides=args.encoder_set)
        return 0
    run_demo(args.config, args.data_dir, args.run_dir or "runs/demo", args.overrides, synth=synth,
             progress=not args.no_progress, encoder_pretrain=args.encoder_pretrain, encoder_overrides=args.encoder_set)
    return 0
