"""``vqkit prep scanqa|sqa3d|scanrefer|arkit``: convert the official datasets to vqkit records; ``vqkit prep geometry``:
fill the camera geometry of records without it (:func:`vqkit.prep.fill_geometry.fill_geometry`);
``vqkit prep conversations`` / ``export-conversations``: conversation files to records and back
(:mod:`vqkit.prep.conversations`).

Each converter is a library function (:func:`vqkit.prep.scanqa.convert`, :func:`vqkit.prep.sqa3d.convert`,
:func:`vqkit.prep.arkit.convert`); this command parses its options and prints its summary. See
``docs/real_data.md`` for where to get the data, the commands and the output layout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vqkit.errors import ConfigError

CONVERTERS = {
    "scanqa": "ScanQA questions + ScanNet frames",
    "sqa3d": "SQA3D situated questions + ScanNet frames",
    "scanrefer": "ScanRefer descriptions + ScanNet scans and frames -> grounding records",
    "arkit": "ARKitScenes 3DOD scans -> Stage 2 RoomPlan records",
    "geometry": "fill geom_token of records without poses with VGGT's predicted cameras",
    "conversations": "LLaVA / Qwen-VL-finetune conversation files -> records (posed_images geometry read)",
    "export-conversations": "records -> the Qwen-VL-finetune conversation layout (for other trainers)",
}

USAGE = ("usage: vqkit prep {scanqa,sqa3d,scanrefer,arkit,geometry,conversations,export-conversations} [options]   "
         "(vqkit prep NAME --help for its options)")


def _add_scannet_args(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``vqkit prep scanqa`` and ``vqkit prep sqa3d`` (:class:`vqkit.prep.scannet.FrameOptions`)."""
    parser.add_argument("--scannet", required=True, type=Path,
                        help="ScanNet frames: the SensReader output (<scene>/color|depth|pose|intrinsic) "
                             "or a folder with posed_images/<scene>/")
    parser.add_argument("--out", required=True, type=Path, help="output folder (records + frames/)")
    parser.add_argument("--num-views", type=int, default=8, help="views per scene (default 8)")
    parser.add_argument("--image-size", type=int, default=448,
                        help="width of the written JPEGs; height keeps the aspect ratio (default 448)")
    parser.add_argument("--depth-bins", type=int, default=16, help="bins of depth_hist over [0, 10] m")
    parser.add_argument("--workers", type=int, default=1, help="processes converting scenes in parallel")
    parser.add_argument("--limit-scenes", type=int, default=None,
                        help="convert only the first N scenes (sorted), e.g. for a quick look")


def _frame_options(args):
    from vqkit.prep.scannet import FrameOptions

    return FrameOptions(scannet=args.scannet, out=args.out, num_views=args.num_views, image_size=args.image_size,
                        depth_bins=args.depth_bins, workers=args.workers, limit_scenes=args.limit_scenes,
                        scans=getattr(args, "align_scans", None))


def _scannet_questions(name: str, argv: list[str], annotations_help: str) -> int:
    """``vqkit prep scanqa`` / ``vqkit prep sqa3d``: questions + ScanNet frames -> records."""
    import importlib

    converter = importlib.import_module(f"vqkit.prep.{name}")
    parser = argparse.ArgumentParser(
        prog=f"vqkit prep {name}",
        description=f"{CONVERTERS[name]} -> vqkit records (OUT/<split>.jsonl, OUT/frames/).")
    parser.add_argument("--annotations", required=True, type=Path, help=annotations_help)
    _add_scannet_args(parser)
    parser.add_argument("--splits", default="train,val", help=f"comma list of {','.join(converter.SPLITS)}")
    if name == "scanqa":
        parser.add_argument("--scans", dest="align_scans", type=Path, default=None,
                            help="ScanNet scans (<scene>/<scene>.txt): poses in the axis-aligned frame of ScanQA's "
                                 "boxes (what `vqkit eval --scanqa-export` boxes are compared in)")
    args = parser.parse_args(argv)
    summary = converter.convert(args.annotations, _frame_options(args), args.splits)
    print(summary.report(args.out))
    return 0


def scanqa(argv: list[str]) -> int:
    return _scannet_questions("scanqa", argv, "folder with ScanQA_v1.0_<split>.json, or one such file")


