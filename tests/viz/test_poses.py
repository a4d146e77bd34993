"""vqkit.viz.poses: the 3D pose figure (plotly and matplotlib) draws each camera's frustum where the
camera is, the layout where the room is, and keeps them all in view; the open3d geometry and the grid
of views hold the same. Expected positions are worked out here from R, t, K and the layout, not taken
from the module's own helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.text import Text
from PIL import Image

from vqkit import cameras as geo
from vqkit import viz
from vqkit.data.schema import load_records
from vqkit.viz import scene as viz_scene

PNG = b"\x89PNG\r\n\x1a\n"
DEPTH = 0.5  # the figures' default frustum length (m)


def expected_frustum(scene, v: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre -R^T t and the image corners (TL, TR, BR, BL) DEPTH metres in front of it."""
    R, t, K = scene.R[v], scene.t[v], scene.K[v]
    w, h = scene.image_size(v)
    pixels = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], dtype=np.float64)
    in_camera = DEPTH * pixels @ np.linalg.inv(K).T
    return -R.T @ t, (in_camera - t) @ R  # x_world = R^T (x_cam - t), row by row


def wall_corners(wall) -> np.ndarray:
    """The 4 corners of a wall (or door, window) rectangle."""
    u = np.array([math.cos(wall.yaw), math.sin(wall.yaw), 0.0]) * wall.width / 2
    z = np.array([0.0, 0.0, wall.height / 2])
    c = np.asarray(wall.center)
    return np.stack([c - u - z, c + u - z, c + u + z, c - u + z])


def box_corners(obj) -> np.ndarray:
    """The 8 corners of an object's upright box (width along yaw, depth across it)."""
    w, h, d = obj.size
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    return np.array([[obj.center[0] + c * a - s * b, obj.center[1] + s * a + c * b, obj.center[2] + e]
                     for a in (-w / 2, w / 2) for b in (-d / 2, d / 2) for e in (-h / 2, h / 2)])


def finite(x, y, z=None) -> np.ndarray:
    """The drawn vertices of a NaN/None-separated polyline, as [N, 2 or 3]."""
    cols = [x, y] if z is None else [x, y, z]
    pts = np.array([[np.nan if v is None else v for v in col] for col in cols], dtype=np.float64).T
    return pts[np.all(np.isfinite(pts), axis=1)]


def as_set(points: np.ndarray) -> set[tuple]:
    return {tuple(p) for p in np.round(np.asarray(points, dtype=np.float64), 5)}


def test_records_without_geometry_or_layout(tiny_records):
    """Records in the original format (geom_token null, no depths) and real-data records without a
    layout: the views still draw; the pose figure, with nothing to place in 3D, says so in one line
    (which record, why, what to do) instead of drawing empty axes."""
    from vqkit.errors import DataError

    records = load_records(str(tiny_records.path))
    seed_style = viz.load_scene(records[-1])
    assert not seed_style.has_geometry and seed_style.depths is None and seed_style.room is None
    assert viz.frusta(seed_style) == [] and len(viz.fused_point_cloud(seed_style)[0]) == 0
    for backend in ("plotly", "matplotlib"):
        with pytest.raises(DataError) as refused:
            viz.pose_figure(seed_style, backend=backend)
        message = str(refused.value)
        assert message == viz.no_poses_message(seed_style) and "\n" not in message
        assert message.startswith(f"{records[-1].id}: its views have no camera poses (geom_token is null)")
        assert "vqkit prep geometry" in message
    assert [ax.get_title() for ax in viz.views_grid(seed_style).axes] == ["view 0", "view 1", "view 2"]
    posed = viz.pose_figure(records[0], backend="plotly")
    assert {t.name for t in posed.data if t.name} == {"point cloud", "view 0", "view 1", "view 2"}


def test_pose_figure_plotly_traces(synth):
    """Every view's frustum trace has its apex at the camera centre and its far corners where K puts
    the image corners; its number sits at the centre; the walls and each category's objects are traced
    at their corners; the point cloud lies inside the room."""
    scene = viz.load_scene(synth / "scenes" / "scene00001")
    fig = viz.pose_figure(scene, backend="plotly", stride=2)
    names = [t.name for t in fig.data if t.name]
    assert names[0] == "point cloud"
    assert {"view 0", "view 1", "wall"} <= set(names)
    categories = {o.category for o in scene.room.objects}
    assert categories <= set(names)
    for v in range(scene.num_views):
        centre, corners = expected_frustum(scene, v)
        frustum = next(t for t in fig.data if t.name == f"view {v}")
        assert as_set(finite(frustum.x, frustum.y, frustum.z)) == as_set(np.vstack([centre, corners]))
        label = next(t for t in fig.data if t.legendgroup == f"view {v}" and t.text is not None)
        assert label.text == (str(v),)
        np.testing.assert_allclose([label.x[0], label.y[0], label.z[0]], centre, atol=1e-9)
        top = next(t for t in fig.data if t.legendgroup == f"view {v}" and t.line.width == 10)
        np.testing.assert_allclose(finite(top.x, top.y, top.z), corners[:2], atol=1e-9)  # the image's top edge
    walls = next(t for t in fig.data if t.name == "wall")
    assert as_set(finite(walls.x, walls.y, walls.z)) == as_set(np.vstack([wall_corners(w) for w in scene.room.walls]))
    for category in categories:
        trace = next(t for t in fig.data if t.name == category)
        boxes = [box_corners(o) for o in scene.room.objects if o.category == category]
        assert as_set(finite(trace.x, trace.y, trace.z)) == as_set(np.vstack(boxes))
    cloud = fig.data[0]
    points = np.column_stack([cloud.x, cloud.y, cloud.z])
    x0, y0, z0, x1, y1, z1 = scene_bbox(synth, "scene00001")
    assert len(points) > 100
    assert np.all(points >= np.array([x0, y0, z0]) - 0.06) and np.all(points <= np.array([x1, y1, z1]) + 0.06)
    assert fig.layout.scene.aspectmode == "data"


