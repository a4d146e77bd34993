"""vqkit.viz.scene: a scene loaded from any source is the same scene; the fused point cloud and the
camera frusta are where the geometry puts them; layout outlines."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqkit import cameras as geo
from vqkit import viz
from vqkit.data.schema import load_records
from vqkit.roomplan import Opening, Room, RoomObject, Wall
from vqkit.viz import scene as viz_scene


def _layout(synth: Path, scene_id: str) -> dict:
    return json.loads((synth / "scenes" / scene_id / "layout.json").read_text())


def test_scene_sources_agree(synth):
    rec = load_records(str(synth / "train.jsonl"))[0]
    from_record = viz.load_scene(rec)
    from_dir = viz.load_scene(synth / "scenes" / rec.scene_id)
    from_file = viz.load_scene(synth / "train.jsonl", index=0)
    raw = json.loads((synth / "train.jsonl").read_text().splitlines()[0])
    from_dict = viz.load_scene(raw, root=synth)
    for s in (from_dir, from_file, from_dict):
        assert [Path(p).resolve() for p in s.images] == [Path(p).resolve() for p in from_record.images]
        np.testing.assert_allclose(s.R, from_record.R, atol=1e-6)
        np.testing.assert_allclose(s.t, from_record.t, atol=1e-6)
        np.testing.assert_allclose(s.K, from_record.K, atol=1e-6)
        assert s.room is not None and len(s.room.walls) == len(from_record.room.walls) >= 4
    assert len(from_record.room.objects) == len(_layout(synth, rec.scene_id)["objects"])
    with pytest.raises(Exception, match="record index 99"):
        viz.load_scene(synth / "train.jsonl", index=99)
    with pytest.raises(Exception, match="not a scene folder"):
        viz.load_scene_dir(synth)


def test_point_cloud_of_a_known_plane_with_a_smaller_depth_map(tmp_path):
    """A camera at the origin looking along +x at a wall 2 m away; depth stored at half the RGB size
    (as ScanNet's 640x480 depth next to 1296x968 colour): every point must land on x = 2 inside the
    frustum, and its colour must come from the matching RGB pixel."""
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :12] = (255, 0, 0)  # left half red, right half blue
    rgb[:, 12:] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(geo.metres_to_depth_png(np.full((8, 12), 2.0))).save(tmp_path / "depth.png")
    K = geo.intrinsics_from_fov(24, 16, 90.0)
    R, t = geo.look_at([0, 0, 1.0], [1, 0, 1.0])
    scene = viz.SceneView([str(tmp_path / "rgb.png")], [str(tmp_path / "depth.png")], R[None], t[None], K[None])
    points, colours = viz.fused_point_cloud(scene, stride=1, voxel=0.0)
    assert points.shape == (96, 3) and colours.shape == (96, 3)
    np.testing.assert_allclose(points[:, 0], 2.0, atol=1e-6)
    # 90 degree horizontal field of view: |y| < 2 at 2 m; the image's left (camera -x) is world +y.
    assert np.all(np.abs(points[:, 1]) < 2.0) and np.all(np.abs(points[:, 2] - 1.0) < 2.0 * 16 / 24)
    left, right = points[:, 1] > 0.4, points[:, 1] < -0.4  # away from the colour edge at y = 0
    assert left.sum() == right.sum() == 5 * 8  # 5 of the 12 depth columns on each side, 8 rows
    assert np.all(colours[left, 0] > 0.9) and np.all(colours[right, 2] > 0.9)
    assert np.all(colours[left, 2] < 0.1) and np.all(colours[right, 0] < 0.1)
    down, _ = viz.fused_point_cloud(scene, stride=1, voxel=0.5)
    assert 0 < len(down) < len(points)
    capped, _ = viz.fused_point_cloud(scene, stride=1, voxel=0.0, max_points=10)
    assert len(capped) == 10


def test_fused_cloud_and_frusta_sit_inside_the_synthetic_room(synth):
    scene = viz.load_scene(synth / "scenes" / "scene00000")
    layout = _layout(synth, "scene00000")
    x0, y0, z0, x1, y1, z1 = layout["room"]["bbox"]
    points, colours = viz.fused_point_cloud(scene, stride=1, voxel=0.05)
    assert len(points) > 200
    tol = 0.06  # voxel centres and the 1 mm depth quantisation
    assert np.all(points >= np.array([x0, y0, z0]) - tol) and np.all(points <= np.array([x1, y1, z1]) + tol)
    assert np.all((colours >= 0) & (colours <= 1))
    for v, corners in enumerate(viz.frusta(scene, depth=0.5)):
        centre = corners[0]
        assert x0 < centre[0] < x1 and y0 < centre[1] < y1 and z0 < centre[2] < z1
        # The frustum opens along the camera's viewing direction (third row of R).
        forward = corners[1:].mean(0) - centre
        np.testing.assert_allclose(forward / np.linalg.norm(forward), scene.R[v][2], atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(forward), 0.5, atol=1e-6)


def test_box_and_surface_corners():
    c = viz_scene.box_corners_3d((1.0, 2.0, 0.5), (2.0, 1.0, 0.4), math.pi / 2)  # width along +y
    assert c.shape == (8, 3)
    np.testing.assert_allclose(c.min(0), [0.8, 1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(c.max(0), [1.2, 3.0, 1.0], atol=1e-9)
    lengths = sorted({round(float(np.linalg.norm(c[a] - c[b])), 6) for a, b in viz_scene.BOX_EDGES})
    assert lengths == [0.4, 1.0, 2.0]
    s = viz_scene.surface_corners((0.0, 0.0, 1.0), 3.0, 2.0, 0.0)
    np.testing.assert_allclose(s, [[-1.5, 0, 0], [1.5, 0, 0], [1.5, 0, 2], [-1.5, 0, 2]])
    room = Room(walls=[Wall("w", (0, 0, 1), 3, 2, 0)], objects=[RoomObject("o", "bed", (1, 1, 0.3), (1, 0.6, 2), 0)])
    segs = viz.layout_segments(room)
    assert [s["kind"] for s in segs] == ["wall", "object"] and segs[1]["label"] == "bed"


def test_frusta_open_from_the_camera_centre_through_the_image_corners(tmp_path):
    """A camera standing at (1, 2, 1.5) looking along +x: the frustum's apex is that point, and its
    four far corners lie `depth` metres in front of it where the image's corners project."""
    Image.new("RGB", (24, 16)).save(tmp_path / "view.png")
    K = geo.intrinsics_from_fov(24, 16, 90.0)
    R, t = geo.look_at([1.0, 2.0, 1.5], [3.0, 2.0, 1.5])
    scene = viz.SceneView([str(tmp_path / "view.png")], None, R[None], t[None], K[None])
    (corners,) = viz.frusta(scene, depth=0.5)
    np.testing.assert_allclose(corners[0], [1.0, 2.0, 1.5], atol=1e-12)
    np.testing.assert_allclose(corners[1:, 0], 1.5, atol=1e-12)  # half a metre ahead, along +x
    pixels, z = geo.project(corners[1:], R, t, K)
    np.testing.assert_allclose(pixels, [[0, 0], [24, 0], [24, 16], [0, 16]], atol=1e-9)  # TL, TR, BR, BL
    np.testing.assert_allclose(z, 0.5, atol=1e-12)
    # 90 degrees across 24 px: the image is 1 m wide at 0.5 m; its top edge is above the centre (z-up)
    assert np.linalg.norm(corners[1] - corners[2]) == pytest.approx(1.0)
    assert corners[1, 2] > 1.5 > corners[3, 2]


def test_layout_segments_outline_every_element_in_its_colour():
    room = Room(walls=[Wall("w", (0, 0, 1.25), 4, 2.5, 0)],
                doors=[Opening("d", "door", "w", (1, 0, 1.0), 0.8, 2.0, 0)],
                windows=[Opening("n", "window", "w", (-1, 0, 1.5), 1.0, 1.0, 0)],
                objects=[RoomObject("o", "sofa", (0, 1, 0.4), (2, 0.8, 0.9), math.pi / 2)])
    segs = {s["label"]: s for s in viz.layout_segments(room)}
    assert list(segs) == ["wall w", "door d", "window n", "sofa"]
    np.testing.assert_allclose(segs["door d"]["corners"], [[0.6, 0, 0], [1.4, 0, 0], [1.4, 0, 2], [0.6, 0, 2]])
    np.testing.assert_allclose(segs["window n"]["corners"][[0, 2]], [[-1.5, 0, 1.0], [-0.5, 0, 2.0]])
    sofa = segs["sofa"]["corners"]
    np.testing.assert_allclose(sofa.min(0), [-0.45, 0.0, 0.0], atol=1e-9)  # turned 90 deg: 2 m along y
    np.testing.assert_allclose(sofa.max(0), [0.45, 2.0, 0.8], atol=1e-9)
    assert [segs[k]["colour"] for k in ("wall w", "door d", "window n")] == [
        viz_scene.KIND_COLOURS[k] for k in ("wall", "door", "window")]
    assert segs["sofa"]["colour"] == viz_scene.hex_colour(viz_scene.category_colour("sofa"))
    assert len(segs["sofa"]["edges"]) == 12 and len(segs["wall w"]["edges"]) == 4


def _lab(hex_colour: str) -> np.ndarray:
    """CIELAB (D65) of an sRGB colour: distances in it follow how different two colours look."""
    from matplotlib.colors import to_rgb

    rgb = np.asarray(to_rgb(hex_colour))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_every_kind_category_and_view_has_a_colour_of_its_own():
    """Legends tell elements apart by colour: every layout category, element kind and view frustum
    (and the white background) differ by a clearly visible CIELAB distance; no category shares a
    kind's colour (door and toilet) or a view's (view 0's frustum and the door)."""
    from itertools import combinations

    from matplotlib.colors import to_hex

    from vqkit.roomplan import CATEGORIES

    named = {f"kind {k}": c for k, c in viz_scene.KIND_COLOURS.items()}
    named |= {f"category {k}": to_hex(viz_scene.category_colour(k)) for k in CATEGORIES}
    named |= {f"view {v}": c for v, c in enumerate(viz_scene.VIEW_COLOURS)}
    named["background"] = "#ffffff"
    assert len(named) == 4 + len(CATEGORIES) + len(viz_scene.VIEW_COLOURS) + 1
    close = [(a, b, round(float(np.linalg.norm(_lab(named[a]) - _lab(named[b]))), 1))
             for a, b in combinations(named, 2) if np.linalg.norm(_lab(named[a]) - _lab(named[b])) < 25]
    assert close == []
    assert to_hex(viz_scene.category_colour("not-a-category")) not in named.values()