def sqa3d(argv: list[str]) -> int:
    return _scannet_questions("sqa3d", argv, "SQA3D balanced-data folder with "
                                             "v1_balanced_{questions,sqa_annotations}_<split>_scannetv2.json")


def scanrefer(argv: list[str]) -> int:
    from vqkit.prep import scanrefer as converter

    parser = argparse.ArgumentParser(
        prog="vqkit prep scanrefer",
        description="ScanRefer descriptions + ScanNet scans (instance boxes, axis-aligned) and frames -> grounding "
                    "records (OUT/<split>.jsonl, OUT/frames/).")
    parser.add_argument("--annotations", required=True, type=Path,
                        help="folder with ScanRefer_filtered_<split>.json, or one such file")
    _add_scannet_args(parser)
    parser.add_argument("--scans", type=Path, default=None,
                        help="ScanNet scans (<scene>/<scene>_vh_clean_2.ply, .segs.json, .aggregation.json, "
                             "<scene>.txt), as <scene>/ or scans/<scene>/ (default: --scannet)")
    parser.add_argument("--label-map", type=Path, default=None,
                        help="scannetv2-labels.combined.tsv: unique/multiple by nyu40class, as ScanRefer (default: by "
                             "the raw label)")
    parser.add_argument("--splits", default="train,val", help=f"comma list of {','.join(converter.SPLITS)}")
    args = parser.parse_args(argv)
    summary = converter.convert(args.annotations, _frame_options(args), args.splits, scans=args.scans,
                                label_map=args.label_map)
    print(summary.report(args.out))
    return 0


def arkit(argv: list[str]) -> int:
    from vqkit.prep import arkit as converter

    parser = argparse.ArgumentParser(
        prog="vqkit prep arkit",
        description="ARKitScenes 3DOD scans -> Stage 2 records (OUT/roomplan_{train,val}.jsonl, OUT/frames/).")
    parser.add_argument("--root", required=True, type=Path,
                        help="ARKitScenes 3dod folder holding Training/ and Validation/")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--num-views", type=int, default=8, help="views per scan (default 8)")
    parser.add_argument("--image-size", type=int, default=448,
                        help="width of the written JPEGs, never upsampled (lowres_wide is 256 wide)")
    parser.add_argument("--depth-bins", type=int, default=16, help="bins of depth_hist over [0, 10] m")
    parser.add_argument("--splits", default="Training,Validation", help="comma list of Training,Validation")
    parser.add_argument("--workers", type=int, default=1, help="processes converting scans in parallel")
    parser.add_argument("--limit-scenes", type=int, default=None, help="convert only the first N scans per split")
    args = parser.parse_args(argv)
    summary = converter.convert(args.root, args.out, num_views=args.num_views, image_size=args.image_size,
                                depth_bins=args.depth_bins, splits=args.splits, workers=args.workers,
                                limit_scenes=args.limit_scenes)
    print(summary.report(args.out))
    return 0


