"""``vqkit prep arkit``: ARKitScenes 3DOD scans -> Stage 2 records (views + a RoomPlan target).

Input layout (ARKitScenes ``download_data.py 3dod``): ``ROOT/{Training,Validation}/<vid>/`` with

- ``<vid>_3dod_annotation.json``: ``data[].label`` and ``data[].segments.obbAligned.{centroid [3],
  axesLengths [3], normalizedAxes [9]}``;
- ``<vid>_frames/lowres_wide/<vid>_<ts>.png`` (256x192 RGB), ``lowres_depth/<vid>_<ts>.png`` (uint16 mm),
  ``lowres_wide_intrinsics/<vid>_<ts>.pincam`` (one line ``w h fx fy cx cy``);
- ``<vid>_frames/lowres_wide.traj``: lines ``ts ax ay az tx ty tz``.

Conventions, checked against the official ARKitScenes code (``threedod/benchmark_scripts/utils``):

- ``.traj``: ``TrajStringToMatrix`` reads the axis-angle (Rodrigues) vector and translation as
  ``r_w_to_p`` / ``t_w_to_p``, i.e. **world-to-camera**, and inverts them to get the camera-to-world
  pose it back-projects depth with, using the plain pinhole ``K`` (OpenCV axes: x right, y down,
  z forward). So the file's (R, t) are exactly vqkit's ``geom_token`` convention; the converter only
  applies the floor shift below. Each frame takes the pose of the nearest ``.traj`` timestamp; a
  frame with no pose within 50 ms is skipped (the official loader matches within 5 ms).
- ``normalizedAxes``: the official ``extract_gt`` does ``reshape(3, 3)`` (row-major) and builds the
  corners as ``rotmat.T @ local``, so the 9 floats are the box's three unit axes one after the other
  (axis i = floats 3i..3i+2, with extent ``axesLengths[i]``); the box-to-world rotation is the
  transpose of the row-major reshape (= the column-major reading).
- The world frame is gravity-aligned with **z up** (the official box code turns boxes about z).

To vqkit's Room (z-up, floor at z = 0): the floor height is estimated as the lower of (a) the lowest
box bottom and (b) the 2nd percentile of the height of the depth points of the chosen views; the
world is shifted down by it (objects and camera poses alike; the record keeps ``world_offset``, the
vector added to ARKit world coordinates). Each box becomes an upright RoomPlan object: its axis
closest to vertical gives the height, the longer horizontal axis the width (its direction the yaw,
in [0, pi)), the shorter one the depth. A tilted box (> 10 degrees) is projected upright and counted.
ARKitScenes 3DOD has no walls, doors or windows: the RoomPlan target holds objects only.

Label mapping (:data:`LABEL_TO_ROOMPLAN`): ARKit's 17 3DOD classes to RoomPlan's categories; any
other label is counted in the summary as unmapped and left out.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

import numpy as np

from vqkit import cameras as G
from vqkit.errors import DataError
from vqkit.prep import common as C
from vqkit.roomplan import ROOMPLAN_QUESTION, Room, RoomObject
from vqkit.utils.files import write_json_atomic, write_jsonl_atomic

#: ARKitScenes 3DOD class (after the official normalisation: lower case, " -/" -> "_") -> RoomPlan.
LABEL_TO_ROOMPLAN: dict[str, str] = {
    "cabinet": "storage",
    "shelf": "storage",
    "refrigerator": "refrigerator",
    "stove": "stove",
    "bed": "bed",
    "sink": "sink",
    "washer": "washerDryer",
    "toilet": "toilet",
    "bathtub": "bathtub",
    "oven": "oven",
    "dishwasher": "dishwasher",
    "fireplace": "fireplace",
    "stool": "chair",
    "chair": "chair",
    "table": "table",
    "tv_monitor": "television",
    "sofa": "sofa",
}

#: ARKitScenes fold folder -> record-file split.
SPLITS = {"Training": "train", "Validation": "val"}

#: The Stage 2 prompt of every ARKit record.

MAX_POSE_DT = 0.05  # seconds between a frame and its nearest .traj row
TILT_TOLERANCE_DEG = 10.0


def normalise_label(label: str) -> str:
    out = str(label).strip().lower()
    for delimiter in (" ", "-", "/"):
        out = out.replace(delimiter, "_")
    return out


def frame_timestamp(path: Path) -> float:
    """``<vid>_<ts>.png`` -> ts (seconds)."""
    try:
        return float(path.stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        raise DataError(f"{path}: expected a file name <video_id>_<timestamp>{path.suffix}") from None


def read_traj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``.traj`` -> (timestamps [M], world-to-camera R [M, 3, 3], t [M, 3]), sorted by time."""
    if not path.is_file():
        raise DataError(f"{path}: missing (camera poses)")
    ts, Rs, tvecs = [], [], []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 7:
            raise DataError(f"{path}: line {n}: expected 7 numbers 'ts ax ay az tx ty tz', got {len(parts)}")
        try:
            v = [float(p) for p in parts]
        except ValueError:
            raise DataError(f"{path}: line {n}: not numbers") from None
        if not all(math.isfinite(x) for x in v):
            continue  # lost tracking: no pose at this time
        ts.append(v[0])
        Rs.append(G.axis_angle_to_matrix(v[1:4]))
        tvecs.append(v[4:7])
    if not ts:
        raise DataError(f"{path}: no valid pose")
    order = np.argsort(ts, kind="stable")
    return np.array(ts)[order], np.array(Rs)[order], np.array(tvecs)[order]


