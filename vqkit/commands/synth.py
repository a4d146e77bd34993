"""``vqkit synth --out DIR --scenes N --views V --image-size S --seed K``: the synthetic posed-room benchmark
(random rooms, ray-cast RGB-D with exact poses, questions and RoomPlan layouts), deterministic for a seed."""

from __future__ import annotations

import argparse

from vqkit.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    from vqkit.synth.benchmark import QUESTIONS_PER_SCENE, RENDER_SCALE, format_summary, generate

    # Defaults are written into each help text: ArgumentDefaultsHelpFormatter printed "(default: None)"
    # for the required --out and for --workers, whose default is computed.
    p = argparse.ArgumentParser(prog="vqkit synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (required)")
    p.add_argument("--scenes", type=int, default=100, help="number of rooms (default: %(default)s)")
    p.add_argument("--views", type=int, default=4, help="views per room (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=112,
                   help="stored square image size in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed: same seed, same bytes (default: %(default)s)")
    p.add_argument("--render-scale", type=int, default=RENDER_SCALE,
                   help="render RGB at image-size x this and box-filter down (antialiasing); 1 = off "
                        "(default: %(default)s)")
    p.add_argument("--questions-per-scene", type=int, default=QUESTIONS_PER_SCENE,
                   help="questions per room, qtypes cycle (default: %(default)s)")
    p.add_argument("--train-questions-per-scene", type=int, default=None,
                   help="questions per training room, beginning with those --questions-per-scene gives; "
                        "val and test are unchanged (default: --questions-per-scene)")
    p.add_argument("--train-describe", action="store_true",
                   help="also ask every training room 'What objects are in the room?' (each category the views "
                        "show with its colour and count: '2 pink beds, 1 yellow chair'); val and test are unchanged")
    p.add_argument("--grounding", action="store_true",
                   help="also write grounding_{train,val,test}.jsonl: referring expressions ('the pink bed', 'the "
                        "chair nearest the door') with their target's box, split unique/multiple as ScanRefer; the "
                        "other files are unchanged")
    p.add_argument("--workers", type=int, default=None, help="processes (default: min(2, CPU count))")
    p.add_argument("--l-shape-prob", type=float, default=0.3,
                   help="probability of an L-shaped room (default: %(default)s)")
    p.add_argument("--image-format", choices=["png", "jpg"], default="png",
                   help="RGB file format (default: %(default)s)")
    p.add_argument("--splits", default="0.8,0.1,0.1",
                   help="train,val,test fractions of the scenes (default: %(default)s)")
    p.add_argument("--vocab-size", type=int, default=1024, help="size of the small tokenizer (default: %(default)s)")
    p.add_argument("--no-tokenizer", action="store_true", help="skip training DIR/tokenizer")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    try:
        fractions = tuple(float(x) for x in a.splits.split(","))
    except ValueError:
        raise ConfigError(f"--splits must be three numbers like 0.8,0.1,0.1, got {a.splits!r}") from None
    stats = generate(a.out, scenes=a.scenes, views=a.views, image_size=a.image_size, seed=a.seed,
                     workers=a.workers, render_scale=a.render_scale, questions_per_scene=a.questions_per_scene,
                     train_questions_per_scene=a.train_questions_per_scene, train_describe=a.train_describe,
                     l_shape_prob=a.l_shape_prob, image_format=a.image_format, split_fractions=fractions,
                     tokenizer=not a.no_tokenizer, vocab_size=a.vocab_size, progress=not a.quiet,
                     grounding=a.grounding)
    print(format_summary(stats, a.out))
    return 0
