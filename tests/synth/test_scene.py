"""vqkit.synth.scene: one scene sampled and rendered; its semantic maps label every pixel with the
layout's classes."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from vqkit import cameras as geo
from vqkit.synth.scene import make_scene, room_from_layout, semantic_map


def test_semantic_maps_label_every_pixel_with_the_layouts_classes(dataset, scenes):
    """semantic_XX.png holds, per pixel, the class of the surface the ray hit: objects with the
    pixel counts their layout entry records, walls / floor / ceiling / doors / windows, and 255 only
    where no surface was hit; every record names its maps."""
    from vqkit.synth.catalogue import CATEGORIES, SEMANTIC_CLASSES

    out, stats = dataset
    assert stats["semantic_classes"] == {"names": SEMANTIC_CLASSES, "unlabelled": 255}
    first_object = SEMANTIC_CLASSES.index(next(iter(CATEGORIES)))
    seen = set()
    size = stats["args"]["image_size"]
    for layout, cameras in scenes:
        for v, cam in enumerate(cameras):
            img = Image.open(out / cam["semantics"])
            assert img.mode == "L" and img.size == (size, size)
            classes = np.asarray(img)
            depth = geo.depth_png_to_metres(np.asarray(Image.open(out / cam["depth"])))
            np.testing.assert_array_equal(classes == 255, depth == 0)  # unlabelled = nothing hit
            seen |= set(np.unique(classes).tolist())
            for category in CATEGORIES:
                expected = sum(o["pixels"][v] for o in layout["objects"] if o["category"] == category)
                assert int((classes == first_object + list(CATEGORIES).index(category)).sum()) == expected
            if layout["doors"]:
                assert int((classes == SEMANTIC_CLASSES.index("door")).sum()) == \
                    sum(d["pixels"][v] for d in layout["doors"])
    assert {SEMANTIC_CLASSES.index("floor"), SEMANTIC_CLASSES.index("wall")} <= seen
    assert len(seen - {255}) > 5 and max(seen - {255}) < len(SEMANTIC_CLASSES)
    rec = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    cameras = json.loads((out / "scenes" / rec["scene_id"] / "cameras.json").read_text())
    assert rec["semantics"] == [c["semantics"] for c in cameras]


def test_a_scene_is_a_function_of_its_seed_and_index():
    a = make_scene(seed=7, index=3, views=2, image_size=16)
    b = make_scene(seed=7, index=3, views=2, image_size=16)
    assert a["layout"] == b["layout"] and a["cameras"] == b["cameras"]
    for key in ("rgb", "depth", "labels", "semantics"):
        np.testing.assert_array_equal(a[key], b[key])
    other = make_scene(seed=7, index=4, views=2, image_size=16)
    assert other["layout"]["room"] != a["layout"]["room"] and other["layout"]["scene_id"] == "scene00004"
    assert a["rgb"].shape == (2, 16, 16, 3) and a["semantics"].dtype == np.uint8


def test_semantic_map_of_known_labels():
    """Surface labels -> classes: the floor, walls and ceiling, every door and window, each object by
    its category (in the order the objects were rendered), and 255 where no ray hit."""
    from vqkit.synth.catalogue import SEMANTIC_CLASSES
    from vqkit.synth.render import CEILING, DOOR_BASE, FLOOR, MISS, WALL, WINDOW_BASE

    labels = np.array([[FLOOR, WALL, CEILING, MISS], [0, 1, DOOR_BASE + 1, WINDOW_BASE + 2]], dtype=np.int32)
    classes = semantic_map(labels, [{"category": "sofa"}, {"category": "bed"}])
    names = [[SEMANTIC_CLASSES[c] if c != 255 else None for c in row] for row in classes.tolist()]
    assert names == [["floor", "wall", "ceiling", None], ["sofa", "bed", "door", "window"]]


def test_room_from_layout_is_the_layout_as_a_roomplan_room():
    layout = make_scene(seed=5, index=1, views=1, image_size=16)["layout"]
    room = room_from_layout(layout)
    H = layout["room"]["height"]
    assert len(room.walls) == len(layout["walls"]) and len(room.objects) == len(layout["objects"])
    for wall, w in zip(room.walls, layout["walls"], strict=True):
        start, end = np.array(w["start"]), np.array(w["end"])
        np.testing.assert_allclose(wall.center, [*(start + end) / 2, H / 2], atol=1e-9)
        assert (wall.width, wall.height) == (w["length"], H)
        np.testing.assert_allclose([np.cos(wall.yaw), np.sin(wall.yaw)], (end - start) / w["length"], atol=1e-3)
    for door, d in zip(room.doors, layout["doors"], strict=True):
        assert (door.kind, door.wall_id, door.center, door.is_open) == ("door", d["wall_id"], tuple(d["center"]), False)
    assert [w.wall_id for w in room.windows] == [w["wall_id"] for w in layout["windows"]]
    for obj, o in zip(room.objects, layout["objects"], strict=True):
        assert (obj.category, obj.center, obj.size, obj.yaw) == (o["category"], tuple(o["center"]), tuple(o["size"]),
                                                                 o["yaw"])
