"""The 3D pose figure (camera frusta, fused point cloud, layout) in plotly, matplotlib or open3d, and the
grid of a scene's views with their depth maps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vqkit.data.images import open_view
from vqkit.errors import DataError
from vqkit.utils.open3d import import_open3d
from vqkit.viz.labels import label_points_2d, label_points_3d
from vqkit.viz.scene import (
    FRUSTUM_EDGES,
    KIND_COLOURS,
    VIEW_COLOURS,
    SceneView,
    frusta,
    fused_point_cloud,
    layout_segments,
    load_depth_m,
    load_scene,
    polyline,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes



def pose_figure(source: Any, backend: str = "plotly", *, frustum_depth: float = 0.5, stride: int = 2,
                voxel: float = 0.05, max_points: int = 20000, point_size: float | None = None,
                title: str | None = None, topdown: bool = True, boxes: list[dict] | None = None):
    """The 3D pose figure of a scene: camera frusta, fused point cloud, layout boxes, and a grounding
    answer's boxes.

    Args:
        source: anything :func:`load_scene` takes (record, scene folder, record file, SceneView).
        backend: ``"plotly"`` (interactive, a ``plotly.graph_objects.Figure``) or ``"matplotlib"``
            (static, a ``matplotlib.figure.Figure``; with ``topdown`` a second panel shows the
            scene from above). ``"auto"`` = plotly when importable, else matplotlib.
        frustum_depth: drawn frustum length in metres.
        stride, voxel, max_points: point cloud density (see :func:`fused_point_cloud`).
        boxes: more boxes to draw over the scene, as :func:`vqkit.viz.scene.grounding_boxes` gives them
            for a grounding prediction row: the gold box solid, the predicted one dashed, each named in
            the legend (``pose_figure(record, boxes=grounding_boxes(row))``).

    Frusta are coloured per view with the view number at the camera centre; the image's top edge
    is drawn thicker so the camera's roll is visible. A scene without camera poses draws its layout
    alone; with no layout either there is nothing to place in 3D: a DataError
    (:func:`no_poses_message`) says so instead of an empty figure.
    """
    scene = load_scene(source)
    if not scene.has_geometry and scene.room is None:
        raise DataError(no_poses_message(scene))
    if backend == "auto":
        try:
            import plotly  # noqa: F401

            backend = "plotly"
        except ImportError:
            backend = "matplotlib"
    points, colours = fused_point_cloud(scene, stride=stride, voxel=voxel, max_points=max_points)
    cams = frusta(scene, frustum_depth)
    segments = (layout_segments(scene.room) if scene.room is not None else []) + list(boxes or [])
    title = title if title is not None else (scene.title or "scene")
    if not scene.has_geometry:
        title += " (no camera poses: the layout only)"
    if backend == "plotly":
        return _pose_plotly(points, colours, cams, segments, title, point_size or 2.0)
    if backend == "matplotlib":
        return _pose_matplotlib(points, colours, cams, segments, title, point_size or 1.5, topdown)
    raise ValueError(f"pose_figure: backend must be 'plotly', 'matplotlib' or 'auto', got {backend!r}")


def no_poses_message(scene: SceneView) -> str:
    """What to say for a scene whose views have no camera poses: where they are missing and how to
    get them."""
    name = scene.extra.get("id") or scene.title or "this scene"
    return (f"{name}: its views have no camera poses (geom_token is null), so there are no frusta and no point "
            f"cloud to draw; choose a record with poses, or predict them with VGGT's camera head "
            f"(`vqkit prep geometry`, notebook 05)")


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
        groups.setdefault(s["label"] if s["kind"] == "object" or s.get("dash") is not None else s["kind"], []).append(s)
    for name, items in groups.items():
        line = np.vstack([polyline(s["corners"], s["edges"]) for s in items])
        style = {"color": items[0]["colour"], "width": 4 if name != "wall" else 3}
        if items[0].get("dash") is not None:  # a grounding answer's box: thicker, the prediction dashed
            style.update(width=7, dash="dash" if items[0]["dash"] else "solid")
        fig.add_trace(go.Scatter3d(x=line[:, 0], y=line[:, 1], z=line[:, 2], mode="lines", name=name,
                                   line=style, hoverinfo="name"))
    for v, c in enumerate(cams):
        colour = VIEW_COLOURS[v % len(VIEW_COLOURS)]
        line = polyline(c, FRUSTUM_EDGES)
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

    fig = plt.figure(figsize=(14, 6) if topdown else (9, 6))
    ax = fig.add_subplot(1, 2 if topdown else 1, 1, projection="3d")
    axes2d = fig.add_subplot(1, 2, 2) if topdown else None
    if len(points):
        ax.scatter(points[:, 0], points[:, 1], points[:, 2], c=colours, s=point_size, depthshade=False, linewidths=0)
        if axes2d is not None:
            order = np.argsort(points[:, 2])  # higher points drawn last, as seen from above
            axes2d.scatter(points[order, 0], points[order, 1], c=colours[order], s=point_size, linewidths=0)
    for s in segments:
        line = polyline(s["corners"], s["edges"])
        lw = 1.6 if s["kind"] != "wall" else 1.0
        answer = s.get("dash") is not None  # a grounding answer's box
        ax.plot(line[:, 0], line[:, 1], line[:, 2], color=s["colour"], lw=2.8 if answer else lw,
                ls="--" if s.get("dash") else "-")
    if axes2d is not None and segments:
        for s in segments:
            if s["kind"] == "object" or s.get("dash") is not None:
                foot = np.vstack([s["corners"][:4], s["corners"][:1]])
                axes2d.plot(foot[:, 0], foot[:, 1], color=s["colour"], lw=2.4 if s.get("dash") is not None else 1.6,
                            ls="--" if s.get("dash") else "-")
            else:
                c = s["corners"]
                axes2d.plot(c[:2, 0], c[:2, 1], color=s["colour"], lw=4 if s["kind"] == "wall" else 6,
                            alpha=0.8, solid_capstyle="butt")
    view_colours = [VIEW_COLOURS[v % len(VIEW_COLOURS)] for v in range(len(cams))]
    for c, colour in zip(cams, view_colours, strict=True):
        line = polyline(c, FRUSTUM_EDGES)
        ax.plot(line[:, 0], line[:, 1], line[:, 2], color=colour, lw=1.5)
        ax.plot(c[[1, 2], 0], c[[1, 2], 1], c[[1, 2], 2], color=colour, lw=3.5)
        if axes2d is not None:
            draw_frustum_2d(axes2d, c, colour)
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
    if axes2d is not None:
        axes2d.set_aspect("equal")
        axes2d.set_xlabel("x (m)")
        axes2d.set_ylabel("y (m)")
        axes2d.grid(True, lw=0.3, alpha=0.5)
        axes2d.set_title("from above")
    handles = _pose_legend_handles(len(cams), segments)
    if handles:  # beside the panels, covering neither
        fig.legend(handles=handles, loc="center right", fontsize=10, framealpha=0.9)
    fig.tight_layout(rect=(0, 0, 0.86 if handles else 1, 1))
    if topdown:
        fig.subplots_adjust(wspace=0.3)  # tight_layout does not see the 3D axes' z label
    _number_cameras(ax, axes2d, cams, view_colours)
    return fig


def _pose_legend_handles(num_views: int, segments: list[dict]) -> list:
    """The pose figure's legend: views, then the element kinds and object categories drawn, then a
    grounding answer's boxes."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=VIEW_COLOURS[v % len(VIEW_COLOURS)], lw=2, label=f"view {v}")
               for v in range(num_views)]
    kinds = {s["kind"] for s in segments}
    handles += [Line2D([], [], color=c, lw=2, label=k) for k, c in KIND_COLOURS.items() if k in kinds]
    cats = {s["label"]: s["colour"] for s in segments if s["kind"] == "object"}
    handles += [Line2D([], [], color=c, lw=2, label=k) for k, c in sorted(cats.items())]
    # a grounding answer's boxes last: the gold one solid, the predicted one dashed
    handles += [Line2D([], [], color=s["colour"], lw=2.8, ls="--" if s["dash"] else "-", label=s["label"])
                for s in segments if s.get("dash") is not None]
    return handles


