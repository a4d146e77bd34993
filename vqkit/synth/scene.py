"""One synthetic scene: sample the room (:mod:`vqkit.synth.rooms`), build its mesh, ray cast every view
(:mod:`vqkit.synth.render`), and keep what the views show as the scene's ground truth. Everything derives
from ``numpy.random.SeedSequence([seed, scene_index])``, so a scene does not depend on the others or on
the number of worker processes.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from vqkit import cameras as geo
from vqkit.roomplan import Opening, Room, RoomObject, Wall
from vqkit.synth.catalogue import (
    CEILING_RGB,
    DOOR_RGB,
    FLOOR_PALETTE,
    FRAME_RGB,
    GREY,
    PALETTE,
    SEMANTIC_CLASSES,
    WALL_PALETTE,
    WINDOW_RGB,
)
from vqkit.synth.render import CEILING, DOOR_BASE, FLOOR, MISS, RENDER_SCALE, WALL, WINDOW_BASE, SceneMesh, render
from vqkit.synth.rooms import rects_overlap, sample_cameras, sample_objects, sample_openings, sample_room, wall_frame
from vqkit.vggt.semantic_head import UNLABELLED


def build_mesh(room: dict, doors: list[dict], windows: list[dict], objects: list[dict],
               wall_rgb: tuple[float, float, float], floor_rgb: tuple[float, float, float]) -> SceneMesh:
    """Triangle soup of the scene, walls and floor tiles in the given paint. Walls are zero-thickness
    planes on the polygon's edges with holes for doors and windows, filled by their (coplanar) panels,
    so every surface lies inside the room's bounding box."""
    mesh = SceneMesh()
    W, D, H = room["bbox"][3], room["bbox"][4], room["height"]
    # Floor and ceiling: the grid cells of the bbox cut by the notch, minus the notch.
    xs, ys = [0.0, W], [0.0, D]
    notch = room["notch"]
    if notch is not None:
        xs, ys = sorted(set(xs + [notch[0], notch[2]])), sorted(set(ys + [notch[1], notch[3]]))
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            cell = [xs[i], ys[j], xs[i + 1], ys[j + 1]]
            if notch is not None and rects_overlap(cell, notch, gap=-1e-6):
                continue
            x0, y0, x1, y1 = cell
            mesh.add_quad([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], FLOOR, floor_rgb, textured=True)
            mesh.add_quad([[x0, y0, H], [x1, y0, H], [x1, y1, H], [x0, y1, H]], CEILING, CEILING_RGB)
    openings = defaultdict(list)
    for k, d in enumerate(doors):
        openings[d["wall_id"]].append((d, DOOR_BASE + k, DOOR_RGB))
    for k, w in enumerate(windows):
        openings[w["wall_id"]].append((w, WINDOW_BASE + k, WINDOW_RGB))
    for wall in room["walls"]:
        p0, u, n = wall_frame(wall)
        L = wall["length"]

        def quad(a0, a1, z0, z1, label, rgb, p0=p0, u=u):  # this wall's frame, bound now
            q0, q1 = p0 + u * a0, p0 + u * a1
            mesh.add_quad([[q0[0], q0[1], z0], [q1[0], q1[1], z0], [q1[0], q1[1], z1], [q0[0], q0[1], z1]],
                          label, rgb)

        ops = sorted(openings[wall["id"]], key=lambda o: o[0]["offset"])
        cuts = sorted({0.0, L, *[o[0]["offset"] for o in ops], *[o[0]["offset"] + o[0]["width"] for o in ops]})
        for a0, a1 in zip(cuts[:-1], cuts[1:], strict=True):
            hole = [o for o in ops if o[0]["offset"] <= a0 + 1e-9 and a1 <= o[0]["offset"] + o[0]["width"] + 1e-9]
            if not hole:
                quad(a0, a1, 0.0, H, WALL, wall_rgb)
                continue
            op, label, rgb = hole[0]
            z0, z1 = op["bottom"], op["bottom"] + op["height"]
            if z0 > 0:
                quad(a0, a1, 0.0, z0, WALL, wall_rgb)
            quad(a0, a1, z1, H, WALL, wall_rgb)
            quad(a0, a1, z0, z1, label, rgb)
        # Frames (windows) and handles (doors) stand a few cm into the room: visual cues.
        for op, label, _ in ops:
            a, wdt, z0, z1 = op["offset"], op["width"], op["bottom"], op["bottom"] + op["height"]
            yaw = math.atan2(u[1], u[0])
            if label >= WINDOW_BASE:
                f = 0.05
                for lo, hi in [((a - f, 0, z0 - f), (a + wdt + f, 0.04, z0)),
                               ((a - f, 0, z1), (a + wdt + f, 0.04, z1 + f)),
                               ((a - f, 0, z0), (a, 0.04, z1)), ((a + wdt, 0, z0), (a + wdt + f, 0.04, z1)),
                               ((a + wdt / 2 - 0.02, 0, z0), (a + wdt / 2 + 0.02, 0.03, z1))]:
                    mesh.add_box(lo, hi, label, FRAME_RGB, yaw=yaw, origin=(p0[0], p0[1], 0.0))
            else:
                mesh.add_box((a + wdt - 0.15, 0, 0.95), (a + wdt - 0.05, 0.06, 1.0), label, GREY, yaw=yaw,
                             origin=(p0[0], p0[1], 0.0))
    for i, obj in enumerate(objects):
        main = np.array(PALETTE[obj["colour"]])
        boxes = np.array([q[:6] for q in obj["_parts"]], dtype=float)
        rgbs = [main if k == "main" else main * 0.7 + 0.03 if k == "shade" else k
                for k in (q[6] for q in obj["_parts"])]
        mesh.add_boxes(boxes, i, np.array(rgbs, dtype=float), yaw=obj["yaw"], origin=obj["_origin"])
    return mesh


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The scene's own generator: independent of worker count and of the other scenes."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _r(x, nd: int):
    return np.round(np.asarray(x, dtype=np.float64), nd).tolist()