def geometry(argv: list[str]) -> int:
    from vqkit.prep.fill_geometry import fill_geometry
    from vqkit.utils.runtime import resolve_device

    parser = argparse.ArgumentParser(
        prog="vqkit prep geometry",
        description="Give the records without camera geometry (geom_token missing or null) the poses, intrinsics "
                    "and depth histograms VGGT's camera and depth heads predict from their views; every other "
                    "field is kept. Writes OUT atomically; IN is never modified.",
        epilog="examples:\n"
               "  vqkit prep geometry --records data/seed/val.jsonl --model runs/demo/final "
               "--out data/seed/val_geom.jsonl\n"
               "  vqkit prep geometry --records val.jsonl --model runs/enc/encoder/model.safetensors "
               "--out val_pred.jsonl --replace",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", required=True, type=Path, help="record file (JSONL or JSON array)")
    parser.add_argument("--model", required=True,
                        help="vqkit model folder (RUN/final: its model.encoder weights and data settings) or a "
                             "whole-VGGT weights file / folder / hub id (RUN/encoder/model.safetensors, the official "
                             "model.pt)")
    parser.add_argument("--out", required=True, type=Path, help="output record file (not IN)")
    parser.add_argument("--replace", action="store_true", help="predict for every record, replacing its own geometry")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument("--image-size", type=int, help="image width fed to VGGT (default: the model's)")
    parser.add_argument("--median-depth", type=float, metavar="METRES",
                        help="scale prior for records without depth maps (default: model.geometry.median_depth_m, 2.6)")
    parser.add_argument("--image-root", help="root of relative image paths (default: the folder of --records)")
    parser.add_argument("--allow-outside-root", action="store_true", help="allow paths outside the root")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override the model folder's config, e.g. model.encoder.weights=FILE")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    args = parser.parse_args(argv)
    if args.image_size is not None and (args.image_size < 14 or args.image_size % 14):
        raise ConfigError(f"--image-size must be a positive multiple of 14, got {args.image_size}")
    if args.median_depth is not None and args.median_depth <= 0:
        raise ConfigError(f"--median-depth must be > 0 metres, got {args.median_depth}")
    report = fill_geometry(args.records, args.out, args.model, replace=args.replace, overwrite=args.overwrite,
                           overrides=args.overrides, image_size=args.image_size, median_depth_m=args.median_depth,
                           image_root=args.image_root, allow_outside_root=args.allow_outside_root,
                           device=resolve_device(args.device))
    print(report.summary(args.out))
    for note in report.notes:
        print(f"vqkit prep geometry: note: {note}", file=sys.stderr)
    return 0


def _conversion_parser(name: str, description: str, epilog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"vqkit prep {name}", description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in", dest="src", required=True, type=Path, help="input file (JSON array or JSONL)")
    parser.add_argument("--out", required=True, type=Path, help="output file (not the input)")
    parser.add_argument("--image-root", help="root of the input's relative paths (default: its folder)")
    parser.add_argument("--allow-outside-root", action="store_true", help="allow paths outside the root")
    parser.add_argument("--depth-bins", type=int, default=16, help="bins of depth_hist over [0, 10] m (default 16)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip bad samples (counted and reported) instead of stopping at the first")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return parser


def conversations(argv: list[str]) -> int:
    from vqkit.prep.conversations import to_records

    parser = _conversion_parser(
        "conversations", "Read a LLaVA / Qwen-VL-finetune conversation file (image, images or video; conversations "
        "or messages) and write its vqkit records: one per assistant turn, the camera geometry of ScanNet "
        "posed_images frames filled in (docs/data_formats.md).",
        "example:\n  vqkit prep conversations --in data/vgllm/sqa3d_test_32frame.json --image-root data/vgllm "
        "--out data/vgllm/sqa3d_test.jsonl")
    parser.add_argument("--video-frames", type=int, default=32,
                        help="frames a video gives its records, spread evenly (default 32, data.video_frames)")
    args = parser.parse_args(argv)
    summary = to_records(args.src, args.out, image_root=args.image_root, allow_outside_root=args.allow_outside_root,
                         depth_bins=args.depth_bins, video_frames=args.video_frames,
                         on_error="skip" if args.skip_bad else "raise", overwrite=args.overwrite)
    print(summary.text("samples", "records"))
    return 0


def export_conversations(argv: list[str]) -> int:
    from vqkit.prep.conversations import to_conversations

    parser = _conversion_parser(
        "export-conversations", "Write vqkit records in the Qwen-VL-finetune conversation layout (one sample per "
        "record, a conversation's turns as one sample; every vqkit field kept), so other trainers read vqkit's "
        "data and vqkit reads it back as the same records.",
        "example:\n  vqkit prep export-conversations --in data/synth/val.jsonl --out data/synth/val_conversations.json")
    args = parser.parse_args(argv)
    summary = to_conversations(args.src, args.out, image_root=args.image_root,
                               allow_outside_root=args.allow_outside_root, depth_bins=args.depth_bins,
                               on_error="skip" if args.skip_bad else "raise", overwrite=args.overwrite)
    print(summary.text("records", "samples"))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        for name, what in CONVERTERS.items():
            print(f"  {name:20s} {what}")
        return 0 if argv else 2
    name = argv[0]
    if name not in CONVERTERS:
        raise ConfigError(f"unknown dataset '{name}'; choose from {', '.join(CONVERTERS)}")
    return {"scanqa": scanqa, "sqa3d": sqa3d, "scanrefer": scanrefer, "arkit": arkit, "geometry": geometry,
            "conversations": conversations,
            "export-conversations": export_conversations}[name](argv[1:])