def _number_cameras(ax3d, axes2d, cams: list[np.ndarray], colours: list[str]) -> None:
    """Each view's number at its camera, none printed over another: in 3D at the camera centre or
    further along its viewing direction, from above beside the centre (placed on the final layout)."""
    candidates = [[c[0] + k * (c[1:].mean(0) - c[0]) for k in (0.0, 0.6, 1.2, 1.8, -0.6)] for c in cams]
    names = [str(v) for v in range(len(cams))]
    label_points_3d(ax3d, candidates, names, colours)
    if axes2d is not None:
        label_points_2d(axes2d, [c[0, :2] for c in cams], names, colours, fontsize=9, fontweight="bold",
                        centred=False)


def draw_frustum_2d(ax: Axes, corners: np.ndarray, colour: str) -> None:
    """A frustum [5, 3] seen from above: the centre and the footprint of its image rectangle (its
    number: :func:`vqkit.viz.labels.label_points_2d` once the figure's layout is final)."""
    c = corners[:, :2]
    for k in range(1, 5):
        ax.plot([c[0, 0], c[k, 0]], [c[0, 1], c[k, 1]], color=colour, lw=1.2)
    ring = c[[1, 2, 3, 4, 1]]
    ax.plot(ring[:, 0], ring[:, 1], color=colour, lw=1.2)
    ax.plot(c[0, 0], c[0, 1], "o", color=colour, ms=5)


def open3d_geometries(source: Any, *, frustum_depth: float = 0.5, stride: int = 2, voxel: float = 0.05) -> list:
    """The pose figure as open3d geometry: ``[PointCloud, LineSet (frusta), LineSet (layout)]``
    for ``open3d.visualization.draw_geometries`` (desktop) or ``draw_plotly`` (notebooks)."""
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
        out.append(lineset([(c, FRUSTUM_EDGES, VIEW_COLOURS[v % len(VIEW_COLOURS)]) for v, c in enumerate(cams)]))
    if scene.room is not None and not scene.room.is_empty():
        out.append(lineset([(s["corners"], s["edges"], s["colour"]) for s in layout_segments(scene.room)]))
    return out


def views_grid(source: Any, *, depth: bool = True, max_views: int = 8, max_depth: float | None = None,
               size: float = 2.4):
    """RGB views in a row, their depth maps (metres, shared colour scale) below. Returns the Figure."""
    import matplotlib.pyplot as plt

    scene = load_scene(source)
    n = min(scene.num_views, max_views)
    show_depth = depth and bool(scene.depths)
    rows = 2 if show_depth else 1
    fig, axes = plt.subplots(rows, n, figsize=(size * n + (0.8 if show_depth else 0), size * rows), squeeze=False)
    depths = [load_depth_m(scene.depths[v]) for v in range(n)] if show_depth else []
    vmax = max_depth or max([float(d.max()) for d in depths if d.size] + [1e-3])
    im = None
    for v in range(n):
        with open_view(scene.images[v]) as img:
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
