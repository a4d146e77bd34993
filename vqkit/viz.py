"""Plots and widgets for the notebooks, usable from scripts and tests.

Everything draws from the kit's own data structures, so a notebook cell is one call:

- :func:`load_scene` -> :class:`SceneView`: the views, depth maps, cameras and layout of one scene,
  from a record (dict or :class:`vqkit.data.schema.Record`), a synthetic scene folder
  (``scenes/<id>/`` with ``cameras.json`` and ``layout.json``) or a record file.
- :func:`pose_figure`: the **3D pose figure**: camera frusta of every view, the point cloud fused
  from the depth maps (voxel-downsampled with open3d) and the room's layout (walls, doors, windows,
  object boxes). ``backend="plotly"`` is interactive; ``"matplotlib"`` is the static fallback for
  headless runs and PNG export. :func:`open3d_geometries` gives the same scene as open3d geometry for
  ``open3d.visualization.draw_geometries`` / ``draw_plotly`` on machines with a display.
- :func:`views_grid`, :func:`records_table`, :func:`qtype_stats_figure`: data inspection.
- :func:`plot_training_curves`: loss and learning rates from ``RUN/metrics.jsonl``.
- :func:`metrics_table`, :func:`plot_qtype_bars`: evaluation results of several runs side by side.
- :func:`plot_layout_topdown`: a RoomPlan layout from above, gold solid and prediction dashed.
- :class:`AnswerViewer`: ipywidgets browser over ``predictions.jsonl``: filter by task, qtype and
  correctness, step through examples, see views, camera poses, question, situation, gold answers
  and the prediction (Stage 2: predicted vs gold layout from above). Its state is plain attributes
  (``filtered``, ``current``, ``text.value``, ``image.value``, ``figure``) so tests drive it headless.

Conventions follow :mod:`vqkit.data.geometry`: world frame in metres, z-up; ``R, t`` world-to-camera
in OpenCV axes; ``K`` the pixel intrinsics of the stored RGB image. Heavy imports (matplotlib,
plotly, open3d, ipywidgets) happen inside the functions that need them.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from vqkit.data import geometry as geo
from vqkit.data.schema import cameras_beside
from vqkit.errors import DataError
from vqkit.roomplan import CATEGORIES, Room, box_corners_2d

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from vqkit.data.schema import Record

# Element colours; objects take a colour per category from a qualitative map.
_KIND_COLOURS = {"wall": "#333333", "door": "#d62728", "window": "#1f77b4", "opening": "#2ca02c"}
# One colour per view for frusta (cycled).
_VIEW_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"]


# ----------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------


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
        from PIL import Image

        with Image.open(self.images[view]) as im:
            return im.size


def _room_next_to(image_path: str | os.PathLike) -> Room | None:
    """The synthetic layout stored next to a view (``scenes/<id>/layout.json``), if any."""
    layout = Path(image_path).parent / "layout.json"
    if not layout.is_file():
        return None
    from vqkit.data.synth import room_from_layout

    return room_from_layout(json.loads(layout.read_text()))


def load_scene_dir(scene_dir: str | os.PathLike) -> SceneView:
    """A synthetic scene folder (``DIR/scenes/<id>/`` with cameras.json, layout.json, views)."""
    scene_dir = Path(scene_dir)
    cams_path = scene_dir / "cameras.json"
    if not cams_path.is_file():
        raise DataError(f"{scene_dir}: not a scene folder (no cameras.json)")
    try:
        cams = json.loads(cams_path.read_text())
        images = [str(scene_dir / Path(c["image"]).name) for c in cams]
        depths = [str(scene_dir / Path(c["depth"]).name) for c in cams] if all("depth" in c for c in cams) else None
        R = np.array([c["R"] for c in cams], dtype=np.float64)
        t = np.array([c["t"] for c in cams], dtype=np.float64)
        K = np.array([c["K"] for c in cams], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{cams_path}: malformed cameras ({e})") from None
    return SceneView(images, depths, R, t, K, room=_room_next_to(images[0]), scene_id=scene_dir.name,
                     title=scene_dir.name)


def _room_of_roomplan(roomplan: dict | None) -> Room | None:
    if roomplan is None:
        return None
    return Room.from_capturedroom(roomplan, problems=[])


def scene_from_record(record: "Record | dict", root: str | os.PathLike | None = None) -> SceneView:
    """A :class:`SceneView` of one record.

    ``record``: a loaded :class:`vqkit.data.schema.Record` (absolute paths), or a raw record dict
    whose relative paths resolve against ``root`` (default: the current directory). The layout
    comes from the record's ``roomplan`` when present, else from a synthetic ``layout.json`` next
    to its first view.
    """
    from vqkit.data.schema import Record

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
        roomplan, rid, sid, question = record.get("roomplan"), record.get("id"), record.get("scene_id"), record.get("question")
    else:
        raise TypeError(f"scene_from_record: expected a Record or a dict, got {type(record).__name__}")
    if not images:
        raise DataError(f"record {rid!r}: no images")
    arr = (lambda a: None if a is None else np.asarray(a, dtype=np.float64))  # noqa: E731
    room = _room_of_roomplan(roomplan) if roomplan is not None else _room_next_to(images[0])
    return SceneView(images, depths, arr(R), arr(t), arr(K), room=room, scene_id=sid,
                     title=sid or rid or "", extra={"id": rid, "question": question})


def load_scene(source: Any, index: int = 0, root: str | os.PathLike | None = None) -> SceneView:
    """A :class:`SceneView` from whatever is at hand.

    ``source``: a SceneView (returned as is), a Record or record dict (:func:`scene_from_record`),
    a synthetic scene folder (:func:`load_scene_dir`), or a ``.json``/``.jsonl`` record file (its
    record number ``index``; image paths resolve as the data loader resolves them).
    """
    from vqkit.data.schema import Record

    if isinstance(source, SceneView):
        return source
    if isinstance(source, (dict, Record)):
        return scene_from_record(source, root)
    path = Path(source)
    if path.is_dir():
        return load_scene_dir(path)
    if path.suffix in (".json", ".jsonl"):
        from vqkit.data.schema import load_records

        records = load_records(str(path), check_files=False)
        if not records:
            raise DataError(f"{path}: no records")
        if not 0 <= index < len(records):
            raise DataError(f"{path}: record index {index} out of range (0..{len(records) - 1})")
        return scene_from_record(records[index])
    raise DataError(f"{source}: expected a scene folder or a .json/.jsonl record file")


# ----------------------------------------------------------------------------------------------
# Geometry to draw
# ----------------------------------------------------------------------------------------------


def frusta(scene: SceneView, depth: float = 0.5) -> list[np.ndarray]:
    """World corners [5, 3] per view (centre, then image corners TL, TR, BR, BL at ``depth`` m)."""
    if not scene.has_geometry:
        return []
    out = []
    for v in range(scene.num_views):
        w, h = scene.image_size(v)
        out.append(geo.frustum_corners(scene.K[v], scene.R[v], scene.t[v], w, h, depth))
    return out


def _load_depth_m(path: str) -> np.ndarray:
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
        depth = _load_depth_m(scene.depths[v])
        depth = np.where(depth <= max_depth, depth, 0.0)
        h, w = depth.shape
        with Image.open(scene.images[v]) as im:
            K = geo.resize_intrinsics(scene.K[v], im.size, (w, h))
            rgb = np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float64) / 255.0
        p = geo.backproject_depth(depth, K, scene.R[v], scene.t[v], stride=stride)
        d = depth[::stride, ::stride]
        valid = np.isfinite(d) & (d > 0)  # the same pixels, in the same order, as backproject_depth
        pts.append(p)
        cols.append(rgb[::stride, ::stride][valid])
    points, colours = np.concatenate(pts), np.concatenate(cols)
    if len(points) and voxel > 0:
        from vqkit._open3d import import_open3d

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
    c = np.asarray(center, dtype=np.float64)
    w, h, d = (float(s) for s in size)
    foot = box_corners_2d(c[:2], w, d, yaw)  # [4, 2]
    bottom = np.column_stack([foot, np.full(4, c[2] - h / 2)])
    top = np.column_stack([foot, np.full(4, c[2] + h / 2)])
    return np.vstack([bottom, top])


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
        out.append({"kind": "wall", "label": f"wall {w.id}", "colour": _KIND_COLOURS["wall"],
                    "corners": surface_corners(w.center, w.width, w.height, w.yaw),
                    "edges": [(0, 1), (1, 2), (2, 3), (3, 0)]})
    for s in room.surfaces():
        out.append({"kind": s.kind, "label": f"{s.kind} {s.id}", "colour": _KIND_COLOURS[s.kind],
                    "corners": surface_corners(s.center, s.width, s.height, s.yaw),
                    "edges": [(0, 1), (1, 2), (2, 3), (3, 0)]})
    for o in room.objects:
        out.append({"kind": "object", "label": o.category, "colour": _hex(_category_colour(o.category)),
                    "corners": box_corners_3d(o.center, o.size, o.yaw), "edges": BOX_EDGES})
    return out


def _hex(rgba: Sequence[float]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(round(255 * c)) for c in rgba[:3]))


def _category_colour(category: str) -> tuple:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    i = CATEGORIES.index(category) if category in CATEGORIES else len(CATEGORIES)
    return cmap(i % 20)


def _polyline(corners: np.ndarray, edges: Iterable[tuple[int, int]]) -> np.ndarray:
    """Edges as one [M, 3] array with NaN rows between segments (one plot call per element)."""
    rows = []
    for a, b in edges:
        rows += [corners[a], corners[b], [np.nan] * corners.shape[1]]
    return np.asarray(rows, dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# The 3D pose figure
# ----------------------------------------------------------------------------------------------


def pose_figure(source: Any, backend: str = "plotly", *, frustum_depth: float = 0.5, stride: int = 2,
                voxel: float = 0.05, max_points: int = 20000, point_size: float | None = None,
                title: str | None = None, topdown: bool = True):
    """The 3D pose figure of a scene: camera frusta, fused point cloud, layout boxes.

    Args:
        source: anything :func:`load_scene` takes (record, scene folder, record file, SceneView).
        backend: ``"plotly"`` (interactive, a ``plotly.graph_objects.Figure``) or ``"matplotlib"``
            (static, a ``matplotlib.figure.Figure``; with ``topdown`` a second panel shows the
            scene from above). ``"auto"`` = plotly when importable, else matplotlib.
        frustum_depth: drawn frustum length in metres.
        stride, voxel, max_points: point cloud density (see :func:`fused_point_cloud`).

    Frusta are coloured per view with the view number at the camera centre; the image's top edge
    is drawn thicker so the camera's roll is visible.
    """
    scene = load_scene(source)
    if backend == "auto":
        try:
            import plotly  # noqa: F401

            backend = "plotly"
        except ImportError:
            backend = "matplotlib"
    points, colours = fused_point_cloud(scene, stride=stride, voxel=voxel, max_points=max_points)
    cams = frusta(scene, frustum_depth)
    segments = layout_segments(scene.room) if scene.room is not None else []
    title = title if title is not None else (scene.title or "scene")
    if backend == "plotly":
        return _pose_plotly(points, colours, cams, segments, title, point_size or 2.0)
    if backend == "matplotlib":
        return _pose_matplotlib(points, colours, cams, segments, title, point_size or 1.5, topdown)
    raise ValueError(f"pose_figure: backend must be 'plotly', 'matplotlib' or 'auto', got {backend!r}")


def _pose_plotly(points, colours, cams, segments, title, point_size):
    import plotly.graph_objects as go

    fig = go.Figure()
    if len(points):
        rgb = [f"rgb({int(r * 255)},{int(g * 255)},{int(b * 255)})" for r, g, b in colours]
        fig.add_trace(go.Scatter3d(x=points[:, 0], y=points[:, 1], z=points[:, 2], mode="markers", name="point cloud",
                                   marker={"size": point_size, "color": rgb}, hoverinfo="skip"))
    # One trace per element kind (and per object category) keeps the legend short and clickable.
    groups: dict[str, list[dict]] = {}
    for s in segments:
        groups.setdefault(s["kind"] if s["kind"] != "object" else s["label"], []).append(s)
    for name, items in groups.items():
        line = np.vstack([_polyline(s["corners"], s["edges"]) for s in items])
        fig.add_trace(go.Scatter3d(x=line[:, 0], y=line[:, 1], z=line[:, 2], mode="lines", name=name,
                                   line={"color": items[0]["colour"], "width": 4 if name != "wall" else 3},
                                   hoverinfo="name"))
    for v, c in enumerate(cams):
        colour = _VIEW_COLOURS[v % len(_VIEW_COLOURS)]
        line = _polyline(c, FRUSTUM_EDGES)
        fig.add_trace(go.Scatter3d(x=line[:, 0], y=line[:, 1], z=line[:, 2], mode="lines", name=f"view {v}",
                                   legendgroup=f"view {v}", line={"color": colour, "width": 4}, hoverinfo="name"))
        top = c[[1, 2]]
        fig.add_trace(go.Scatter3d(x=top[:, 0], y=top[:, 1], z=top[:, 2], mode="lines", showlegend=False,
                                   legendgroup=f"view {v}", line={"color": colour, "width": 10}, hoverinfo="skip"))
        fig.add_trace(go.Scatter3d(x=[c[0, 0]], y=[c[0, 1]], z=[c[0, 2]], mode="markers+text", text=[str(v)],
                                   showlegend=False, legendgroup=f"view {v}", marker={"size": 4, "color": colour},
                                   textposition="top center", hovertext=f"view {v}", hoverinfo="text"))
    fig.update_layout(title=title, scene={"aspectmode": "data", "xaxis_title": "x (m)", "yaxis_title": "y (m)",
                                          "zaxis_title": "z (m)"},
                      margin={"l": 0, "r": 0, "t": 40, "b": 0}, height=600, legend={"itemsizing": "constant"})
    return fig


def _set_equal_3d(ax, arrays: list[np.ndarray]) -> None:
    pts = np.vstack([a[np.all(np.isfinite(a), axis=1)] for a in arrays if len(a)])
    lo, hi = pts.min(0), pts.max(0)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect(np.maximum(hi - lo, 1e-3))


def _pose_matplotlib(points, colours, cams, segments, title, point_size, topdown):
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig = plt.figure(figsize=(13, 6) if topdown else (8, 6))
    ax = fig.add_subplot(1, 2 if topdown else 1, 1, projection="3d")
    axes2d = fig.add_subplot(1, 2, 2) if topdown else None
    if len(points):
        ax.scatter(points[:, 0], points[:, 1], points[:, 2], c=colours, s=point_size, depthshade=False, linewidths=0)
        if axes2d is not None:
            order = np.argsort(points[:, 2])  # higher points drawn last, as seen from above
            axes2d.scatter(points[order, 0], points[order, 1], c=colours[order], s=point_size, linewidths=0)
    for s in segments:
        line = _polyline(s["corners"], s["edges"])
        lw = 1.6 if s["kind"] != "wall" else 1.0
        ax.plot(line[:, 0], line[:, 1], line[:, 2], color=s["colour"], lw=lw)
    if axes2d is not None and segments:
        for s in segments:
            if s["kind"] == "object":
                foot = np.vstack([s["corners"][:4], s["corners"][:1]])
                axes2d.plot(foot[:, 0], foot[:, 1], color=s["colour"], lw=1.6)
            else:
                c = s["corners"]
                axes2d.plot(c[:2, 0], c[:2, 1], color=s["colour"], lw=4 if s["kind"] == "wall" else 6,
                            alpha=0.8, solid_capstyle="butt")
    for v, c in enumerate(cams):
        colour = _VIEW_COLOURS[v % len(_VIEW_COLOURS)]
        line = _polyline(c, FRUSTUM_EDGES)
        ax.plot(line[:, 0], line[:, 1], line[:, 2], color=colour, lw=1.5)
        ax.plot(c[[1, 2], 0], c[[1, 2], 1], c[[1, 2], 2], color=colour, lw=3.5)
        ax.text(*c[0], str(v), color=colour, fontsize=9, fontweight="bold")
        if axes2d is not None:
            _draw_frustum_2d(axes2d, c, colour, str(v))
    arrays = [points, *cams, *[s["corners"] for s in segments]]
    if any(len(a) for a in arrays):
        _set_equal_3d(ax, arrays)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")
    ax.view_init(elev=35, azim=-60)
    if topdown:
        fig.suptitle(title)  # spans both panels; a long title does not fit over the 3D axes alone
    else:
        ax.set_title(title)
    handles = [Line2D([], [], color=_VIEW_COLOURS[v % len(_VIEW_COLOURS)], lw=2, label=f"view {v}")
               for v in range(len(cams))]
    kinds = {s["kind"] for s in segments}
    handles += [Line2D([], [], color=c, lw=2, label=k) for k, c in _KIND_COLOURS.items() if k in kinds]
    cats = {s["label"]: s["colour"] for s in segments if s["kind"] == "object"}
    handles += [Line2D([], [], color=c, lw=2, label=k) for k, c in sorted(cats.items())]
    if handles:
        ax.legend(handles=handles, loc="upper left", fontsize=7, framealpha=0.8)
    if axes2d is not None:
        axes2d.set_aspect("equal")
        axes2d.set_xlabel("x (m)")
        axes2d.set_ylabel("y (m)")
        axes2d.grid(True, lw=0.3, alpha=0.5)
        axes2d.set_title("from above")
    fig.tight_layout()
    return fig


def _draw_frustum_2d(ax: "Axes", corners: np.ndarray, colour: str, label: str | None = None) -> None:
    """A frustum [5, 3] seen from above: the centre and the footprint of its image rectangle."""
    c = corners[:, :2]
    for k in range(1, 5):
        ax.plot([c[0, 0], c[k, 0]], [c[0, 1], c[k, 1]], color=colour, lw=1.2)
    ring = c[[1, 2, 3, 4, 1]]
    ax.plot(ring[:, 0], ring[:, 1], color=colour, lw=1.2)
    ax.plot(c[0, 0], c[0, 1], "o", color=colour, ms=5)
    if label is not None:
        ax.annotate(label, c[0], textcoords="offset points", xytext=(4, 4), color=colour, fontsize=9,
                    fontweight="bold")


def open3d_geometries(source: Any, *, frustum_depth: float = 0.5, stride: int = 2, voxel: float = 0.05) -> list:
    """The pose figure as open3d geometry: ``[PointCloud, LineSet (frusta), LineSet (layout)]``
    for ``open3d.visualization.draw_geometries`` (desktop) or ``draw_plotly`` (notebooks)."""
    from vqkit._open3d import import_open3d

    o3d = import_open3d()
    scene = load_scene(source)
    points, colours = fused_point_cloud(scene, stride=stride, voxel=voxel, max_points=10**9)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    pcd.colors = o3d.utility.Vector3dVector(colours)
    out = [pcd]

    def lineset(items: list[tuple[np.ndarray, list, str]]):
        pts, lines, cols = [], [], []
        for corners, edges, colour in items:
            base = sum(len(p) for p in pts)
            pts.append(corners)
            rgb = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
            for a, b in edges:
                lines.append([base + a, base + b])
                cols.append(rgb)
        ls = o3d.geometry.LineSet(o3d.utility.Vector3dVector(np.vstack(pts)), o3d.utility.Vector2iVector(lines))
        ls.colors = o3d.utility.Vector3dVector(np.asarray(cols))
        return ls

    cams = frusta(scene, frustum_depth)
    if cams:
        out.append(lineset([(c, FRUSTUM_EDGES, _VIEW_COLOURS[v % len(_VIEW_COLOURS)]) for v, c in enumerate(cams)]))
    if scene.room is not None and not scene.room.is_empty():
        out.append(lineset([(s["corners"], s["edges"], s["colour"]) for s in layout_segments(scene.room)]))
    return out


# ----------------------------------------------------------------------------------------------
# Data inspection
# ----------------------------------------------------------------------------------------------


def views_grid(source: Any, *, depth: bool = True, max_views: int = 8, max_depth: float | None = None,
               size: float = 2.4):
    """RGB views in a row, their depth maps (metres, shared colour scale) below. Returns the Figure."""
    import matplotlib.pyplot as plt
    from PIL import Image

    scene = load_scene(source)
    n = min(scene.num_views, max_views)
    show_depth = depth and bool(scene.depths)
    rows = 2 if show_depth else 1
    fig, axes = plt.subplots(rows, n, figsize=(size * n + (0.8 if show_depth else 0), size * rows), squeeze=False)
    depths = [_load_depth_m(scene.depths[v]) for v in range(n)] if show_depth else []
    vmax = max_depth or max([float(d.max()) for d in depths if d.size] + [1e-3])
    im = None
    for v in range(n):
        with Image.open(scene.images[v]) as img:
            axes[0, v].imshow(np.asarray(img.convert("RGB")))
        axes[0, v].set_title(f"view {v}", fontsize=9)
        if show_depth:
            d = np.where(depths[v] > 0, depths[v], np.nan)  # invalid pixels stay blank
            im = axes[1, v].imshow(d, cmap="viridis", vmin=0, vmax=vmax)
            axes[1, v].set_title(f"depth {v}", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes[1, :].tolist(), fraction=0.02, pad=0.01, label="depth (m)")
    if scene.title:
        fig.suptitle(scene.title, fontsize=10)
    return fig


class HTMLTable:
    """A small table that renders as HTML in notebooks and as aligned text elsewhere."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None):
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]
        self.caption = caption

    @staticmethod
    def _fmt(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
        return str(value)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._fmt(v))}</td>" for v in r) + "</tr>"
                       for r in self.rows)
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        cells = [self.columns] + [[self._fmt(v) for v in r] for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return ((self.caption + "\n") if self.caption else "") + "\n".join(lines)

    __repr__ = __str__


def _as_dicts(records: Iterable[Any]) -> list[dict]:
    """Records (dicts or Record objects) as plain dicts with the record fields."""
    out = []
    for r in records:
        if isinstance(r, dict):
            out.append(r)
        else:
            d = r.meta()
            d["answer"] = r.answer
            d["has_geometry"] = r.geometry is not None
            out.append(d)
    return out


def records_table(records: Iterable[Any], n: int = 10, width: int = 48) -> HTMLTable:
    """The first ``n`` records: id, task, qtype, views, geometry, question (+ situation), answer."""
    rows = []
    recs = _as_dicts(records)
    for r in recs[:n]:
        question = r.get("question") or ""
        if r.get("situation"):
            question = f"[{r['situation']}] {question}"
        if len(question) > width:
            question = question[: width - 1] + "\u2026"
        answer = r.get("answer")
        if answer is None and r.get("roomplan") is not None:
            answer = "(layout)"
        geom = r.get("has_geometry", bool(r.get("geom_token")))
        rows.append([r.get("id"), r.get("task"), r.get("qtype"), len(r.get("images") or []),
                     "yes" if geom else "no", question, answer])
    return HTMLTable(["id", "task", "qtype", "views", "geometry", "question", "answer"], rows,
                     caption=f"{len(recs)} records (first {min(n, len(recs))})")


def qtype_stats(records: Iterable[Any]) -> dict[str, dict]:
    """Per qtype: number of questions, distinct answers, the most common answer and its share (%)
    (= the EM of a blind majority guess), mean question length in words."""
    from collections import Counter, defaultdict

    groups: dict[str, list[dict]] = defaultdict(list)
    for r in _as_dicts(records):
        if r.get("answer") is None and not r.get("answers"):
            continue  # Stage 2 layouts have no answer to count
        groups[r.get("qtype") or "none"].append(r)
    out = {}
    for qt in sorted(groups):
        answers = Counter((r.get("answer") if r.get("answer") is not None else r["answers"][0]) for r in groups[qt])
        top, count = answers.most_common(1)[0]
        out[qt] = {"n": len(groups[qt]), "answers": len(answers), "top_answer": top,
                   "top_share": 100.0 * count / len(groups[qt]),
                   "question_words": float(np.mean([len((r.get("question") or "").split()) for r in groups[qt]])),
                   "answer_counts": dict(answers.most_common())}
    return out


def qtype_stats_table(records: Iterable[Any]) -> HTMLTable:
    """:func:`qtype_stats` as a table."""
    stats = qtype_stats(records)
    rows = [[qt, s["n"], s["answers"], s["top_answer"], s["top_share"], s["question_words"]] for qt, s in stats.items()]
    return HTMLTable(["qtype", "questions", "distinct answers", "top answer", "top share %", "question words"], rows)


def qtype_stats_figure(records: Iterable[Any], top: int = 8):
    """Questions per qtype (left) and the answer distribution of each qtype (right, stacked shares
    of its ``top`` most common answers). Returns the Figure."""
    import matplotlib.pyplot as plt

    stats = qtype_stats(records)
    if not stats:  # e.g. a Stage 2 (layout-only) record file
        fig, ax = plt.subplots(figsize=(6, 1))
        ax.text(0.5, 0.5, "no question-answer records", ha="center", va="center")
        ax.axis("off")
        return fig
    names = list(stats)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.5), gridspec_kw={"width_ratios": [1, 2]})
    a.barh(names, [stats[q]["n"] for q in names], color="#4363d8")
    a.invert_yaxis()
    a.set_xlabel("questions")
    a.set_title("questions per qtype")
    cmap = plt.get_cmap("tab10")
    for i, q in enumerate(names):
        left = 0.0
        counts = list(stats[q]["answer_counts"].items())
        shown, rest = counts[:top], sum(c for _, c in counts[top:])
        for k, (ans, c) in enumerate(shown + ([("other", rest)] if rest else [])):
            share = 100.0 * c / stats[q]["n"]
            b.barh(i, share, left=left, color=cmap(k % 10) if ans != "other" else "#cccccc", edgecolor="white")
            if share >= 7:
                b.text(left + share / 2, i, ans, ha="center", va="center", fontsize=7)
            left += share
    b.set_yticks(range(len(names)), names)
    b.invert_yaxis()
    b.set_xlim(0, 100)
    b.set_xlabel("% of the qtype's questions")
    b.set_title("answers per qtype (first segment = blind majority guess)")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# Model assembly