def make_scene(seed: int, index: int, views: int = 4, image_size: int = 112, render_scale: int = RENDER_SCALE,
               l_shape_prob: float = 0.3, nthreads: int = 0) -> dict:
    """Sample and render one scene (nothing written).

    Returns a dict with ``layout`` (JSON-ready ground truth, objects carry ``pixels`` per view and
    ``visible_views``), ``cameras`` (R, t, K, depth_hist per view), ``rgb`` uint8 [V, S, S, 3],
    ``depth`` float32 [V, S, S] metres, ``labels`` int32 [V, S, S] (:mod:`vqkit.synth.render`'s surface
    labels), ``semantics`` uint8 [V, S, S] (:func:`semantic_map`).
    """
    rng = scene_rng(seed, index)
    room = sample_room(rng, l_shape_prob)
    doors, windows = sample_openings(rng, room)
    objects = sample_objects(rng, room, doors, windows)
    K, Rs, ts, hfov = sample_cameras(rng, room, objects, views, image_size)
    light = (rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), 1.0)
    wall_colour = list(WALL_PALETTE)[int(rng.integers(len(WALL_PALETTE)))]
    floor_colour = list(FLOOR_PALETTE)[int(rng.integers(len(FLOOR_PALETTE)))]
    mesh = build_mesh(room, doors, windows, objects, WALL_PALETTE[wall_colour], FLOOR_PALETTE[floor_colour])
    rgb, depth, labels = render(mesh, K, Rs, ts, image_size, render_scale, light_dir=light, nthreads=nthreads)

    semantics = semantic_map(labels, objects)
    S = image_size
    min_px = max(8, int(0.003 * S * S))  # "well visible": enough pixels to recognise shape and colour
    counts = [np.bincount(labels[v].ravel()[labels[v].ravel() >= 0], minlength=WINDOW_BASE + 10)
              for v in range(views)]
    for i, obj in enumerate(objects):
        obj["pixels"] = [int(counts[v][i]) if i < len(counts[v]) else 0 for v in range(views)]
        vis = []
        for v in range(views):
            (u, vv), z = [a[0] for a in geo.project(np.array([obj["center"]]), Rs[v], ts[v], K)]
            if obj["pixels"][v] >= min_px and z > 0.1 and 0 <= u < S and 0 <= vv < S:
                vis.append(v)
        obj["visible_views"] = vis
    for k, op in enumerate(doors):
        op["pixels"] = [int(counts[v][DOOR_BASE + k]) for v in range(views)]
    for k, op in enumerate(windows):
        op["pixels"] = [int(counts[v][WINDOW_BASE + k]) for v in range(views)]
    # An object no view sees changes no pixel: drop it, so the layout is what the views show.
    supports = {o["on"] for o in objects if o["on"]}
    objects = [o for o in objects if sum(o["pixels"]) > 0 or o["id"] in supports]

    cameras = []
    for v in range(views):
        cameras.append({"view": v, "R": _r(Rs[v], 6), "t": _r(ts[v], 6), "K": _r(K, 4),
                        "width": S, "height": S, "hfov_deg": round(hfov, 4),
                        "depth_hist": _r(geo.depth_histogram(depth[v]), 6)})
    for o in objects:
        o["yaw"] = round(float(o["yaw"]), 6)
    clean = [{k: v for k, v in o.items() if not k.startswith("_")} for o in objects]
    layout = {"scene_id": f"scene{index:05d}", "seed": int(seed), "index": int(index),
              "room": {**{k: room[k] for k in ("polygon", "notch", "height", "bbox", "width", "length")},
                       "wall_colour": wall_colour, "floor_colour": floor_colour},
              "walls": room["walls"], "doors": doors, "windows": windows, "objects": clean,
              "light_dir": _r(light, 4), "min_visible_pixels": min_px}
    return {"layout": layout, "cameras": cameras, "rgb": rgb, "depth": depth, "labels": labels, "semantics": semantics,
            "K": K, "R": Rs, "t": ts}


