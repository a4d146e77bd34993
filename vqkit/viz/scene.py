"""What the figures draw of a scene: :class:`SceneView` (views, depth maps, cameras, layout) loaded from a
record, a synthetic scene folder or a record file, and the geometry derived from it (camera frusta, the
point cloud fused from the depth maps, layout outlines).

Conventions follow :mod:`vqkit.cameras`: world frame in metres, z-up; ``R, t`` world-to-camera in OpenCV
axes; ``K`` the pixel intrinsics of the stored RGB image.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vqkit import cameras as geo
from vqkit.data.cameras_file import cameras_beside, geometry_from_cameras, read_cameras
from vqkit.data.images import open_view
from vqkit.data.schema import Record, load_records
from vqkit.errors import DataError
from vqkit.roomplan import CATEGORIES, Room, RoomObject
from vqkit.roomplan.grounding import box_corners, box_from_dict
from vqkit.synth.scene import room_from_layout
from vqkit.utils.open3d import import_open3d

# One palette for everything a figure tells apart by colour: element kinds, the 16 object categories and
# the views' frusta. Every colour differs from every other (and from the white background) by a CIELAB
# distance of at least 28, so no legend entry can be mistaken for another (picked greedily, farthest
# first, from the kinds' colours; tests/viz/test_scene.py checks the distances).
KIND_COLOURS = {"wall": "#333333", "door": "#d62728", "window": "#1f77b4", "opening": "#2ca02c"}
# One colour per view for frusta (cycled).
VIEW_COLOURS = ["#ff5ae1", "#c39600", "#5a5ae1", "#a53c69", "#0fb496", "#ff0078", "#5a690f", "#b4693c"]
CATEGORY_COLOURS = dict(zip(CATEGORIES, [
    "#e1b4ff", "#c3d287", "#00d2ff", "#ffa5b4", "#694b96", "#960f87", "#3c694b", "#96b41e",
    "#7896ff", "#008796", "#ff873c", "#00e196", "#ff6978", "#a57896", "#ff87d2", "#d287ff"], strict=True))
# A category outside RoomPlan's 16 (never written by vqkit, possible in a hand-edited file).
OTHER_CATEGORY_COLOUR = "#8c8c8c"



@dataclass
class SceneView:
    """What the figures draw of one scene (V views).

    ``images`` / ``depths``: absolute paths (depths 16-bit PNG in mm, or None). ``R`` [V, 3, 3] and
    ``t`` [V, 3] world-to-camera, ``K`` [V, 3, 3] pixel intrinsics of the RGB images (all None when
    the record has no geometry). ``room``: the layout when known (synthetic ``layout.json`` or a
    Stage 2 record's ``roomplan``), else None.
    """

    images: list[str]
    depths: list[str] | None = None
    R: np.ndarray | None = None
    t: np.ndarray | None = None
    K: np.ndarray | None = None
    room: Room | None = None
    scene_id: str | None = None
    title: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def num_views(self) -> int:
        return len(self.images)

    @property
    def has_geometry(self) -> bool:
        return self.R is not None

    def image_size(self, view: int) -> tuple[int, int]:
        """(width, height) of a view's RGB file (reads the header only)."""

        with open_view(self.images[view]) as im:
            return im.size


def _room_next_to(image_path: str | os.PathLike) -> Room | None:
    """The synthetic layout stored next to a view (``scenes/<id>/layout.json``), if any."""
    layout = Path(image_path).parent / "layout.json"
    if not layout.is_file():
        return None
    return room_from_layout(json.loads(layout.read_text()))


def load_scene_dir(scene_dir: str | os.PathLike) -> SceneView:
    """A synthetic scene folder (``DIR/scenes/<id>/`` with cameras.json, layout.json, views)."""
    scene_dir = Path(scene_dir)
    cams_path = scene_dir / "cameras.json"
    if not cams_path.is_file():
        raise DataError(f"{scene_dir}: not a scene folder (no cameras.json)")
    cams = read_cameras(cams_path)
    images = [str(scene_dir / name) for name in cams]
    depths = None
    if all("depth" in c for c in cams.values()):
        depths = [str(scene_dir / Path(c["depth"]).name) for c in cams.values()]
    g = geometry_from_cameras(cams, images, None, cams_path)
    return SceneView(images, depths, g.R.astype(np.float64), g.t.astype(np.float64), g.K.astype(np.float64),
                     room=_room_next_to(images[0]), scene_id=scene_dir.name, title=scene_dir.name)


def _room_of_roomplan(roomplan: dict | None) -> Room | None:
    if roomplan is None:
        return None
    return Room.from_capturedroom(roomplan, problems=[])


def scene_from_record(record: Record | dict, root: str | os.PathLike | None = None) -> SceneView:
    """A :class:`SceneView` of one record.

    ``record``: a loaded :class:`vqkit.data.schema.Record` (absolute paths), or a raw record dict
    whose relative paths resolve against ``root`` (default: the current directory). The layout
    comes from the record's ``roomplan`` when present, else from a synthetic ``layout.json`` next
    to its first view.
    """
    if isinstance(record, Record):
        images, depths = list(record.images), record.depths
        g = record.geometry
        R, t, K = (None, None, None) if g is None else (g.R, g.t, g.K)
        roomplan, rid, sid, question = record.roomplan, record.id, record.scene_id, record.question
    elif isinstance(record, dict):
        base = Path(root) if root is not None else Path.cwd()
        images = [str(base / p) for p in record.get("images") or []]
        depths = [str(base / p) for p in record["depths"]] if record.get("depths") else None
        g = record.get("geom_token")
        R, t, K = (None, None, None) if not g else (g["R"], g["t"], g["K"])
        roomplan, rid = record.get("roomplan"), record.get("id")
        sid, question = record.get("scene_id"), record.get("question")
    else:
        raise TypeError(f"scene_from_record: expected a Record or a dict, got {type(record).__name__}")
    if not images:
        raise DataError(f"record {rid!r}: no images")
    arr = (lambda a: None if a is None else np.asarray(a, dtype=np.float64))  # noqa: E731
    room = _room_of_roomplan(roomplan) if roomplan is not None else _room_next_to(images[0])
    return SceneView(images, depths, arr(R), arr(t), arr(K), room=room, scene_id=sid,
                     title=sid or rid or "", extra={"id": rid, "question": question})


def scene_from_images(images: Sequence[str], *, roomplan: dict | None = None, scene_id: str | None = None) -> SceneView:
    """A :class:`SceneView` of views known only by their paths (a prediction row): cameras from a
    ``cameras.json`` beside them when it lists them all, the layout from ``roomplan`` or a synthetic
    ``layout.json`` beside them."""
    images = list(images)
    scene = SceneView(images, scene_id=scene_id, title=scene_id or "")
    found = cameras_beside(images)
    if found is not None:
        g = geometry_from_cameras(found[1], images, None, found[0])
        scene.R, scene.t, scene.K = (a.astype(np.float64) for a in (g.R, g.t, g.K))
    scene.room = _room_of_roomplan(roomplan) if roomplan else _room_next_to(images[0])
    return scene


def load_scene(source: Any, index: int = 0, root: str | os.PathLike | None = None) -> SceneView:
    """A :class:`SceneView` from whatever is at hand.

    ``source``: a SceneView (returned as is), a Record or record dict (:func:`scene_from_record`),
    a synthetic scene folder (:func:`load_scene_dir`), or a ``.json``/``.jsonl`` record file (its
    record number ``index``; image paths resolve as the data loader resolves them).
    """
    if isinstance(source, SceneView):
        return source
    if isinstance(source, (dict, Record)):
        return scene_from_record(source, root)
    path = Path(source)
    if path.is_dir():
        return load_scene_dir(path)
    if path.suffix in (".json", ".jsonl"):
        records = load_records(str(path), check_files=False)
        if not records:
            raise DataError(f"{path}: no records")
        if not 0 <= index < len(records):
            raise DataError(f"{path}: record index {index} out of range (0..{len(records) - 1})")
        return scene_from_record(records[index])
    raise DataError(f"{source}: expected a scene folder or a .json/.jsonl record file")



def frusta(scene: SceneView, depth: float = 0.5) -> list[np.ndarray]:
    """World corners [5, 3] per view (centre, then image corners TL, TR, BR, BL at ``depth`` m)."""
    if not scene.has_geometry:
        return []
    out = []
    for v in range(scene.num_views):
        w, h = scene.image_size(v)
        out.append(geo.frustum_corners(scene.K[v], scene.R[v], scene.t[v], w, h, depth))
    return out


def load_depth_m(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return geo.depth_png_to_metres(np.asarray(im))


def fused_point_cloud(scene: SceneView, stride: int = 2, voxel: float = 0.05, max_points: int = 20000,
                      max_depth: float = 10.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Back-project every view's depth map into the world and fuse: ``(points [N, 3], rgb [N, 3] in [0, 1])``.

    Depth maps may have another resolution than the RGB images (ScanNet: 640x480 vs 1296x968): K is
    rescaled to the depth map. Every ``stride``-th pixel is used, depths beyond ``max_depth`` are
    dropped, the union is voxel-downsampled with open3d (colours averaged per voxel) and at most
    ``max_points`` random points (fixed ``seed``) are kept. Empty arrays without depths or geometry.
    """
    from PIL import Image

    if not scene.has_geometry or not scene.depths:
        return np.zeros((0, 3)), np.zeros((0, 3))
    pts, cols = [], []
    for v in range(scene.num_views):
        depth = load_depth_m(scene.depths[v])
        depth = np.where(depth <= max_depth, depth, 0.0)
        h, w = depth.shape
        with open_view(scene.images[v]) as im:
            K = geo.resize_intrinsics(scene.K[v], im.size, (w, h))
            rgb = np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float64) / 255.0
        p = geo.backproject_depth(depth, K, scene.R[v], scene.t[v], stride=stride)
        d = depth[::stride, ::stride]
        valid = np.isfinite(d) & (d > 0)  # the same pixels, in the same order, as backproject_depth
        pts.append(p)
        cols.append(rgb[::stride, ::stride][valid])
    points, colours = np.concatenate(pts), np.concatenate(cols)
    if len(points) and voxel > 0:
        o3d = import_open3d()
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
        pcd.colors = o3d.utility.Vector3dVector(colours)
        pcd = pcd.voxel_down_sample(voxel)
        points, colours = np.asarray(pcd.points), np.asarray(pcd.colors)
    if len(points) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))
        points, colours = points[keep], colours[keep]
    return points, colours


def box_corners_3d(center: Sequence[float], size: Sequence[float], yaw: float) -> np.ndarray:
    """Corners [8, 3] of an upright box: ``size`` = (width along yaw, height, depth), RoomPlan order.

    Bottom face first (counter-clockwise seen from above), then the top face in the same order.
    """
    return box_corners(RoomObject("", "", center, size, yaw))


#: Colours of a grounding answer's boxes: the gold box (solid) and the predicted one (dashed).
GOLD_BOX_COLOUR, PREDICTED_BOX_COLOUR = "#2ca02c", "#d62728"


def grounding_boxes(row: dict) -> list[dict]:
    """The gold and predicted boxes of a grounding prediction row (scene frame, as ``vqkit eval`` keeps
    them) as line drawings like :func:`layout_segments`' (``dash`` True for the prediction); empty for
    any other row."""
    out = []
    for key, name, colour, dash in (("box", "gold", GOLD_BOX_COLOUR, False),
                                    ("pred_box", "predicted", PREDICTED_BOX_COLOUR, True)):
        if row.get(key):
            box = box_from_dict(row[key])
            out.append({"kind": f"{name} box", "label": f"{name}: {box.category}", "colour": colour, "dash": dash,
                        "corners": box_corners(box), "edges": BOX_EDGES, "box": box})
    return out


# Edges of box_corners_3d as index pairs.
BOX_EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]
# Edges of a frustum [5, 3]: centre to each corner, then the image rectangle.
FRUSTUM_EDGES = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4), (4, 1)]


def surface_corners(center: Sequence[float], width: float, height: float, yaw: float) -> np.ndarray:
    """Corners [4, 3] of a vertical rectangle (wall, door, window): bottom-left, bottom-right,
    top-right, top-left seen from the side its width direction (cos yaw, sin yaw) points right."""
    c = np.asarray(center, dtype=np.float64)
    u = np.array([math.cos(yaw), math.sin(yaw), 0.0]) * width / 2
    z = np.array([0.0, 0.0, height / 2])
    return np.stack([c - u - z, c + u - z, c + u + z, c - u + z])


def layout_segments(room: Room) -> list[dict]:
    """Line drawings of a layout: one dict per element, ``{"kind", "label", "colour", "corners",
    "edges"}``; corners [N, 3] in the world, edges index pairs. Walls, doors, windows and openings
    are vertical rectangles; objects are upright boxes coloured by category."""
    out = []
    for w in room.walls:
        out.append({"kind": "wall", "label": f"wall {w.id}", "colour": KIND_COLOURS["wall"],
                    "corners": surface_corners(w.center, w.width, w.height, w.yaw),
                    "edges": [(0, 1), (1, 2), (2, 3), (3, 0)]})
    for s in room.surfaces():
        out.append({"kind": s.kind, "label": f"{s.kind} {s.id}", "colour": KIND_COLOURS[s.kind],
                    "corners": surface_corners(s.center, s.width, s.height, s.yaw),
                    "edges": [(0, 1), (1, 2), (2, 3), (3, 0)]})
    for o in room.objects:
        out.append({"kind": "object", "label": o.category, "colour": hex_colour(category_colour(o.category)),
                    "corners": box_corners_3d(o.center, o.size, o.yaw), "edges": BOX_EDGES})
    return out


def hex_colour(rgba: Sequence[float]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(round(255 * c)) for c in rgba[:3]))


def category_colour(category: str) -> tuple:
    """The RGBA colour of an object category (:data:`CATEGORY_COLOURS`): one of its own, unlike any
    kind's or view's colour."""
    from matplotlib.colors import to_rgba

    return to_rgba(CATEGORY_COLOURS.get(category, OTHER_CATEGORY_COLOUR))


def polyline(corners: np.ndarray, edges: Iterable[tuple[int, int]]) -> np.ndarray:
    """Edges as one [M, 3] array with NaN rows between segments (one plot call per element)."""
    rows = []
    for a, b in edges:
        rows += [corners[a], corners[b], [np.nan] * corners.shape[1]]
    return np.asarray(rows, dtype=np.float64)