# ----------------------------------------------------------------------------------------------


def parameter_table(model) -> HTMLTable:
    """Parameters per part of a VQModel (``model.parameter_counts()``): total, trainable, frozen."""
    counts = model.parameter_counts()
    rows = [[name, total, trainable, total - trainable,
             "absent" if total == 0 else "trains" if trainable == total else "frozen" if not trainable else "partly"]
            for name, (total, trainable) in counts.items()]
    total = sum(r[1] for r in rows)
    trainable = sum(r[2] for r in rows)
    rows.append(["total", total, trainable, total - trainable, f"{100.0 * trainable / max(1, total):.2f}% trains"])
    for r in rows:
        r[1:4] = [f"{v:,}" for v in r[1:4]]
    return HTMLTable(["part", "parameters", "trainable", "frozen", ""], rows)


def token_budget(batch: dict, model_cfg, tokenizer) -> HTMLTable:
    """Where each sample's tokens go in a collated train-mode batch: projector latents, geometry
    tokens, the two vision markers, prompt text, answer (label tokens incl. the end token), padding.

    Counts come from the batch itself (``<|image_pad|>`` placeholders, ``labels``, ``attention_mask``),
    so the table shows what the model will actually see.
    """
    from vqkit.data.tokenizer import vision_token_ids

    ids = vision_token_ids(tokenizer)
    latents = model_cfg.projector.num_latents
    rows = []
    for b, meta in enumerate(batch["meta"]):
        input_ids = batch["input_ids"][b]
        mask = batch["attention_mask"][b].bool()
        placeholders = int((input_ids == ids.pad_id).sum())
        markers = int(((input_ids == ids.start_id) | (input_ids == ids.end_id)).sum())
        answer = int((batch["labels"][b] != -100).sum()) if batch.get("labels") is not None else 0
        used = int(mask.sum())
        vision = min(placeholders, latents)
        rows.append([meta.get("id"), int(batch["view_mask"][b].sum()), vision, placeholders - vision, markers,
                     used - placeholders - markers - answer, answer, int((~mask).sum()), used])
    return HTMLTable(["id", "views", "vision (latents)", "geometry", "markers", "prompt text", "answer",
                      "padding", "total"], rows)


