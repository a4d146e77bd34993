"""vqkit.synth.render: ray-cast depth is camera z at pixel centres, so back-projected pixels land on the
surfaces the layout names; views wear the paint the layout names."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vqkit import cameras as geo
from vqkit import synth


def test_backprojected_depth_lies_inside_the_room(dataset, scenes):
    out, stats = dataset
    size = stats["args"]["image_size"]
    for layout, cams in scenes:
        lo = np.array(layout["room"]["bbox"][:3]) - 0.02
        hi = np.array(layout["room"]["bbox"][3:]) + 0.02
        for cam in cams:
            mm = np.array(Image.open(out / cam["depth"]))
            assert mm.dtype == np.uint16 and mm.shape == (size, size)
            depth = geo.depth_png_to_metres(mm)
            assert (depth > 0).mean() > 0.99  # a closed room: every ray hits something
            pts = geo.backproject_depth(depth, np.array(cam["K"]), np.array(cam["R"]), np.array(cam["t"]))
            inside = np.all((pts >= lo) & (pts <= hi), axis=1)
            assert inside.mean() >= 0.99, (layout["scene_id"], cam["view"], inside.mean())
            np.testing.assert_allclose(np.sum(cam["depth_hist"]), 1.0, atol=1e-4)


def test_render_matches_geometry_exactly():
    """Depth is camera z at pixel centres: back-projected object pixels fall in the object's box, and a
    visible object's centre projects inside the image of a view that sees it."""
    sc = synth.scene.make_scene(seed=11, index=0, views=4, image_size=64)
    layout, K = sc["layout"], sc["K"]
    checked = 0
    for obj in layout["objects"]:
        c, (w, h, d) = np.array(obj["center"]), obj["size"]
        half = max(w, d) / 2 + 0.02  # axis-aligned bound of a yawed box (yaw is a multiple of 90 deg)
        for v in obj["visible_views"]:
            (u, vv), z = [a[0] for a in geo.project(c[None], sc["R"][v], sc["t"][v], K)]
            assert z > 0 and 0 <= u < 64 and 0 <= vv < 64
            mask = sc["labels"][v] == int(obj["id"].split("_")[1])
            assert mask.sum() >= layout["min_visible_pixels"]
            depth = np.where(mask, sc["depth"][v], 0.0)
            pts = geo.backproject_depth(depth, K, sc["R"][v], sc["t"][v])
            assert np.all(np.abs(pts[:, :2] - c[:2]) <= half + 1e-3)
            assert np.all((pts[:, 2] >= c[2] - h / 2 - 0.02) & (pts[:, 2] <= c[2] + h / 2 + 0.02))
            checked += 1
    assert checked > 0
    # The renderer needs no vertical flip: the floor is in the lower half, the ceiling in the upper.
    floor = np.mean(np.nonzero(sc["labels"][0] == synth.render.FLOOR)[0])
    ceiling_rows = np.nonzero(sc["labels"][0] == synth.render.CEILING)[0]
    ceiling = np.mean(ceiling_rows) if len(ceiling_rows) else 0
    assert floor > 32 > ceiling


def test_walls_and_floor_wear_the_paint_the_layout_names():
    """The room_colour answers are what the views show: wall pixels are the named wall paint, floor
    pixels the named floor tiles, each shaded, and nearer that paint than any other of its palette."""
    sc = synth.scene.make_scene(seed=5, index=2, views=4, image_size=64)
    room, rgb, labels = sc["layout"]["room"], sc["rgb"].astype(float) / 255, sc["labels"]
    for label, palette, name in ((synth.render.WALL, synth.catalogue.WALL_PALETTE, room["wall_colour"]),
                                 (synth.render.FLOOR, synth.catalogue.FLOOR_PALETTE, room["floor_colour"])):
        pixels = rgb[labels == label]
        assert len(pixels) > 500
        mean = pixels.mean(0)

        def distance(paint, mean=mean):  # best shading factor per candidate paint, then the residual
            paint = np.array(paint)
            return np.linalg.norm(mean - paint * (mean @ paint) / (paint @ paint))

        assert min(palette, key=lambda c: distance(palette[c])) == name
    colours = {(s["layout"]["room"]["wall_colour"], s["layout"]["room"]["floor_colour"])
               for s in (synth.scene.make_scene(seed=5, index=i, views=1, image_size=16) for i in range(12))}
    assert len(colours) > 4  # rooms differ in paint


def test_a_wall_and_a_box_seen_head_on():
    """A camera at the origin looking along +x at a 2 m x 2 m wall quad 2 m away, a box 1 m away in
    front of the image's left half: depth is exactly each surface's distance (camera z), labels name
    the surface, pixels past the wall's edge miss (depth 0, black), and the antialiasing scale
    changes the colours only."""
    K = geo.intrinsics_from_fov(16, 16, 90.0)
    R, t = geo.look_at([0.0, 0.0, 0.0], [1.0, 0.0, 0.0])
    mesh = synth.render.SceneMesh()
    mesh.add_quad([[2, 1, -1], [2, -1, -1], [2, -1, 1], [2, 1, 1]], synth.render.WALL, (0.9, 0.9, 0.9))
    mesh.add_box([1.0, 0.0, -0.5], [1.2, 0.5, 0.5], 0, (0.9, 0.1, 0.1))  # world +y: the image's left
    rgb, depth, labels = synth.render.render(mesh, K, R[None], t[None], 16, render_scale=2, light_dir=(-1, 0, 0))
    assert rgb.shape == (1, 16, 16, 3) and depth.shape == labels.shape == (1, 16, 16)
    on_box, on_wall = labels[0] == 0, labels[0] == synth.render.WALL
    np.testing.assert_allclose(depth[0][on_box], 1.0, atol=1e-5)
    np.testing.assert_allclose(depth[0][on_wall], 2.0, atol=1e-5)
    # 90 degrees of view: the wall (2 m wide at 2 m) fills the middle 8 x 8 pixels; the box (y 0..0.5,
    # z -0.5..0.5 at 1 m) covers columns 4-7 (left of centre, world +y) of rows 4-11, in front of the wall
    expected_box = np.zeros((16, 16), bool)
    expected_box[4:12, 4:8] = True
    np.testing.assert_array_equal(on_box, expected_box)
    np.testing.assert_array_equal(on_wall | on_box, np.pad(np.ones((8, 8), bool), 4))
    missed = labels[0] == synth.render.MISS
    assert missed.sum() == 256 - 64 and np.all(depth[0][missed] == 0) and np.all(rgb[0][missed] == 0)
    box_rgb = rgb[0][on_box].astype(int)
    assert np.all(box_rgb[:, 0] > 3 * box_rgb[:, 1])  # red where the box is
    _, depth1, labels1 = synth.render.render(mesh, K, R[None], t[None], 16, render_scale=1, light_dir=(-1, 0, 0))
    np.testing.assert_array_equal(depth1, depth)
    np.testing.assert_array_equal(labels1, labels)