def semantic_map(labels: np.ndarray, objects: list[dict]) -> np.ndarray:
    """Per-pixel semantic classes uint8 (an index into :data:`SEMANTIC_CLASSES`, :data:`UNLABELLED` where
    nothing was hit) from the renderer's surface labels; ``objects`` are the rendered objects, in the
    order their labels index."""
    table = np.full(WINDOW_BASE + 1001, UNLABELLED, dtype=np.uint8)  # surface label -> class; [-1]: MISS
    table[FLOOR], table[WALL], table[CEILING] = (SEMANTIC_CLASSES.index(k) for k in ("floor", "wall", "ceiling"))
    table[DOOR_BASE:WINDOW_BASE] = SEMANTIC_CLASSES.index("door")
    table[WINDOW_BASE:-1] = SEMANTIC_CLASSES.index("window")
    table[:len(objects)] = [SEMANTIC_CLASSES.index(o["category"]) for o in objects]
    assert MISS == -1  # indexes the table's last entry
    return table[labels]


def room_from_layout(layout: dict):
    """The scene's RoomPlan-style :class:`vqkit.roomplan.Room` (walls, doors, windows, objects)."""
    H = layout["room"]["height"]
    walls = []
    for w in layout["walls"]:
        p0, p1 = np.array(w["start"]), np.array(w["end"])
        c, d = (p0 + p1) / 2, p1 - p0
        walls.append(Wall(w["id"], (c[0], c[1], H / 2), w["length"], H, math.atan2(d[1], d[0])))
    ops = {k: [Opening(o["id"], k, o["wall_id"], o["center"], o["width"], o["height"], o["yaw"],
                       o.get("is_open") if k == "door" else None) for o in layout[k + "s"]]
           for k in ("door", "window")}
    objects = [RoomObject(o["id"], o["category"], o["center"], o["size"], o["yaw"]) for o in layout["objects"]]
    return Room(walls=walls, doors=ops["door"], windows=ops["window"], objects=objects)