def tensor_shapes(obj: Any, prefix: str = "") -> HTMLTable:
    """Name, shape and dtype of every tensor in a (nested) dict / model output, e.g. a batch."""
    rows: list[list[Any]] = []

    def walk(value, name):
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            rows.append([name, tuple(value.shape), str(value.dtype).replace("torch.", "")])
        elif isinstance(value, dict) or hasattr(value, "items"):
            for k, v in value.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(value, tuple) and all(isinstance(v, int) for v in value):
            rows.append([name, value, "ints"])

    walk(obj, prefix)
    return HTMLTable(["tensor", "shape", "dtype"], rows)


# ----------------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------------


def read_metrics_log(run_dir: str | os.PathLike) -> list[dict]:
    """Rows of ``RUN/metrics.jsonl`` (training and periodic-eval records)."""
    path = Path(run_dir) / "metrics.jsonl" if Path(run_dir).is_dir() else Path(run_dir)
    if not path.is_file():
        raise DataError(f"{path}: no metrics log (train first, or check the run directory)")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: not valid JSON ({e.msg})") from None
    return rows


def plot_training_curves(run_dir: str | os.PathLike):
    """Loss (and held-out loss when logged) and both learning rates against the step. Returns the Figure."""
    import matplotlib.pyplot as plt

    rows = read_metrics_log(run_dir)
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    if not train:
        raise DataError(f"{run_dir}: the metrics log has no training rows yet")
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    a.plot([r["step"] for r in train], [r["loss"] for r in train], "o-", ms=3, label="train loss")
    if evals:
        a.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "s--", ms=4, label="held-out loss")
    a.set_xlabel("step")
    a.set_ylabel("loss")
    a.set_title("loss")
    a.grid(True, lw=0.3)
    a.legend()
    b.plot([r["step"] for r in train], [r.get("lr") for r in train], "o-", ms=3, label="lr (LLM / LoRA)")
    if any("proj_lr" in r for r in train):
        b.plot([r["step"] for r in train], [r.get("proj_lr") for r in train], "x--", ms=4, label="proj_lr")
    b.set_xlabel("step")
    b.set_ylabel("learning rate")
    b.set_title("learning rate")
    b.grid(True, lw=0.3)
    b.legend()
    fig.tight_layout()
    return fig


