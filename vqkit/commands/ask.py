"""``vqkit ask``: answer a question about a set of photos with a saved model (or, with ``--roomplan``,
write the room's layout as CapturedRoom JSON). See :mod:`vqkit.eval.ask`.

The arguments, photos and cameras are checked before the model loads; what is left out (photos beyond
``data.num_views``, camera geometry that was not found) or predicted (camera geometry from VGGT's heads,
``model.geometry.source`` auto or heads) is said on stderr as ``vqkit ask: note: ...``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vqkit.commands.common import add_overrides_argument
from vqkit.errors import ConfigError
from vqkit.utils.runtime import resolve_device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqkit ask",
        description="Answer a question about a set of photos of a room, or a video, with a saved model.",
        epilog='examples:\n'
               '  vqkit ask --model runs/demo/final --images a.jpg b.jpg --question "What colour is the sofa?"\n'
               '  vqkit ask --model runs/demo/final --images kitchen/ --question "How many chairs are there?"\n'
               '  vqkit ask --model runs/demo/final --video walkthrough.mp4 --question "How many chairs are there?"\n'
               '  vqkit ask --model runs/demo/final --video scannet/posed_images/scene0000_00 --question "..."\n'
               '  vqkit ask --model runs/stage2_demo/final --images a.jpg b.jpg --roomplan --out room.json\n'
               '  vqkit ask --model runs/grounding_demo/final --images a.jpg b.jpg --ground "the pink bed" '
               '--out bed.json',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="saved model folder (RUN/final)")
    media = parser.add_mutually_exclusive_group(required=True)
    media.add_argument("--images", nargs="+", metavar="IMAGE",
                       help="photos of the scene, or folders of them (read in name order; depth and label maps, "
                            "single-channel, left out); an animated GIF gives its frames. More than "
                            "data.num_views are subsampled evenly; a note names the ones used")
    media.add_argument("--video", metavar="VIDEO",
                       help="a video file (decoded with PyAV) or a folder of frames (a ScanNet posed_images folder's "
                            "poses are read): data.video_frames frames spread over it, data.num_views of them used")
    parser.add_argument("--question", help="the question (required unless --roomplan)")
    parser.add_argument("--roomplan", action="store_true",
                        help="Stage 2: generate the room's layout and write it as CapturedRoom JSON "
                             "(the question defaults to the Stage 2 prompt)")
    parser.add_argument("--ground", metavar="EXPRESSION",
                        help="grounding: print the box of the object this referring expression names ('the pink bed')")
    parser.add_argument("--out", metavar="FILE", help="with --roomplan: write the JSON here instead of stdout; with "
                                                      "--ground: also write the box as JSON here")
    parser.add_argument("--situation", help="SQA3D-style situation text placed before the question")
    parser.add_argument("--max-new-tokens", type=int, help="generation budget (default eval.max_new_tokens; "
                                                            "eval.roomplan_max_new_tokens with --roomplan)")
    parser.add_argument("--blind", action="store_true", help="ignore the photos (text-only baseline)")
    geometry = parser.add_mutually_exclusive_group()
    geometry.add_argument("--cameras", metavar="FILE",
                          help="camera poses of the photos: a JSON list of {image, R, t, K, depth_hist} "
                               "(default: cameras.json next to the photos when it lists them all)")
    geometry.add_argument("--no-geometry", action="store_true",
                          help="no camera geometry, even if a cameras.json is found (nor predicted by VGGT's heads)")
    add_overrides_argument(parser, "config override on top of the model's config, e.g. eval.do_sample=true")
    parser.add_argument("--encoder-weights", help="VGGT checkpoint path when the saved one does not exist here")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    return parser


def main(argv: list[str] | None = None) -> int:
    from vqkit.eval.ask import answer_prepared, check_roomplan_model, layout_prepared, prepare_ask
    from vqkit.models.builder import load_model, load_model_config
    from vqkit.roomplan import ROOMPLAN_QUESTION
    from vqkit.roomplan.grounding import grounding_question

    args = build_parser().parse_args(argv)
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    asked = sum(x is not None and x is not False for x in (args.question, args.ground, args.roomplan))
    if asked == 0:
        raise ConfigError("--question is required (or --ground EXPRESSION for a box, --roomplan for the room's layout)")
    if asked > 1:
        raise ConfigError("give only one of --question, --ground and --roomplan")
    if args.ground is not None and not args.ground.strip():
        raise ConfigError("--ground needs a referring expression, e.g. --ground 'the pink bed'")
    if args.out and not (args.roomplan or args.ground):
        raise ConfigError("--out writes a layout or a box: use it with --roomplan or --ground")
    if args.roomplan and args.situation:
        raise ConfigError("--situation does not apply to --roomplan")
    cameras = False if args.no_geometry else args.cameras
    model_dir = Path(args.model)
    cfg = load_model_config(model_dir, args.overrides)
    if args.encoder_weights:
        cfg.model.encoder.weights = args.encoder_weights  # what prepare_ask checks for geometry heads
    # Everything about the input before the model loads (seconds): a mistake costs nothing.
    if args.roomplan:
        check_roomplan_model(cfg, str(model_dir))
    question = ROOMPLAN_QUESTION if args.roomplan else grounding_question(args.ground) if args.ground else args.question
    prepared = prepare_ask(cfg, args.images, question, situation=args.situation, blind=args.blind, cameras=cameras,
                           video=args.video)
    for note in prepared.notes:
        print(f"vqkit ask: note: {note}", file=sys.stderr)
    model = load_model(model_dir, device=resolve_device(args.device), encoder_weights=args.encoder_weights,
                       geometry_source=prepared.geometry_source)
    if args.ground:
        return _ground(model, prepared, args, cfg)
    if not args.roomplan:
        print(answer_prepared(model, prepared, max_new_tokens=args.max_new_tokens, blind=args.blind, cfg=cfg))
        return 0
    room, problems, _ = layout_prepared(model, prepared, max_new_tokens=args.max_new_tokens, blind=args.blind,
                                        cfg=cfg)
    text = json.dumps(room.to_capturedroom(), indent=2) + "\n"
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    else:
        sys.stdout.write(text)
    print(f"layout: {room.counts()}" + (f" written to {args.out}" if args.out else ""), file=sys.stderr)
    if problems:
        print(f"{len(problems)} parse problem(s) in the generated layout:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    return 0


def _ground(model, prepared, args, cfg) -> int:
    """``--ground``: print the box (and the generated line), write it as JSON with ``--out``."""
    from vqkit.eval.ask import ground_prepared
    from vqkit.utils.files import write_json_atomic

    found = ground_prepared(model, prepared, args.ground, max_new_tokens=args.max_new_tokens, blind=args.blind,
                            cfg=cfg)
    print(found.summary())
    print(f"answer: {found.text}", file=sys.stderr)
    if found.frame != "scene":
        print("vqkit ask: note: the photos have no camera geometry: the box is in the first photo's frame (its camera "
              "at x = y = 0 looking along +y)", file=sys.stderr)
    for problem in found.problems:
        print(f"  parse problem: {problem}", file=sys.stderr)
    if args.out:
        write_json_atomic(args.out, found.to_dict())
        print(f"box written to {args.out}", file=sys.stderr)
    return 0