def read_pincam(path: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """``.pincam`` ``w h fx fy cx cy`` -> (K [3, 3], (w, h))."""
    try:
        w, h, fx, fy, cx, cy = (float(v) for v in path.read_text().split())
    except ValueError:
        raise DataError(f"{path}: expected one line 'w h fx fy cx cy'") from None
    return G.intrinsics(fx, fy, cx, cy), (int(round(w)), int(round(h)))


def _nearest(sorted_ts: np.ndarray, t: float) -> int:
    i = int(np.searchsorted(sorted_ts, t))
    candidates = [j for j in (i - 1, i) if 0 <= j < len(sorted_ts)]
    return min(candidates, key=lambda j: abs(sorted_ts[j] - t))


def box_to_object(box: dict, where: str) -> tuple[np.ndarray, tuple[float, float, float], float, bool]:
    """An ``obbAligned`` box -> (centre [3], (w, h, d), yaw in [0, pi), tilted?) in the ARKit world."""
    try:
        centre = np.asarray(box["centroid"], dtype=np.float64).reshape(3)
        lengths = np.asarray(box["axesLengths"], dtype=np.float64).reshape(3)
        axes = np.asarray(box["normalizedAxes"], dtype=np.float64).reshape(3, 3)  # rows = box axes
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: expected centroid [3], axesLengths [3], normalizedAxes [9]") from None
    if not (np.all(np.isfinite(centre)) and np.all(np.isfinite(lengths)) and np.all(np.isfinite(axes))):
        raise DataError(f"{where}: non-finite numbers")
    up = int(np.argmax(np.abs(axes[:, 2])))
    tilted = abs(axes[up, 2]) / max(np.linalg.norm(axes[up]), 1e-12) < math.cos(math.radians(TILT_TOLERANCE_DEG))
    horiz = [i for i in range(3) if i != up]
    a, b = sorted(horiz, key=lambda i: -lengths[i])  # width = the longer horizontal side
    direction = axes[a, :2]
    yaw = math.atan2(direction[1], direction[0]) % math.pi
    if yaw >= math.pi - 1e-9:
        yaw = 0.0
    return centre, (float(lengths[a]), float(lengths[up]), float(lengths[b])), yaw, bool(tilted)


def read_objects(path: Path) -> tuple[list[dict], Counter, int]:
    """Mapped boxes (``category, centre, size, yaw``), unmapped label counts and tilted-box count."""
    data = C.load_json(path, "3DOD annotation file")
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DataError(f"{path}: field 'data' missing or not a list")
    objects, unmapped, tilted = [], Counter(), 0
    for i, item in enumerate(items):
        where = f"{path}: data[{i}]"
        if not isinstance(item, dict) or "label" not in item:
            raise DataError(f"{where}: field 'label' missing")
        label = normalise_label(item["label"])
        if label not in LABEL_TO_ROOMPLAN:
            unmapped[label] += 1
            continue
        box = (item.get("segments") or {}).get("obbAligned")
        if not isinstance(box, dict):
            raise DataError(f"{where}: field 'segments.obbAligned' missing")
        centre, size, yaw, is_tilted = box_to_object(box, f"{where}.segments.obbAligned")
        tilted += is_tilted
        objects.append({"id": str(item.get("uid", f"object{i}")), "label": label,
                        "category": LABEL_TO_ROOMPLAN[label], "center": centre, "size": size, "yaw": yaw})
    return objects, unmapped, tilted


def floor_height(objects: list[dict], depth_points_z: np.ndarray) -> float:
    """The lower of the lowest box bottom and the 2nd percentile of depth-point heights (0 if neither)."""
    candidates = [float(o["center"][2] - o["size"][1] / 2) for o in objects]
    if depth_points_z.size >= 100:
        candidates.append(float(np.percentile(depth_points_z, 2)))
    return min(candidates) if candidates else 0.0


def scene_folder(vid_dir: Path) -> Path:
    return vid_dir / f"{vid_dir.name}_frames"


def convert_scene(vid: str, vid_dir: str, out_dir: str, num_views: int, image_size: int,
                  depth_bins: int) -> C.SceneResult:
    """Write ``OUT/frames/<vid>/view_XX.jpg`` + ``scene.json`` (with the RoomPlan target) for one scan."""
    from PIL import Image

    params = {**C.scene_params(num_views, image_size, depth_bins), "source": "arkitscenes"}
    out_scene = Path(out_dir) / "frames" / vid
    manifest = C.read_manifest(out_scene, params)
    if manifest is not None:
        return C.SceneResult(vid, manifest=manifest, reused=True)

    vid_dir = Path(vid_dir)
    frames_dir = scene_folder(vid_dir)
    ann = vid_dir / f"{vid}_3dod_annotation.json"
    objects, unmapped, tilted = read_objects(ann)
    traj_ts, traj_R, traj_t = read_traj(frames_dir / "lowres_wide.traj")
    wide = sorted((frames_dir / "lowres_wide").glob(f"{vid}_*.png"), key=frame_timestamp)
    if not wide:
        raise DataError(f"{frames_dir / 'lowres_wide'}: no frames {vid}_<ts>.png")
    pincams = sorted((frames_dir / "lowres_wide_intrinsics").glob(f"{vid}_*.pincam"), key=frame_timestamp)

    warnings: list[str] = []
    kept, w2c = _posed_frames(wide, pincams, (traj_ts, traj_R, traj_t), warnings)
    if not kept:
        raise DataError(f"{frames_dir}: no frame has both a pose and intrinsics")
    c2w = np.zeros((len(kept), 4, 4))
    for i, (R, t) in enumerate(w2c):
        Rc, tc = G.invert_pose(R, t)
        c2w[i] = G.pose_matrix(Rc, tc)
    picks = C.select_views(c2w, num_views)
    depths, heights = _view_depths(frames_dir, [kept[i] for i in picks], [w2c[i] for i in picks])
    floor = floor_height(objects, np.concatenate(heights) if heights else np.zeros(0))
    offset = np.array([0.0, 0.0, -floor])  # added to ARKit world coordinates

    images, Rs, ts_, Ks, hists, ids = [], [], [], [], [], []
    for j, i in enumerate(picks):
        path, pincam = kept[i]
        K, wh = read_pincam(pincam)
        with Image.open(path) as im:
            actual = im.size
        if actual != wh:
            K = G.resize_intrinsics(K, wh, actual)
        name = f"view_{j:02d}.jpg"
        K_new, _, _ = C.write_view(path, out_scene / name, K, image_size)
        R, t = w2c[i]
        # x_cam = R x + t with x = x' - offset  =>  t' = t - R @ offset.
        images.append(f"frames/{vid}/{name}")
        Rs.append(R), ts_.append(t - R @ offset), Ks.append(K_new), ids.append(path.stem.rsplit("_", 1)[1])
        if depths[j] is None:
            warnings.append("views without a depth PNG (depth_hist = zeros)")
            hists.append(np.zeros(depth_bins, dtype=np.float32))
        else:
            hists.append(G.depth_histogram(depths[j], bins=depth_bins))

    room = Room(objects=[RoomObject(o["id"], o["category"], o["center"] + offset, o["size"], o["yaw"])
                         for o in objects])
    if tilted:
        warnings.extend(["tilted boxes projected upright"] * tilted)
    manifest = C.views_manifest(vid, params, images, Rs, ts_, Ks, hists, ids, extra={
        "roomplan": room.to_capturedroom(),
        "world_offset": offset.round(6).tolist(),
        "labels": dict(Counter(o["label"] for o in objects)),
        "unmapped_labels": dict(unmapped),
        "frames_total": len(wide),
        "frames_valid": len(kept),
    })
    write_json_atomic(out_scene / C.MANIFEST, manifest)
    return C.SceneResult(vid, manifest=manifest, warnings=warnings)


def _posed_frames(wide: list[Path], pincams: list[Path], trajectory, warnings: list[str]):
    """The frames with a pose within :data:`MAX_POSE_DT` and intrinsics: ([(image, pincam)], [(R, t)])."""
    traj_ts, traj_R, traj_t = trajectory
    pincam_ts = np.array([frame_timestamp(p) for p in pincams])
    kept, w2c = [], []
    for path in wide:
        ts = frame_timestamp(path)
        j = _nearest(traj_ts, ts)
        if abs(traj_ts[j] - ts) > MAX_POSE_DT:
            warnings.append("frames without a pose within 50 ms skipped")
            continue
        if not pincams or abs(pincam_ts[_nearest(pincam_ts, ts)] - ts) > 0.01:
            warnings.append("frames without a .pincam skipped")
            continue
        kept.append((path, pincams[_nearest(pincam_ts, ts)]))
        w2c.append((traj_R[j], traj_t[j]))
    return kept, w2c


def _view_depths(frames_dir: Path, frames: list[tuple[Path, Path]], poses: list[tuple]):
    """Depth maps (metres, None where missing) of the chosen frames, and the world heights of their
    points (for the floor estimate)."""
    from PIL import Image

    depths, heights = [], []
    for (image, pincam), (R, t) in zip(frames, poses, strict=True):
        depth_path = frames_dir / "lowres_depth" / image.name
        if not depth_path.is_file():
            depths.append(None)
            continue
        with Image.open(depth_path) as im:
            d = G.depth_png_to_metres(np.asarray(im))
        depths.append(d)
        K_d, wh_d = read_pincam(pincam)
        K_d = G.resize_intrinsics(K_d, wh_d, (d.shape[1], d.shape[0]))
        heights.append(G.backproject_depth(d, K_d, R, t, stride=4)[:, 2])
    return depths, heights


def find_folds(root: Path, folds: list[str]) -> dict[str, Path]:
    """fold -> folder, accepting ROOT/<fold> or ROOT/3dod/<fold>; one-line error when neither exists."""
    if not root.is_dir():
        raise DataError(f"--root {root}: not a folder")
    for base in (root, root / "3dod"):
        found = {f: base / f for f in folds if (base / f).is_dir()}
        if found:
            return found
    raise DataError(f"--root {root}: no {' or '.join(folds)} folder (expected the download_data.py 3dod "
                    f"output: ROOT/Training/<video_id>/<video_id>_3dod_annotation.json)")


def convert(root: Path, out: Path, *, num_views: int = 8, image_size: int = 448, depth_bins: int = 16,
            splits: str = "Training,Validation", workers: int = 1, limit_scenes: int | None = None) -> C.Summary:
    """ARKitScenes 3DOD scans under ``root`` (``Training/``, ``Validation/``) -> Stage 2 records
    ``OUT/roomplan_{train,val}.jsonl`` and ``OUT/frames/``; returns what was converted and skipped."""
    root, out = Path(root), Path(out)
    if num_views < 1 or image_size < 14 or depth_bins < 1:
        raise DataError("--num-views and --depth-bins must be >= 1 and --image-size >= 14")
    folds = C.parse_splits(splits, SPLITS)
    start = time.perf_counter()
    found = find_folds(root, folds)
    summary = C.Summary(command="vqkit prep arkit", out=str(out))
    jobs, split_of = [], {}
    for fold, folder in found.items():
        vids = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if limit_scenes is not None:
            vids = vids[: max(0, limit_scenes)]
        for vid in vids:
            jobs.append((vid, str(folder / vid), str(out), num_views, image_size, depth_bins))
            split_of[vid] = SPLITS[fold]
    for fold in folds:
        if fold not in found:
            summary.skipped[f"fold {fold} not found under {root}"] += 1
    out.mkdir(parents=True, exist_ok=True)
    summary.scenes_requested = len(jobs)
    results = C.run_scenes(convert_scene, jobs, workers, desc="prep arkit")
    summary.add_results(results)
    summary.seconds = time.perf_counter() - start
    records: dict[str, list[dict]] = {SPLITS[f]: [] for f in found}
    unmapped, objects = Counter(), 0
    for vid in sorted(results):
        m = results[vid].manifest
        if m is None:
            continue
        unmapped.update(m.get("unmapped_labels", {}))
        objects += len(m["roomplan"]["objects"])
        if not m["roomplan"]["objects"]:
            summary.skipped["scans with no mapped object"] += 1
            continue
        records[split_of[vid]].append({
            "id": vid, "scene_id": vid, "task": "roomplan", "question": ROOMPLAN_QUESTION,
            "images": m["images"], "geom_token": m["geom_token"], "roomplan": m["roomplan"],
            "world_offset": m["world_offset"], "source": "arkitscenes",
        })
    for split, recs in records.items():
        summary.records[f"roomplan_{split}.jsonl"] = write_jsonl_atomic(out / f"roomplan_{split}.jsonl", recs)
    summary.extra["objects"] = objects
    summary.extra["unmapped_labels"] = dict(sorted(unmapped.items()))
    return summary
