"""Synthetic stand-ins for the real datasets, in their official on-disk layouts (no real data ships).

A :class:`FixtureScene` is a box-shaped room (floor at z = 0, z-up) with cameras placed like a
person scanning it, colour and depth rendered by analytic ray casting against the six room faces
(plus a few coloured boxes as objects for the ARKit layout), and exact camera-to-world poses. The
exporters write it as

- a ScanNet **SensReader** export (``<scene>/color|depth|pose|intrinsic``) or a **posed_images**
  folder (``posed_images/<scene>/00000.jpg|png|txt``), optionally with -inf poses (lost tracking);
- an **ARKitScenes 3DOD** scan (``<fold>/<vid>/...``, ``lowres_wide.traj`` world-to-camera
  axis-angle, ``.pincam`` files, ``_3dod_annotation.json`` oriented boxes);
- ScanQA and SQA3D annotation files in the official formats.

Converting an export back must reproduce the scene's poses, intrinsics and objects; the tests in
``tests/prep`` check exactly that, and ``docs/real_data.md`` uses these to time the converters.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vqkit import cameras as G

# Colours of the six room faces (-x, +x, -y, +y, floor, ceiling) and of boxes (RGB 0..255).
_FACE_COLOURS = np.array([[200, 80, 60], [60, 160, 90], [70, 90, 200], [210, 190, 70],
                          [120, 100, 80], [235, 235, 235]], dtype=np.float64)


@dataclass
class FixtureBox:
    """An upright box in the room: ARKit label, centre (z-up world), lengths along its axes, yaw."""

    label: str
    center: np.ndarray
    lengths: np.ndarray  # extents along the box's local (x, y, z); local z is vertical
    yaw: float

    def axes(self) -> np.ndarray:
        """Unit box axes as rows [3, 3] (ARKit's normalizedAxes, row-major)."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class FixtureScene:
    """A synthetic room with N camera-to-world poses [N, 4, 4] (OpenCV camera axes)."""

    room: np.ndarray  # (Lx, Ly, Lz) room size, spanning [0, L]
    c2w: np.ndarray
    boxes: list[FixtureBox] = field(default_factory=list)

    def w2c(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return G.invert_pose(self.c2w[i, :3, :3], self.c2w[i, :3, 3])

    def render(self, i: int, K: np.ndarray, wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(colour uint8 [H, W, 3], z-depth metres float32 [H, W]) of view i by ray casting.

        Pixel (r, c) samples its centre (c + 0.5, r + 0.5), as :func:`G.backproject_depth` assumes.
        """
        w, h = wh
        v, u = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
        rays_cam = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # z = 1
        R_c2w, eye = self.c2w[i, :3, :3], self.c2w[i, :3, 3]
        d = rays_cam @ R_c2w.T  # world directions scaled so that camera z = 1
        with np.errstate(divide="ignore", invalid="ignore"):
            hi = np.where(d > 0, (self.room - eye) / d, np.inf)
            lo = np.where(d < 0, (0.0 - eye) / d, np.inf)
        s = np.minimum(hi, lo)  # [H, W, 3]: distance (in camera z) to the face hit per axis
        axis = np.argmin(s, -1)
        depth = np.take_along_axis(s, axis[..., None], -1)[..., 0]
        face = axis * 2 + (np.take_along_axis(d, axis[..., None], -1)[..., 0] > 0)
        colour = _FACE_COLOURS[face]
        for k, box in enumerate(self.boxes):  # boxes drawn by ray-slab test in their own frame
            A = box.axes()
            o = (eye - box.center) @ A.T
            dl = d @ A.T
            half = box.lengths / 2
            with np.errstate(divide="ignore", invalid="ignore"):
                t1, t2 = (-half - o) / dl, (half - o) / dl
            tn = np.nanmax(np.minimum(t1, t2), -1)
            tf = np.nanmin(np.maximum(t1, t2), -1)
            hit = (tn <= tf) & (tn > 0) & (tn < depth)
            depth = np.where(hit, tn, depth)
            colour[hit] = (40 + 50 * k) % 255, 30, (200 - 40 * k) % 255
        # Texture fixed in the world (not in pixels), so a view rendered at any size looks the same.
        hit_pt = eye + depth[..., None] * d
        shade = 0.75 + 0.25 * np.cos(4.0 * hit_pt[..., 0] + 1.0) * np.cos(4.0 * hit_pt[..., 1] + 3.0 * hit_pt[..., 2])
        colour = np.clip(colour * shade[..., None], 0, 255).astype(np.uint8)
        return colour, depth.astype(np.float32)


def make_scene(seed: int, n_frames: int = 24, with_boxes: bool = True) -> FixtureScene:
    """A random room 3..7 m x 3..6 m x 2.5..3 m and ``n_frames`` cameras walking around inside it."""
    rng = np.random.default_rng(seed)
    room = np.array([rng.uniform(3, 7), rng.uniform(3, 6), rng.uniform(2.5, 3.0)])
    c2w = np.zeros((n_frames, 4, 4))
    for i in range(n_frames):
        eye = np.array([rng.uniform(0.8, room[0] - 0.8), rng.uniform(0.8, room[1] - 0.8), rng.uniform(1.2, 1.7)])
        target = np.array([rng.uniform(0, room[0]), rng.uniform(0, room[1]), rng.uniform(0.2, 1.4)])
        R, t = G.look_at(eye, target)
        Rc, tc = G.invert_pose(R, t)
        c2w[i] = G.pose_matrix(Rc, tc)
    boxes = []
    if with_boxes:
        for label in ("bed", "chair", "tv_monitor", "cabinet", "plant_pot"):
            size = np.array([rng.uniform(0.4, 1.6), rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.2)])
            center = np.array([rng.uniform(1, room[0] - 1), rng.uniform(1, room[1] - 1), size[2] / 2])
            boxes.append(FixtureBox(label, center, size, float(rng.uniform(0, math.pi))))
    return FixtureScene(room, c2w, boxes)


# ScanNet's real intrinsics (colour 1296x968, depth 640x480), scaled for smaller fixtures.
SCANNET_K_COLOR = G.intrinsics(1169.6, 1167.1, 646.3, 489.9)
SCANNET_K_DEPTH = G.intrinsics(577.6, 578.7, 318.9, 242.7)


def _render_scaled(scene: FixtureScene, i: int, K: np.ndarray, wh: tuple[int, int],
                   scale: int) -> tuple[np.ndarray, np.ndarray]:
    if scale <= 1:
        return scene.render(i, K, wh)
    from PIL import Image

    small = (max(1, wh[0] // scale), max(1, wh[1] // scale))
    rgb, depth = scene.render(i, G.resize_intrinsics(K, wh, small), small)
    rgb = np.asarray(Image.fromarray(rgb).resize(wh, Image.BILINEAR))
    depth = np.asarray(Image.fromarray(depth).resize(wh, Image.NEAREST))
    return rgb, depth


def _save_png16(path: Path, depth_m: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(G.metres_to_depth_png(depth_m)).save(path)


def _save_image(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=92) if path.suffix == ".jpg" else Image.fromarray(rgb).save(path)


def _mat_text(M: np.ndarray) -> str:
    return "\n".join(" ".join(f"{v:.9g}" for v in row) for row in np.asarray(M)) + "\n"


def export_scannet(scene: FixtureScene, root: Path, scene_id: str, layout: str = "sens",
                   color_wh: tuple[int, int] = (1296, 968), depth_wh: tuple[int, int] = (640, 480),
                   invalid_frames: tuple[int, ...] = (), render_scale: int = 1) -> dict:
    """Write ``scene`` as a ScanNet scene; returns {"folder", "K_color", "K_depth"}.

    ``layout="sens"``: ``root/<scene>/color/<i>.jpg, depth/<i>.png, pose/<i>.txt, intrinsic/*.txt``;
    ``layout="posed"``: ``root/posed_images/<scene>/<iiiii>.jpg|png|txt, intrinsic.txt, depth_intrinsic.txt``.
    Frames in ``invalid_frames`` get an all -inf pose, as SensReader writes for lost tracking.
    ``render_scale`` > 1 renders at 1/render_scale and upsamples (for timing runs at full ScanNet
    resolution, where only the file sizes matter); the written K always describes the written files.
    """
    K_c = G.resize_intrinsics(SCANNET_K_COLOR, (1296, 968), color_wh)
    K_d = G.resize_intrinsics(SCANNET_K_DEPTH, (640, 480), depth_wh)
    if layout == "sens":
        folder = Path(root) / scene_id
        names = [(folder / "color" / f"{i}.jpg", folder / "depth" / f"{i}.png", folder / "pose" / f"{i}.txt")
                 for i in range(len(scene.c2w))]
        (folder / "intrinsic").mkdir(parents=True, exist_ok=True)
        (folder / "intrinsic" / "intrinsic_color.txt").write_text(_mat_text(G.pose_matrix(K_c, np.zeros(3))))
        (folder / "intrinsic" / "intrinsic_depth.txt").write_text(_mat_text(G.pose_matrix(K_d, np.zeros(3))))
    elif layout == "posed":
        folder = Path(root) / "posed_images" / scene_id
        names = [(folder / f"{i:05d}.jpg", folder / f"{i:05d}.png", folder / f"{i:05d}.txt")
                 for i in range(len(scene.c2w))]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "intrinsic.txt").write_text(_mat_text(G.pose_matrix(K_c, np.zeros(3))))
        (folder / "depth_intrinsic.txt").write_text(_mat_text(G.pose_matrix(K_d, np.zeros(3))))
    else:
        raise ValueError(f"layout must be 'sens' or 'posed', got {layout!r}")
    for i, (c_path, d_path, p_path) in enumerate(names):
        rgb, _ = _render_scaled(scene, i, K_c, color_wh, render_scale)
        _, depth = _render_scaled(scene, i, K_d, depth_wh, render_scale)
        _save_image(c_path, rgb)
        _save_png16(d_path, depth)
        p_path.parent.mkdir(parents=True, exist_ok=True)
        pose = np.full((4, 4), -np.inf) if i in invalid_frames else scene.c2w[i]
        p_path.write_text(_mat_text(pose))
    return {"folder": folder, "K_color": K_c, "K_depth": K_d}


def write_scanqa(path: Path, scene_ids: list[str], per_scene: int = 3, seed: int = 0,
                 with_answers: bool = True) -> list[dict]:
    """A ScanQA_v1.0_<split>.json with ``per_scene`` questions per scene (several answers each)."""
    rng = np.random.default_rng(seed)
    split = Path(path).stem.replace("ScanQA_v1.0_", "")
    colours = ["red", "green", "blue", "yellow", "white", "brown"]
    items = []
    for sid in scene_ids:
        for k in range(per_scene):
            c = colours[int(rng.integers(len(colours)))]
            item = {"scene_id": sid, "question_id": f"{split}-{sid}-{k}",
                    "question": f"What color is the wall on the {['left', 'right', 'far'][k % 3]} side?",
                    "object_ids": [int(rng.integers(1, 50))], "object_names": ["wall"]}
            if with_answers:
                item["answers"] = [c, f"{c} wall"]
            items.append(item)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(items))
    return items


def write_sqa3d(folder: Path, split: str, scene_ids: list[str], per_scene: int = 3, seed: int = 0) -> list[dict]:
    """The two SQA3D files of a split (questions + annotations joined on question_id)."""
    rng = np.random.default_rng(seed)
    starts = ["What is in front of me?", "Is the door open?", "How many chairs are on my left?",
              "Can I sit on the bed?", "Which way should I go to reach the sink?", "Am I facing the window?"]
    questions, annotations = [], []
    for n, sid in enumerate(scene_ids):
        for k in range(per_scene):
            qid = 220602000000 + n * 100 + k
            q = starts[int(rng.integers(len(starts)))]
            questions.append({"scene_id": sid, "situation": f"I am standing by the table number {k}.",
                              "alternative_situation": [f"I sit at table {k}."], "question": q,
                              "question_id": qid})
            pos = rng.uniform(-2, 2, 3)
            quat = rng.normal(size=4)
            quat /= np.linalg.norm(quat)
            annotations.append({"scene_id": sid, "question_id": qid,
                                "answers": [{"answer": "table", "answer_confidence": "yes", "answer_id": 1},
                                            {"answer": "chair", "answer_confidence": "yes", "answer_id": 2}],
                                "position": {"x": pos[0], "y": pos[1], "z": pos[2]},
                                "rotation": {"_x": quat[0], "_y": quat[1], "_z": quat[2], "_w": quat[3]}})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"v1_balanced_questions_{split}_scannetv2.json").write_text(json.dumps({"questions": questions}))
    annotations_file = folder / f"v1_balanced_sqa_annotations_{split}_scannetv2.json"
    annotations_file.write_text(json.dumps({"annotations": annotations}))
    return questions


ARKIT_K = G.intrinsics(211.9, 211.9, 127.9, 95.8)  # lowres_wide 256x192, typical values


def export_arkit(scene: FixtureScene, root: Path, vid: str, fold: str = "Training",
                 wh: tuple[int, int] = (256, 192), world_offset: np.ndarray = (0.0, 0.0, 0.0),
                 t0: float = 6845.704, fps: float = 10.0, traj_jitter: float = 0.0004) -> dict:
    """Write ``scene`` as an ARKitScenes 3DOD scan ``root/<fold>/<vid>/``.

    ``world_offset`` is added to every world coordinate (ARKit's floor is not at z = 0). The .traj
    rows are world-to-camera axis-angle + translation, ``traj_jitter`` seconds off the frame times
    (so the converter must match the nearest timestamp). Returns {"folder", "K", "timestamps"}.
    """
    offset = np.asarray(world_offset, dtype=np.float64)
    vid_dir = Path(root) / fold / vid
    frames = vid_dir / f"{vid}_frames"
    for sub in ("lowres_wide", "lowres_depth", "lowres_wide_intrinsics"):
        (frames / sub).mkdir(parents=True, exist_ok=True)
    K = G.resize_intrinsics(ARKIT_K, (256, 192), wh)
    lines, stamps = [], []
    for i in range(len(scene.c2w)):
        ts = round(t0 + i / fps, 3)
        stamps.append(ts)
        rgb, depth = scene.render(i, K, wh)
        name = f"{vid}_{ts:.3f}"
        _save_image(frames / "lowres_wide" / f"{name}.png", rgb)
        _save_png16(frames / "lowres_depth" / f"{name}.png", depth)
        (frames / "lowres_wide_intrinsics" / f"{name}.pincam").write_text(
            f"{wh[0]} {wh[1]} {K[0, 0]:.6f} {K[1, 1]:.6f} {K[0, 2]:.6f} {K[1, 2]:.6f}\n")
        R, t = scene.w2c(i)
        t = t - R @ offset  # the camera sees the shifted world the same way
        aa = G.matrix_to_axis_angle(R)
        lines.append(f"{ts + traj_jitter:.6f} {aa[0]:.9f} {aa[1]:.9f} {aa[2]:.9f} {t[0]:.9f} {t[1]:.9f} {t[2]:.9f}")
    (frames / "lowres_wide.traj").write_text("\n".join(lines) + "\n")
    data = []
    for k, box in enumerate(scene.boxes):
        label = box.label.replace("_", " ") if box.label == "tv_monitor" else box.label
        data.append({"uid": f"box-{k}", "label": label,
                     "segments": {"obbAligned": {"centroid": (box.center + offset).tolist(),
                                                 "axesLengths": box.lengths.tolist(),
                                                 "normalizedAxes": box.axes().reshape(-1).tolist()}}})
    (vid_dir / f"{vid}_3dod_annotation.json").write_text(json.dumps({"data": data, "skipped": False}))
    return {"folder": vid_dir, "K": K, "timestamps": stamps}


# ----------------------------------------------------------------------------------------------
# From `vqkit synth` scenes (DIR/scenes/<id>/{cameras,layout}.json + rgb/depth images)
# ----------------------------------------------------------------------------------------------

#: RoomPlan category -> an ARKitScenes label that maps back to it (stairs has none).
ROOMPLAN_TO_ARKIT = {"storage": "cabinet", "washerDryer": "washer", "television": "tv_monitor",
                     **{c: c for c in ("refrigerator", "stove", "bed", "sink", "toilet", "bathtub", "oven",
                                       "dishwasher", "table", "sofa", "chair", "fireplace")}}


def nearest_rotation(R) -> np.ndarray:
    """The rotation closest to R (SVD); synth stores R rounded to 6 decimals, an axis-angle cannot."""
    U, _, Vt = np.linalg.svd(np.asarray(R, dtype=np.float64))
    return U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt


def _synth_scene(synth_dir: Path, scene_id: str) -> tuple[Path, list[dict], dict]:
    folder = Path(synth_dir) / "scenes" / scene_id
    cameras = json.loads((folder / "cameras.json").read_text())
    layout = json.loads((folder / "layout.json").read_text())
    return Path(synth_dir), cameras, layout


def export_synth_scannet(synth_dir: Path, scene_id: str, root: Path, layout: str = "sens",
                         invalid_frames: tuple[int, ...] = ()) -> dict:
    """Write a ``vqkit synth`` scene as a ScanNet scene (its views become the frames).

    Poses are the synth cameras inverted to camera-to-world; colour and depth intrinsics are the synth
    K (colour and depth have the same size). Returns {"folder", "cameras"}.
    """
    from PIL import Image

    base, cameras, _ = _synth_scene(synth_dir, scene_id)
    if layout == "sens":
        folder = Path(root) / scene_id
        paths = [(folder / "color" / f"{i}.jpg", folder / "depth" / f"{i}.png", folder / "pose" / f"{i}.txt")
                 for i in range(len(cameras))]
        k_files = (folder / "intrinsic" / "intrinsic_color.txt", folder / "intrinsic" / "intrinsic_depth.txt")
    else:
        folder = Path(root) / "posed_images" / scene_id
        paths = [(folder / f"{i:05d}.jpg", folder / f"{i:05d}.png", folder / f"{i:05d}.txt")
                 for i in range(len(cameras))]
        k_files = (folder / "intrinsic.txt", folder / "depth_intrinsic.txt")
    for f in k_files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(_mat_text(G.pose_matrix(np.asarray(cameras[0]["K"]), np.zeros(3))))
    for i, (cam, (c_path, d_path, p_path)) in enumerate(zip(cameras, paths, strict=True)):
        for p in (c_path, d_path, p_path):
            p.parent.mkdir(parents=True, exist_ok=True)
        Image.open(base / cam["image"]).convert("RGB").save(c_path, quality=95)
        d_path.write_bytes((base / cam["depth"]).read_bytes())
        Rc, tc = G.invert_pose(cam["R"], cam["t"])
        p_path.write_text(_mat_text(np.full((4, 4), -np.inf) if i in invalid_frames else G.pose_matrix(Rc, tc)))
    return {"folder": folder, "cameras": cameras}


def export_synth_arkit(synth_dir: Path, scene_id: str, root: Path, vid: str, fold: str = "Training",
                       world_offset=(0.0, 0.0, 0.0), t0: float = 1000.0, fps: float = 10.0) -> dict:
    """Write a ``vqkit synth`` scene as an ARKitScenes 3DOD scan (objects as oriented boxes).

    RoomPlan categories become ARKit labels (:data:`ROOMPLAN_TO_ARKIT`; stairs is written as
    ``stairs``, which ARKit does not have, so it comes back unmapped). Box axes: (cos yaw, sin yaw, 0)
    with extent w, (-sin yaw, cos yaw, 0) with extent d, z with extent h. Returns {"folder",
    "cameras", "layout", "timestamps"}.
    """
    from PIL import Image

    base, cameras, layout = _synth_scene(synth_dir, scene_id)
    offset = np.asarray(world_offset, dtype=np.float64)
    vid_dir = Path(root) / fold / vid
    frames = vid_dir / f"{vid}_frames"
    for sub in ("lowres_wide", "lowres_depth", "lowres_wide_intrinsics"):
        (frames / sub).mkdir(parents=True, exist_ok=True)
    lines, stamps = [], []
    for i, cam in enumerate(cameras):
        ts = round(t0 + i / fps, 3)
        stamps.append(ts)
        name = f"{vid}_{ts:.3f}"
        Image.open(base / cam["image"]).convert("RGB").save(frames / "lowres_wide" / f"{name}.png")
        (frames / "lowres_depth" / f"{name}.png").write_bytes((base / cam["depth"]).read_bytes())
        K = np.asarray(cam["K"])
        (frames / "lowres_wide_intrinsics" / f"{name}.pincam").write_text(
            f"{cam['width']} {cam['height']} {K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]}\n")
        R = nearest_rotation(cam["R"])
        t = np.asarray(cam["t"]) - R @ offset
        aa = G.matrix_to_axis_angle(R)
        lines.append(f"{ts:.6f} {aa[0]:.12f} {aa[1]:.12f} {aa[2]:.12f} {t[0]:.12f} {t[1]:.12f} {t[2]:.12f}")
    (frames / "lowres_wide.traj").write_text("\n".join(lines) + "\n")
    data = []
    for o in layout["objects"]:
        w, h, d = o["size"]
        c, s = math.cos(o["yaw"]), math.sin(o["yaw"])
        data.append({"uid": str(o["id"]), "label": ROOMPLAN_TO_ARKIT.get(o["category"], o["category"]),
                     "segments": {"obbAligned": {"centroid": (np.asarray(o["center"]) + offset).tolist(),
                                                 "axesLengths": [w, d, h],
                                                 "normalizedAxes": [c, s, 0.0, -s, c, 0.0, 0.0, 0.0, 1.0]}}})
    (vid_dir / f"{vid}_3dod_annotation.json").write_text(json.dumps({"data": data, "skipped": False}))
    return {"folder": vid_dir, "cameras": cameras, "layout": layout, "timestamps": stamps}


# ----------------------------------------------------------------------------------------------
# ScanNet scans (mesh, segments, aggregation, axis alignment) and ScanRefer
# ----------------------------------------------------------------------------------------------


def z_alignment(angle_deg: float, shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A ScanNet-style axisAlignment: a turn about z and a shift (raw scan frame -> aligned frame)."""
    a = math.radians(angle_deg)
    A = np.eye(4)
    A[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    A[:3, 3] = shift
    return A


def export_scannet_scan(root: Path, scene_id: str, objects: list[tuple[str, list[float], list[float]]],
                        alignment: np.ndarray | None, ply_format: str = "binary_little_endian", seed: int = 0) -> Path:
    """Write ``root/<scene>/`` as ScanNet's scan files: ``<scene>_vh_clean_2.ply`` (vertices and faces),
    ``<scene>_vh_clean_2.0.010000.segs.json``, ``<scene>.aggregation.json`` and ``<scene>.txt``.

    ``objects`` are (label, centre, size) of axis-aligned boxes **in the aligned frame**; each gets its 8
    corners and 30 points inside as vertices, split over two segments, stored in the raw frame (the
    inverse of ``alignment``), so the aligned box of its vertices is exactly the given box. A floor object
    (label ``floor``) and unlabelled vertices are added. ``alignment`` None writes no axisAlignment line."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / scene_id
    folder.mkdir(parents=True, exist_ok=True)
    points, seg_ids, groups = [], [], []
    for k, (label, center, size) in enumerate([*objects, ("floor", [2.0, 2.0, -0.01], [4.0, 4.0, 0.02])]):
        c, h = np.asarray(center, float), np.asarray(size, float) / 2
        corners = c + h * np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        inside = c + h * rng.uniform(-0.95, 0.95, (30, 3))
        pts = np.concatenate([corners, inside])
        points.append(pts)
        segs = [100 * k + 1, 100 * k + 2]
        seg_ids += [segs[i % 2] for i in range(len(pts))]
        groups.append({"id": k, "objectId": k, "segments": segs, "label": label})
    points.append(rng.uniform(0, 4, (15, 3)))  # vertices of no object
    seg_ids += [7777] * 15
    pts = np.concatenate(points)
    if alignment is not None:
        inv = np.linalg.inv(alignment)
        pts = pts @ inv[:3, :3].T + inv[:3, 3]
    n = len(pts)
    faces = [(i, i + 1, i + 2) for i in range(0, n - 2, 3)]
    header = (f"ply\nformat {ply_format} 1.0\ncomment written by the vqkit test fixtures\nelement vertex {n}\n"
              "property float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\n"
              f"property uchar blue\nproperty uchar alpha\nelement face {len(faces)}\n"
              "property list uchar int vertex_indices\nend_header\n")
    path = folder / f"{scene_id}_vh_clean_2.ply"
    if ply_format == "ascii":
        body = "".join(f"{x:.6f} {y:.6f} {z:.6f} 128 128 128 255\n" for x, y, z in pts)
        body += "".join(f"3 {a} {b} {c}\n" for a, b, c in faces)
        path.write_text(header + body)
    else:
        vdt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1"), ("a", "u1")])
        verts = np.zeros(n, dtype=vdt)
        verts["x"], verts["y"], verts["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
        verts["r"] = verts["g"] = verts["b"] = 128
        verts["a"] = 255
        fdt = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
        face_data = np.zeros(len(faces), dtype=fdt)
        face_data["n"], face_data["i"] = 3, faces
        path.write_bytes(header.encode() + verts.tobytes() + face_data.tobytes())
    (folder / f"{scene_id}_vh_clean_2.0.010000.segs.json").write_text(
        json.dumps({"params": {"kThresh": "0.0001", "segMinVerts": "20"}, "sceneId": f"{scene_id}_vh_clean_2",
                    "segIndices": seg_ids}))
    (folder / f"{scene_id}.aggregation.json").write_text(
        json.dumps({"sceneId": f"scannet.{scene_id}", "appId": "Aggregator.v2", "segGroups": groups,
                    "segmentsFile": f"scannet.{scene_id}_vh_clean_2.0.010000.segs.json"}))
    lines = ["colorHeight = 968", "colorWidth = 1296", "numColorFrames = 12"]
    if alignment is not None:
        lines.insert(0, "axisAlignment = " + " ".join(f"{v:.9g}" for v in np.asarray(alignment).reshape(-1)))
    (folder / f"{scene_id}.txt").write_text("\n".join(lines) + "\n")
    return folder


def write_scanrefer(path: Path, entries: list[tuple[str, int, str, str]]) -> list[dict]:
    """A ScanRefer_filtered_<split>.json of (scene_id, object_id, object_name, description) entries (ids as
    strings and a token list, as ScanRefer writes them; ann_id counts per object)."""
    items, seen = [], Counter()
    for scene_id, object_id, name, description in entries:
        ann = seen[(scene_id, object_id)]
        seen[(scene_id, object_id)] += 1
        items.append({"scene_id": scene_id, "object_id": str(object_id), "object_name": name, "ann_id": str(ann),
                      "description": description, "token": description.split()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(items))
    return items