def _load_metrics(m: dict | str | os.PathLike) -> dict:
    if isinstance(m, dict):
        return m
    path = Path(m)
    path = path / "metrics.json" if path.is_dir() else path
    if not path.is_file():
        raise DataError(f"{path}: metrics file not found")
    return json.loads(path.read_text())


def metrics_table(runs: dict[str, dict | str | os.PathLike]) -> HTMLTable:
    """Overall and per-qtype EM / refined EM of several evaluations side by side.

    ``runs``: name -> metrics dict (as ``vqkit eval`` writes) or a path to ``metrics.json`` / its folder.
    """
    loaded = {name: _load_metrics(m) for name, m in runs.items()}
    qtypes = sorted({q for m in loaded.values() for q in m.get("by_qtype", {})})
    columns = ["split"] + [f"{name} {k}" for name in loaded for k in ("EM", "EM-R")] + ["n"]
    rows = []
    for label, get in [("overall", lambda m: m.get("overall") or {})] + \
                      [(f"qtype {q}", (lambda q: lambda m: m.get("by_qtype", {}).get(q) or {})(q)) for q in qtypes]:
        row: list[Any] = [label]
        n = None
        for m in loaded.values():
            block = get(m)
            row += [block.get("em"), block.get("em_refined")]
            n = n or block.get("n")
        rows.append(row + [n])
    for name, m in loaded.items():
        rp = m.get("roomplan")
        if rp:
            f1 = {k: rp[k].get("f1@0.5") for k in ("walls", "doors", "windows", "objects") if isinstance(rp.get(k), dict)}
            rows.append([f"{name} roomplan F1@0.5"] + [None] * (len(columns) - 2) + [rp.get("n")])
            rows[-1][1] = ", ".join(f"{k} {100 * v:.0f}" for k, v in f1.items())
    return HTMLTable(columns, rows)


