"""Contact sheet of synthetic rooms: per room a caption, its RGB views, and their depth maps below.

    python scripts/contact_sheet.py data/synth --scenes 0 3 7 12 --out docs/synth_contact_sheet.png

The README's picture of the synthetic benchmark is made with this script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vqkit import cameras as geo


def room_caption(layout: dict) -> str:
    room = layout["room"]
    objects = sorted({f"{o['colour']} {o['category']}" for o in layout["objects"]}, key=lambda s: s.split()[1])
    paint = f"{room.get('wall_colour', '?')} walls, {room.get('floor_colour', '?')} floor"
    shape = " L" if room.get("notch") else ""
    return f"{layout['scene_id']} {room['width']:.1f}x{room['length']:.1f} m{shape}, {paint}: {', '.join(objects)}"


def depth_colours(depth_m: np.ndarray, max_depth: float) -> np.ndarray:
    """uint8 RGB of a depth map (near = blue, far = red); invalid pixels black."""
    import matplotlib

    rgba = matplotlib.colormaps["turbo"](np.clip(depth_m / max_depth, 0, 1))
    rgba[depth_m <= 0] = (0, 0, 0, 1)
    return (rgba[..., :3] * 255).astype(np.uint8)


def contact_sheet(folder: Path, scenes: list[int], tile: int = 160) -> Image.Image:
    rows = []
    for index in scenes:
        scene_dir = folder / "scenes" / f"scene{index:05d}"
        layout = json.loads((scene_dir / "layout.json").read_text())
        cameras = json.loads((scene_dir / "cameras.json").read_text())
        rgb = [Image.open(folder / c["image"]).convert("RGB").resize((tile, tile), Image.NEAREST) for c in cameras]
        depth = [geo.depth_png_to_metres(np.array(Image.open(folder / c["depth"]))) for c in cameras]
        top = max(float(d.max()) for d in depth)
        depth = [Image.fromarray(depth_colours(d, top)).resize((tile, tile), Image.NEAREST) for d in depth]
        row = Image.new("RGB", (tile * len(rgb), 2 * tile + 16), "white")
        for v, (a, b) in enumerate(zip(rgb, depth, strict=True)):
            row.paste(a, (v * tile, 16))
            row.paste(b, (v * tile, 16 + tile))
        ImageDraw.Draw(row).text((3, 2), room_caption(layout), fill="black")
        rows.append(row)
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a `vqkit synth` output folder")
    parser.add_argument("--scenes", type=int, nargs="+", default=[0, 3, 7, 12], help="scene indices")
    parser.add_argument("--out", type=Path, default=Path("docs/synth_contact_sheet.png"))
    args = parser.parse_args()
    contact_sheet(args.folder, args.scenes).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