def scene_bbox(synth, scene_id: str) -> list[float]:
    import json

    return json.loads((synth / "scenes" / scene_id / "layout.json").read_text())["room"]["bbox"]


def test_pose_figure_matplotlib_png(synth, tmp_path):
    fig = viz.pose_figure(synth / "scenes" / "scene00002", backend="matplotlib")
    ax3d, ax2d = fig.axes[:2]
    assert ax3d.name == "3d" and ax2d.get_title() == "from above"
    (legend,) = fig.legends  # one legend, for both panels
    labels = {t.get_text() for t in legend.get_texts()}
    assert {"view 0", "view 1", "wall"} <= labels
    fig.savefig(tmp_path / "pose.png", dpi=60)
    assert (tmp_path / "pose.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="backend"):
        viz.pose_figure(synth / "scenes" / "scene00002", backend="vtk")


def test_matplotlib_pose_figure_draws_cameras_and_room_in_place(synth):
    """The static figure: in 3D, each view's frustum in its colour with its apex at the camera centre
    and its number there; from above, each camera's centre marked, each object's footprint and each
    wall's line where they are; both panels' limits contain the whole room and every camera."""
    scene = viz.load_scene(synth / "scenes" / "scene00002")
    fig = viz.pose_figure(scene, backend="matplotlib")
    ax3d, ax2d = fig.axes[:2]
    drawn3d = [(line.get_data_3d(), to_hex(line.get_color())) for line in ax3d.lines]
    centres = []
    for v in range(scene.num_views):
        centre, corners = expected_frustum(scene, v)
        centres.append(centre)
        colour = viz_scene.VIEW_COLOURS[v]
        frustum = [finite(*data) for data, c in drawn3d if c == colour]
        assert any(as_set(f) == as_set(np.vstack([centre, corners])) for f in frustum), f"view {v}"
        # Its number at the centre or further along its viewing direction (where it prints over no other).
        (number,) = [t for t in ax3d.texts if t.get_text() == str(v)]
        along = np.asarray(number.get_position_3d()) - centre
        axis = corners.mean(0) - centre
        assert np.linalg.norm(np.cross(along, axis)) < 1e-9 * max(1.0, np.linalg.norm(along))
        marks = [line for line in ax2d.lines if line.get_marker() == "o" and to_hex(line.get_color()) == colour]
        assert len(marks) == 1 and np.allclose(marks[0].get_xydata(), [centre[:2]], atol=1e-9)
    top_view = [as_set(finite(*line.get_data())) for line in ax2d.lines]
    for obj in scene.room.objects:
        foot = box_corners(obj)[::2, :2]  # the bottom corners seen from above
        assert as_set(foot) in top_view, obj.category
    for wall in scene.room.walls:
        assert as_set(wall_corners(wall)[:2, :2]) in top_view, wall.id
    everything = np.vstack([np.array(centres)] + [box_corners(o) for o in scene.room.objects]
                           + [wall_corners(w) for w in scene.room.walls])
    for lo_hi, k in ((ax3d.get_xlim3d(), 0), (ax3d.get_ylim3d(), 1), (ax3d.get_zlim3d(), 2),
                     (ax2d.get_xlim(), 0), (ax2d.get_ylim(), 1)):
        assert lo_hi[0] <= everything[:, k].min() + 1e-9 and everything[:, k].max() - 1e-9 <= lo_hi[1]


def test_open3d_geometries(synth):
    scene = viz.load_scene(synth / "scenes" / "scene00000")
    pcd, cams, layout = viz.open3d_geometries(scene)
    assert len(pcd.points) > 0 and len(pcd.colors) == len(pcd.points)
    assert len(cams.lines) == len(viz_scene.FRUSTUM_EDGES) * scene.num_views
    assert len(layout.lines) == sum(len(s["edges"]) for s in viz.layout_segments(scene.room))
    expected = [np.vstack(expected_frustum(scene, v)) for v in range(scene.num_views)]
    assert as_set(np.asarray(cams.points)) == as_set(np.vstack(expected))
    apexes = np.asarray(cams.points)[np.asarray(cams.lines)[:, 0]]  # every frustum edge starts at an apex or a corner
    assert as_set(np.vstack([e[0] for e in expected])) <= as_set(apexes)
    walls = np.vstack([wall_corners(w) for w in scene.room.walls])
    assert as_set(walls) <= as_set(np.asarray(layout.points))


def test_views_grid(synth):
    rec = load_records(str(synth / "val.jsonl"))[0]
    fig = viz.views_grid(rec)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["view 0", "view 1", "depth 0", "depth 1", ""]  # the last axes: the depth colour bar
    depths = []
    for v in range(2):
        with Image.open(rec.images[v]) as im:
            np.testing.assert_array_equal(fig.axes[v].images[0].get_array(), np.asarray(im.convert("RGB")))
        with Image.open(rec.depths[v]) as im:
            depths.append(geo.depth_png_to_metres(np.asarray(im)))
        shown = fig.axes[2 + v].images[0].get_array()
        np.testing.assert_allclose(shown.filled(np.nan), np.where(depths[v] > 0, depths[v], np.nan), equal_nan=True)
    # one colour scale for every depth map, from 0 to the farthest depth
    assert {fig.axes[2 + v].images[0].get_clim() for v in range(2)} == {(0, max(float(d.max()) for d in depths))}
    no_depth = viz.views_grid(rec, depth=False)
    assert sorted(ax.get_title() for ax in no_depth.axes) == ["view 0", "view 1"]


def _pixels(fig, artist):
    return artist.get_window_extent(fig.canvas.get_renderer())


def _projected_box(ax3d, text):
    """A 3D text's box on the figure, where the axes' projection puts it."""
    from mpl_toolkits.mplot3d import proj3d

    fig = ax3d.figure
    x, y, _ = proj3d.proj_transform(*text.get_position_3d(), ax3d.get_proj())
    px, py = ax3d.transData.transform((x, y))
    probe = fig.text(0, 0, text.get_text(), fontsize=text.get_fontsize(), fontweight=text.get_fontweight())
    box = _pixels(fig, probe)
    probe.remove()
    return box.translated(px - box.x0, py - box.y0)


def test_pose_figure_legend_is_legible_and_beside_the_panels_and_camera_numbers_apart(synth):
    """Two cameras 3 cm apart looking different ways: their numbers print over each other neither in 3D
    nor from above. The legend (views, kinds, categories) is in text of at least 9 pt, beside both
    panels, covering neither."""
    scene = viz.load_scene(synth / "scenes" / "scene00002")
    scene.R = np.stack([scene.R[0], scene.R[1]])
    scene.t = np.stack([scene.t[0], scene.t[0] + scene.R[0] @ np.array([0.03, 0.0, 0.0])])  # 3 cm to the side
    fig = viz.pose_figure(scene, backend="matplotlib")
    fig.canvas.draw()
    ax3d, ax2d = fig.axes[:2]
    (legend,) = fig.legends
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 9
    legend_box = _pixels(fig, legend)
    for ax in (ax3d, ax2d):
        assert not legend_box.overlaps(_pixels(fig, ax)), ax.get_title()
    numbers = {t.get_text(): _projected_box(ax3d, t) for t in ax3d.texts if t.get_text() in ("0", "1")}
    assert not numbers["0"].overlaps(numbers["1"])
    above = {t.get_text(): _words(t, fig.canvas.get_renderer()) for t in ax2d.texts
             if t.get_text() in ("0", "1")}
    assert len(above) == 2 and not above["0"].overlaps(above["1"])


def _words(annotation, renderer):
    """Where an annotation's words are on the figure (its box without the leader line)."""
    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def test_pose_figure_draws_a_grounding_answer(synth, grounding_predictions):
    row = grounding_predictions[1]
    boxes = viz_scene.grounding_boxes(row)
    assert [b["dash"] for b in boxes] == [False, True]
    scene = synth / "scenes" / row["scene_id"]
    fig = viz.pose_figure(scene, backend="plotly", boxes=boxes)
    traces = {t.name: t for t in fig.data}
    label = row["box"]["label"]
    assert traces[f"predicted: {label}"].line.dash == "dash" and traces[f"gold: {label}"].line.dash == "solid"
    gold = traces[f"gold: {label}"]
    drawn = np.array([p for p in zip(gold.x, gold.y, gold.z, strict=True) if p[0] is not None and np.isfinite(p[0])])
    assert np.allclose(drawn.mean(0), row["box"]["center"], atol=1e-6)
    fig = viz.pose_figure(scene, backend="matplotlib", boxes=boxes)
    (legend,) = fig.legends  # one legend, for both panels
    labels = {t.get_text() for t in legend.get_texts()}
    assert {f"gold: {label}", f"predicted: {label}"} <= labels