def plot_qtype_bars(runs: dict[str, dict | str | os.PathLike], metric: str = "em"):
    """Grouped bars of ``metric`` (em or em_refined) per qtype and overall, one colour per run."""
    import matplotlib.pyplot as plt

    loaded = {name: _load_metrics(m) for name, m in runs.items()}
    qtypes = sorted({q for m in loaded.values() for q in m.get("by_qtype", {})})
    groups = ["overall"] + qtypes
    width = 0.8 / max(1, len(loaded))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(groups) + 2), 3.8))
    for k, (name, m) in enumerate(loaded.items()):
        values = [(m.get("overall") or {}).get(metric)] + [m.get("by_qtype", {}).get(q, {}).get(metric) for q in qtypes]
        xs = np.arange(len(groups)) + (k - (len(loaded) - 1) / 2) * width
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width, label=name)
        for bar, v in zip(bars, values):
            if v is not None:
                ax.annotate(f"{v:.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_ylabel({"em": "EM (%)", "em_refined": "refined EM (%)"}.get(metric, metric))
    ax.set_ylim(0, 105)
    ax.legend()
    ax.grid(True, axis="y", lw=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# RoomPlan layouts from above
# ----------------------------------------------------------------------------------------------


def _segment(center, width: float, yaw: float) -> np.ndarray:
    """End points [2, 2] of a wall-like element seen from above."""
    d = np.array([math.cos(yaw), math.sin(yaw)]) * width / 2
    c = np.asarray(center[:2], dtype=np.float64)
    return np.stack([c - d, c + d])


def _draw_room(ax: "Axes", room: Room, linestyle: str, alpha: float, label_objects: bool, lw: float = 1.0) -> None:
    """Draw one room; ``lw`` scales line widths (the prediction is drawn thinner, on top of gold)."""
    for w in room.walls:
        seg = _segment(w.center, w.width, w.yaw)
        ax.plot(seg[:, 0], seg[:, 1], color=_KIND_COLOURS["wall"], lw=4 * lw, ls=linestyle, alpha=alpha,
                solid_capstyle="round")
    for o in room.surfaces():
        seg = _segment(o.center, o.width, o.yaw)
        ax.plot(seg[:, 0], seg[:, 1], color=_KIND_COLOURS[o.kind], lw=7 * lw, ls=linestyle, alpha=alpha,
                solid_capstyle="butt")
    for ob in room.objects:
        corners = box_corners_2d(ob.center, ob.size[0], ob.size[2], ob.yaw)
        closed = np.vstack([corners, corners[:1]])
        colour = _category_colour(ob.category)
        ax.fill(closed[:, 0], closed[:, 1], color=colour, alpha=0.25 * alpha, lw=0)
        ax.plot(closed[:, 0], closed[:, 1], color=colour, lw=1.5, ls=linestyle, alpha=alpha)
        # The width direction, so a box's yaw is visible: a tick from the centre to the width side.
        tip = np.asarray(ob.center[:2]) + 0.5 * ob.size[0] * np.array([math.cos(ob.yaw), math.sin(ob.yaw)])
        ax.plot([ob.center[0], tip[0]], [ob.center[1], tip[1]], color=colour, lw=1, ls=linestyle, alpha=alpha)
        if label_objects:
            ax.annotate(ob.category, ob.center[:2], fontsize=7, ha="center", va="center", alpha=alpha)


def plot_layout_topdown(gold: Room, pred: Room | None = None, ax: "Axes | None" = None, title: str | None = None) -> "Axes":
    """Draw ``gold`` (solid) and optionally ``pred`` (dashed) seen from above; returns the axes.

    Walls are thick grey lines, doors red, windows blue, openings green (the prediction's at half
    width so gold stays visible underneath); objects are rotated
    rectangles (footprint: width x depth) coloured by category, with a tick along their width axis
    and the category written at the centre. Axes are metres in vqkit's world frame (x right, y up).
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    _draw_room(ax, gold, "-", 1.0, label_objects=True)
    if pred is not None:
        _draw_room(ax, pred, "--", 0.9, label_objects=False, lw=0.5)
    handles = [Line2D([], [], color=c, lw=3, label=k) for k, c in _KIND_COLOURS.items()]
    handles.append(Line2D([], [], color="k", ls="-", label="gold"))
    if pred is not None:
        handles.append(Line2D([], [], color="k", ls="--", label="predicted"))
    ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.8)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.grid(True, lw=0.3, alpha=0.5)
    if title:
        ax.set_title(title)
    return ax


# ----------------------------------------------------------------------------------------------
# The answer viewer
# ----------------------------------------------------------------------------------------------

ALL = "all"
CORRECT_CHOICES = (ALL, "correct", "incorrect")
#: A Stage 2 prediction counts as "correct" in the viewer when its F1 over all elements (walls,
#: doors, windows, openings, objects) at IoU 0.5 reaches this value.
ROOMPLAN_CORRECT_F1 = 0.5


def _shown(prediction: str | None) -> str:
    """A prediction as displayed: an empty generation is visible as such."""
    return prediction if prediction and prediction.strip() else "(empty)"


def _qtype(row: dict) -> str:
    return str(row.get("qtype") or "none")


def _is_roomplan_row(row: dict) -> bool:
    return row.get("task") == "roomplan" or (row.get("roomplan") is not None and not row.get("answers"))


def judge(row: dict) -> dict:
    """Correctness of one prediction row: ``{"correct", "em", "em_refined"}`` for QA (correct = EM,
    the official ScanQA EM@1), ``{"correct", "f1", "problems", "pred_room", "gold_room"}`` for Stage 2
    (correct = all-element F1@0.5 >= :data:`ROOMPLAN_CORRECT_F1`)."""
    if _is_roomplan_row(row):
        from vqkit.roomplan import score_layouts

        gold = Room.from_capturedroom(row["roomplan"], problems=[])
        pred, problems = Room.from_text(row.get("prediction") or "")
        s = score_layouts([pred], [gold])
        kinds = ("walls", "doors", "windows", "openings", "objects")
        n_pred = sum(s[k]["n_pred"] for k in kinds)
        n_gold = sum(s[k]["n_gold"] for k in kinds)
        tp = sum(round(s[k]["precision@0.5"] * s[k]["n_pred"]) for k in kinds)
        f1 = 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 1.0
        return {"correct": f1 >= ROOMPLAN_CORRECT_F1, "f1": f1, "problems": problems, "pred_room": pred,
                "gold_room": gold}
    from vqkit.eval.metrics import exact_match, refined_match

    answers = row.get("answers") or []
    em = exact_match(row.get("prediction") or "", answers)
    return {"correct": em, "em": em, "em_refined": refined_match(row.get("prediction") or "", answers)}


def _records_by_id(records: Any) -> dict[str, Any]:
    if records is None:
        return {}
    if isinstance(records, (str, os.PathLike)):
        from vqkit.data.schema import load_records

        records = load_records(str(records), check_files=False)
    out = {}
    for r in records:
        rid = r.get("id") if isinstance(r, dict) else r.id
        if rid is not None:
            out[str(rid)] = r
    return out


class AnswerViewer:
    """Browse a model's answers: filter, step through, see what the model saw.

    Args:
        predictions: a ``predictions.jsonl`` path (as ``vqkit eval`` writes) or a list of rows.
        records: optional records (file/glob, list of dicts or Records) matched by ``id``; they give
            camera poses when the predictions file lacks them. Without them, a synthetic scene's
            ``cameras.json`` / ``layout.json`` next to the views are used when present.
        max_views: views shown per example.

    Controls (ipywidgets): ``task``, ``qtype``, ``correct`` Dropdowns; ``slider`` (position in the
    filtered list), ``prev_button`` / ``next_button``. Display: ``text`` (HTML: question, situation,
    gold answers, prediction and verdict) and ``image`` (PNG of the views and the cameras seen from
    above over the layout; for Stage 2 the predicted (dashed) vs gold (solid) layout). State for
    scripts and tests: ``filtered`` (row indices passing the filters), ``position``, ``current``
    (the shown row or None), ``figure`` (the last matplotlib Figure), ``show(i)``, ``next()``, ``prev()``.
    ``widget`` is the whole UI; a notebook cell displays the viewer itself.
    """

    def __init__(self, predictions: str | os.PathLike | list[dict], records: Any = None, *, max_views: int = 4,
                 frustum_depth: float = 0.6, dpi: int = 80):
        import ipywidgets as widgets

        if isinstance(predictions, (str, os.PathLike)):
            from vqkit.eval.run import read_predictions

            self.rows = read_predictions(predictions)
        else:
            self.rows = [dict(r) for r in predictions]
        if not self.rows:
            raise DataError("AnswerViewer: no predictions to show")
        self.records = _records_by_id(records)
        self.max_views, self.frustum_depth, self.dpi = max_views, frustum_depth, dpi
        self.verdicts = [judge(r) for r in self.rows]
        self.filtered: list[int] = list(range(len(self.rows)))
        self.position = 0
        self.figure = None

        tasks = sorted({str(r.get("task")) for r in self.rows})
        self.task = widgets.Dropdown(options=[ALL] + tasks, value=ALL, description="task")
        self.qtype = widgets.Dropdown(options=self._qtype_options(ALL), value=ALL, description="qtype")
        self.correct = widgets.Dropdown(options=list(CORRECT_CHOICES), value=ALL, description="answer")
        self.slider = widgets.IntSlider(min=0, max=max(0, len(self.rows) - 1), value=0, description="example",
                                        continuous_update=False)
        self.prev_button = widgets.Button(description="\u25c0 prev", layout=widgets.Layout(width="80px"))
        self.next_button = widgets.Button(description="next \u25b6", layout=widgets.Layout(width="80px"))
        self.count = widgets.Label()
        self.text = widgets.HTML()
        self.image = widgets.Image(format="png")
        self._updating = False

        self.task.observe(self._on_filter, names="value")
        self.qtype.observe(self._on_filter, names="value")
        self.correct.observe(self._on_filter, names="value")
        self.slider.observe(lambda change: self.show(change["new"]), names="value")
        self.prev_button.on_click(lambda _: self.prev())
        self.next_button.on_click(lambda _: self.next())
        self.widget = widgets.VBox([
            widgets.HBox([self.task, self.qtype, self.correct]),
            widgets.HBox([self.prev_button, self.slider, self.next_button, self.count]),
            self.text, self.image,
        ])
        self._apply_filters()

    # -- filters and navigation ----------------------------------------------------------------

    def _qtype_options(self, task: str) -> list[str]:
        qts = sorted({_qtype(r) for r in self.rows if task == ALL or str(r.get("task")) == task})
        return [ALL] + qts

    def _on_filter(self, change) -> None:
        if self._updating:
            return
        if change["owner"] is self.task:
            # Narrow the qtype choices to the task's; keep the selection when it still exists.
            self._updating = True
            options = self._qtype_options(self.task.value)
            keep = self.qtype.value if self.qtype.value in options else ALL
            self.qtype.options = options
            self.qtype.value = keep
            self._updating = False
        self._apply_filters()

    def _apply_filters(self) -> None:
        task, qtype, correct = self.task.value, self.qtype.value, self.correct.value
        self.filtered = [
            i for i, r in enumerate(self.rows)
            if (task == ALL or str(r.get("task")) == task)
            and (qtype == ALL or _qtype(r) == qtype)
            and (correct == ALL or self.verdicts[i]["correct"] == (correct == "correct"))
        ]
        self._updating = True
        self.slider.max = max(0, len(self.filtered) - 1)
        self.slider.value = 0
        self.slider.disabled = len(self.filtered) <= 1
        self._updating = False
        self.show(0)

    def show(self, i: int) -> None:
        """Show the ``i``-th example of the filtered list (clamped to its range)."""
        if self._updating:
            return
        self.position = int(min(max(0, i), max(0, len(self.filtered) - 1)))
        if self.slider.value != self.position:
            self._updating = True
            self.slider.value = self.position
            self._updating = False
        self.count.value = f"{self.position + 1 if self.filtered else 0} / {len(self.filtered)}"
        self._render()

    def next(self) -> None:
        self.show(self.position + 1)

    def prev(self) -> None:
        self.show(self.position - 1)

    @property
    def current(self) -> dict | None:
        """The prediction row on display (None when the filters match nothing)."""
        return self.rows[self.filtered[self.position]] if self.filtered else None

    @property
    def current_verdict(self) -> dict | None:
        return self.verdicts[self.filtered[self.position]] if self.filtered else None

    # -- rendering -----------------------------------------------------------------------------

    def scene_of(self, row: dict) -> SceneView | None:
        """The views and cameras of a prediction row (from ``records`` by id, else from a synthetic
        scene's files next to its views); None when its images are unknown."""
        rec = self.records.get(str(row.get("id")))
        if rec is not None:
            return scene_from_record(rec)
        images = row.get("images") or []
        if not images:
            return None
        scene = SceneView(list(images), scene_id=row.get("scene_id"), title=row.get("scene_id") or "")
        found = cameras_beside(images)
        if found is not None:
            chosen = [found[1][Path(p).name] for p in images]
            scene.R = np.array([c["R"] for c in chosen], dtype=np.float64)
            scene.t = np.array([c["t"] for c in chosen], dtype=np.float64)
            scene.K = np.array([c["K"] for c in chosen], dtype=np.float64)
        scene.room = _room_of_roomplan(row.get("roomplan")) if row.get("roomplan") else _room_next_to(images[0])
        return scene

    def _describe(self, row: dict, verdict: dict) -> str:
        e = html.escape
        ok = verdict["correct"]
        mark = ('<b style="color:#2ca02c">\u2714 correct</b>' if ok else '<b style="color:#d62728">\u2718 incorrect</b>')
        parts = [f"<b>{e(str(row.get('id')))}</b> &middot; task <code>{e(str(row.get('task')))}</code> "
                 f"&middot; qtype <code>{e(str(row.get('qtype')))}</code>"
                 + (" &middot; blind" if row.get("blind") else "")]
        if row.get("situation"):
            parts.append(f"<b>situation:</b> {e(row['situation'])}")
        parts.append(f"<b>question:</b> {e(row.get('question') or '')}")
        if _is_roomplan_row(row):
            n_lines = len([ln for ln in (row.get("prediction") or "").splitlines() if ln.strip()])
            parts.append(f"<b>prediction:</b> {n_lines} layout lines, F1@0.5 {100 * verdict['f1']:.0f} &nbsp;{mark}")
            if verdict["problems"]:
                parts.append(f"<b>parse problems:</b> {e('; '.join(verdict['problems'][:3]))}")
            parts.append(f"<pre style='font-size:11px;max-height:12em;overflow:auto'>{e(row.get('prediction') or '')}</pre>")
        else:
            parts.append(f"<b>gold answers:</b> {e(' | '.join(row.get('answers') or []))}")
            parts.append(f"<b>prediction:</b> {e(_shown(row.get('prediction')))} &nbsp;{mark}"
                         + ("" if ok or not verdict.get("em_refined") else " (refined match)"))
        return "<br>".join(parts)

    def _caption(self, row: dict, verdict: dict) -> str:
        """The text panel as plain lines (for :meth:`render_figure` with ``with_text``)."""
        lines = [f"{row.get('id')}   task {row.get('task')}   qtype {row.get('qtype')}"
                 + ("   (blind)" if row.get("blind") else "")]
        if row.get("situation"):
            lines.append(f"situation: {row['situation']}")
        lines.append(f"question: {row.get('question') or ''}")
        verdict_word = "correct" if verdict["correct"] else "incorrect"
        if _is_roomplan_row(row):
            lines.append(f"prediction: layout, F1@0.5 {100 * verdict['f1']:.0f}  ->  {verdict_word}")
        else:
            lines.append(f"gold answers: {' | '.join(row.get('answers') or [])}")
            lines.append(f"prediction: {_shown(row.get('prediction'))}  ->  {verdict_word}")
        return "\n".join(lines)

    def render_figure(self, row: dict, verdict: dict | None = None, with_text: bool = False):
        """The matplotlib Figure shown for ``row``: its views, then the cameras from above over the
        layout (Stage 2: predicted dashed vs gold solid). ``with_text`` adds the question, gold
        answers and prediction above the images (for static exports). Usable without widgets."""
        import matplotlib.pyplot as plt
        from PIL import Image

        verdict = verdict if verdict is not None else judge(row)
        scene = self.scene_of(row)
        n = min(scene.num_views, self.max_views) if scene is not None else 0
        roomplan = _is_roomplan_row(row)
        has_map = scene is not None and (scene.has_geometry or scene.room is not None) or roomplan
        ncols = n + (2 if has_map else 0)
        map_h = 2.9 if not has_map else 4.2
        text_h = 1.1 if with_text else 0.0
        fig = plt.figure(figsize=(2.4 * max(1, ncols), map_h + text_h), dpi=self.dpi)
        rows = fig.add_gridspec(2 if with_text else 1, max(1, ncols),
                                height_ratios=[text_h, map_h] if with_text else None)
        grid = rows[1:, :] if with_text else rows
        if with_text:
            tax = fig.add_subplot(rows[0, :])
            tax.axis("off")
            colour = "#2ca02c" if verdict["correct"] else "#d62728"
            tax.text(0.0, 1.0, self._caption(row, verdict), ha="left", va="top", fontsize=10, family="monospace",
                     transform=tax.transAxes, bbox={"facecolor": "white", "edgecolor": colour, "lw": 2})
        grid = grid.subgridspec(1, max(1, ncols)) if with_text else grid
        for v in range(n):
            ax = fig.add_subplot(grid[0, v])
            with Image.open(scene.images[v]) as img:
                ax.imshow(np.asarray(img.convert("RGB")))
            ax.set_title(f"view {v}", fontsize=9, color=_VIEW_COLOURS[v % len(_VIEW_COLOURS)])
            ax.axis("off")
        if has_map:
            ax = fig.add_subplot(grid[0, n:])
            gold = verdict.get("gold_room") if roomplan else (scene.room if scene is not None else None)
            if roomplan:
                plot_layout_topdown(gold, verdict["pred_room"], ax=ax, title="layout: gold (solid) vs predicted (dashed)")
                legend = ax.get_legend()  # beside the plan, not over it
                ax.legend(legend.legend_handles, [t.get_text() for t in legend.texts], loc="upper left",
                          bbox_to_anchor=(1.01, 1.0), fontsize=7)
            elif gold is not None:
                _draw_room(ax, gold, "-", 0.8, label_objects=True)
            if scene is not None and scene.has_geometry:
                for v, c in enumerate(frusta(scene, self.frustum_depth)[:n]):
                    _draw_frustum_2d(ax, c, _VIEW_COLOURS[v % len(_VIEW_COLOURS)], str(v))
            ax.set_aspect("equal")
            ax.grid(True, lw=0.3, alpha=0.5)
            if not roomplan:
                ax.set_title("cameras from above", fontsize=9)
            ax.tick_params(labelsize=7)
        if n == 0 and not has_map:
            ax = fig.add_subplot(grid[0, 0])
            ax.text(0.5, 0.5, "no views", ha="center", va="center")
            ax.axis("off")
        fig.tight_layout()
        return fig

    def snapshot(self):
        """A static rendering of what the viewer shows now (text + figure), for notebooks whose
        widgets are not live (papermill outputs, exported HTML)."""
        import base64

        from IPython.display import HTML

        if self.current is None:
            return HTML(self.text.value)
        png = base64.b64encode(self.image.value).decode("ascii")
        return HTML(f"<div>{self.text.value}</div><img src='data:image/png;base64,{png}'/>")

    def _render(self) -> None:
        import matplotlib.pyplot as plt

        row = self.current
        if row is None:
            self.text.value = "<i>no example matches these filters</i>"
            self.image.value = b""
            self.figure = None
            return
        verdict = self.current_verdict
        self.text.value = self._describe(row, verdict)
        fig = self.render_figure(row, verdict)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=self.dpi)
        plt.close(fig)  # the PNG is what is shown; keep no open figures in long browsing sessions
        self.figure = fig
        self.image.value = buf.getvalue()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
