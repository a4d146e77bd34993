"""``vqkit eval-geometry``: how well a VGGT's camera and depth heads predict the poses and depth of posed
rooms, beside the same architecture untrained (:func:`vqkit.eval.geometry_errors.compare_geometry`)."""

from __future__ import annotations

import argparse
import json

from vqkit.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqkit eval-geometry",
        description="Median rotation error and translation-direction error of the predicted relative poses "
                    "(every pair of views, degrees) and depth AbsRel after median scaling, on the first N "
                    "rooms (distinct view sets with poses and depth maps) of a record file; beside them the "
                    "same figures for the same architecture untrained.",
        epilog="example:\n  vqkit eval-geometry --encoder runs/camera_depth_heads/encoder/model.safetensors "
               "--data data/synth/val.jsonl --rooms 300",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--encoder", required=True,
                        help="whole-VGGT weights: RUN/encoder/model.safetensors of vqkit pretrain-encoder, the "
                             "official model.pt, a folder holding one, or a hub id")
    parser.add_argument("--data", action="append", required=True, metavar="FILE",
                        help="records with poses (geom_token) and depth maps (depths); repeatable")
    parser.add_argument("--rooms", type=int, default=300, help="distinct view sets to evaluate (default 300)")
    parser.add_argument("--views", type=int, default=8, help="views per room, chosen evenly (default 8)")
    parser.add_argument("--image-size", type=int, help="image width (default: the size the file was trained at)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the untrained encoder")
    parser.add_argument("--batch-size", type=int, default=8, help="rooms per forward pass (default 8)")
    parser.add_argument("--out", metavar="FILE", help="also write the figures as JSON here")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    return parser


def main(argv: list[str] | None = None) -> int:
    from vqkit.eval.geometry_errors import compare_geometry, format_geometry_table
    from vqkit.utils.files import write_json_atomic
    from vqkit.utils.runtime import resolve_device

    args = build_parser().parse_args(argv)
    for name in ("rooms", "views", "batch_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.image_size is not None and (args.image_size < 14 or args.image_size % 14):
        raise ConfigError(f"--image-size must be a positive multiple of 14, got {args.image_size}")
    result = compare_geometry(args.encoder, args.data, rooms=args.rooms, baseline=not args.no_baseline,
                              views=args.views, image_size=args.image_size, batch_size=args.batch_size,
                              device=resolve_device(args.device), progress=True)
    print(format_geometry_table(result))
    if args.out:
        write_json_atomic(args.out, result)
        print(f"written to {args.out}")
    else:
        print(json.dumps({k: result[k] for k in ("trained", "untrained") if k in result}))
    return 0
