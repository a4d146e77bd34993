"""ScanNet frames for the ScanQA and SQA3D converters: find a scene, read its frames, pick views.

Two layouts are read (docs/real_data.md):

- **SensReader export** ``<scene>/color/<i>.jpg`` (1296x968), ``depth/<i>.png`` (uint16 mm,
  640x480), ``pose/<i>.txt`` (4x4 camera-to-world; lost-tracking frames are all ``-inf``),
  ``intrinsic/intrinsic_color.txt`` (4x4, for the colour images) and ``intrinsic_depth.txt``.
- **posed_images** ``posed_images/<scene>/00000.jpg``, ``00000.png`` (depth), ``00000.txt`` (4x4
  camera-to-world), ``intrinsic.txt`` (colour) and ``depth_intrinsic.txt``.

A scene is looked up as ``ROOT/<scene>``, ``ROOT/scans/<scene>`` and ``ROOT/posed_images/<scene>``,
so ``--scannet`` may point at the SensReader output folder, the ScanNet root, or the folder holding
``posed_images``. ScanNet poses are OpenCV camera-to-world; records store world-to-camera.

ScanNet's scans (``--scans``: ``<scene>/<scene>.txt`` beside the mesh) give each scene's ``axisAlignment``, the
matrix ScanRefer and ScanQA apply to put their boxes upright and square to the walls; with them the
records' poses are turned into that aligned frame (:func:`align_geom_token`), the frame of those boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vqkit import cameras as G
from vqkit.errors import DataError
from vqkit.prep import common as C
from vqkit.utils.files import write_json_atomic, write_jsonl_atomic

SCANNET_SIZES = ((1296, 968), (640, 480))  # colour and depth sizes of the SensReader export


@dataclass
class Frame:
    """One frame of a scene: id (as in the file names), colour, depth and pose file paths."""

    frame_id: str
    color: Path
    depth: Path | None
    pose: Path


@dataclass
class SceneFrames:
    """Everything needed to pick and write views of one scene."""

    scene_id: str
    layout: str  # "sens" | "posed"
    folder: Path
    frames: list[Frame]
    K_color: np.ndarray  # [3, 3] for the colour images as stored


def find_scene(root: Path, scene_id: str) -> tuple[str, Path] | None:
    """(layout, folder) of ``scene_id`` under ``root``, or None when it is in neither layout."""
    for folder in (root / scene_id, root / "scans" / scene_id, root / "posed_images" / scene_id):
        if (folder / "color").is_dir() and (folder / "pose").is_dir():
            return "sens", folder
        if (folder / "intrinsic.txt").is_file():
            return "posed", folder
    return None


def _numeric_key(stem: str) -> tuple[int, str]:
    return (int(stem), stem) if stem.isdigit() else (1 << 62, stem)


def read_scene(root: Path, scene_id: str) -> SceneFrames:
    """List the frames of a scene in either layout; DataError when the scene or its files are missing."""
    found = find_scene(root, scene_id)
    if found is None:
        raise DataError(f"scene folder not found under {root} (looked for {scene_id}/color, "
                        f"scans/{scene_id}/color and posed_images/{scene_id}/intrinsic.txt)")
    layout, folder = found
    frames: list[Frame] = []
    if layout == "sens":
        k_path = folder / "intrinsic" / "intrinsic_color.txt"
        if not k_path.is_file():
            raise DataError(f"{k_path}: missing (the colour intrinsics of the SensReader export)")
        for color in sorted((folder / "color").glob("*.jpg"), key=lambda p: _numeric_key(p.stem)):
            depth = folder / "depth" / f"{color.stem}.png"
            frames.append(Frame(color.stem, color, depth if depth.is_file() else None,
                                folder / "pose" / f"{color.stem}.txt"))
    else:
        k_path = folder / "intrinsic.txt"
        for color in sorted(folder.glob("*.jpg"), key=lambda p: _numeric_key(p.stem)):
            depth = folder / f"{color.stem}.png"
            frames.append(Frame(color.stem, color, depth if depth.is_file() else None,
                                folder / f"{color.stem}.txt"))
    if not frames:
        raise DataError(f"{folder}: no colour frames (*.jpg)")
    K = C.read_matrix(k_path)[:3, :3]
    return SceneFrames(scene_id, layout, folder, frames, K)


def valid_frames(scene: SceneFrames) -> tuple[list[Frame], np.ndarray, int, int]:
    """Frames with a usable pose and their camera-to-world poses [N, 4, 4].

    Returns (frames, poses, n_invalid, n_missing): -inf/NaN/non-rotation poses are invalid, frames
    without a pose file are missing; both are skipped.
    """
    present, poses, missing = [], [], 0
    for fr in scene.frames:
        if not fr.pose.is_file():
            missing += 1
            continue
        present.append(fr)
        poses.append(C.read_matrix(fr.pose))
    poses = np.array(poses).reshape(-1, 4, 4)
    ok = C.valid_poses(poses)
    kept = [fr for fr, good in zip(present, ok, strict=True) if good]
    return kept, poses[ok], int((~ok).sum()), missing


def convert_scene(scene_id: str, root: str, out_dir: str, num_views: int, image_size: int,
                  depth_bins: int) -> C.SceneResult:
    """Write ``OUT/frames/<scene>/view_XX.jpg`` + ``scene.json`` for one ScanNet scene.

    Reuses the folder when its manifest was written with the same options. Views are chosen by
    :func:`vqkit.prep.common.select_views`; R, t are world-to-camera (OpenCV), K the colour
    intrinsics scaled to the written JPEG, depth_hist from the frame's depth PNG (zeros if absent).
    """
    params = C.scene_params(num_views, image_size, depth_bins)
    scene_dir = Path(out_dir) / "frames" / scene_id
    manifest = C.read_manifest(scene_dir, params)
    if manifest is not None:
        return C.SceneResult(scene_id, manifest=manifest, reused=True)

    scene = read_scene(Path(root), scene_id)
    frames, c2w, n_invalid, n_missing = valid_frames(scene)
    warnings = []
    if n_invalid:
        warnings.append("frames with an invalid (-inf/NaN) pose skipped")
    if n_missing:
        warnings.append("frames without a pose file skipped")
    if not frames:
        raise DataError(f"{scene.folder}: no frame has a valid pose")
    from PIL import Image

    with Image.open(frames[0].color) as im:
        K_color, rescaled = colour_intrinsics(scene.K_color, im.size)
    if rescaled:
        warnings.append("colour intrinsics rescaled to the colour image size")

    picks = C.select_views(c2w, num_views)
    images, Rs, ts, Ks, hists, ids = [], [], [], [], [], []
    for j, i in enumerate(picks):
        fr = frames[i]
        name = f"view_{j:02d}.jpg"
        K_new, _, _ = C.write_view(fr.color, scene_dir / name, K_color, image_size)
        R, t = G.invert_pose(c2w[i, :3, :3], c2w[i, :3, 3])
        hist = C.depth_hist_from_png(fr.depth, depth_bins)
        if hist is None:
            warnings.append("views without a depth PNG (depth_hist = zeros)")
            hist = np.zeros(depth_bins, dtype=np.float32)
        images.append(f"frames/{scene_id}/{name}")
        Rs.append(R), ts.append(t), Ks.append(K_new), hists.append(hist), ids.append(fr.frame_id)
    manifest = C.views_manifest(scene_id, params, images, Rs, ts, Ks, hists, ids,
                                extra={"layout": scene.layout, "frames_total": len(scene.frames),
                                       "frames_valid": len(frames)})
    write_json_atomic(scene_dir / C.MANIFEST, manifest)
    return C.SceneResult(scene_id, manifest=manifest, warnings=warnings)


def colour_intrinsics(K: np.ndarray, image_wh: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """(K of colour images of ``image_wh``, whether it was rescaled) from a scene's colour intrinsics.

    Some exports resize the colour frames without rewriting the intrinsics (a 640x480 export with
    the 1296x968 K). The principal point sits near the image centre, so a K whose 2*cx is far from
    the image width was written for another size: it is rescaled (from ScanNet's own colour or depth
    size when it fits one of them)."""
    w0, h0 = image_wh
    implied_w, implied_h = 2 * K[0, 2], 2 * K[1, 2]
    if abs(w0 / implied_w - 1) <= 0.2 and abs(h0 / implied_h - 1) <= 0.2:
        return K, False
    src_w, src_h = next(((w, h) for w, h in SCANNET_SIZES
                         if abs(implied_w / w - 1) < 0.05 and abs(implied_h / h - 1) < 0.05),
                        (implied_w, implied_h))
    return G.scale_intrinsics(K, w0 / src_w, h0 / src_h), True


@dataclass
class PosedFrame:
    """The camera of one frame of a posed_images folder, in the records' conventions: R, t
    world-to-camera (float64), K of the colour image as stored, the depth PNG beside it (or None)."""

    R: np.ndarray
    t: np.ndarray
    K: np.ndarray
    depth: Path | None


def _scene_intrinsics(folder: Path, image: Path, cache: dict) -> np.ndarray:
    """The colour K of ``folder``'s intrinsic.txt for images of ``image``'s size (remembered per folder)."""
    if folder not in cache:
        from PIL import Image

        k_path = folder / "intrinsic.txt"
        if not k_path.is_file():
            raise DataError(f"{image.name} has a pose file beside it but {k_path} is missing "
                            f"(posed_images: the scene's colour intrinsics)")
        try:
            with Image.open(image) as im:
                size = im.size
        except OSError as e:
            raise DataError(f"{image}: cannot read the image ({e})") from None
        cache[folder] = colour_intrinsics(C.read_matrix(k_path)[:3, :3], size)[0]
    return cache[folder]


def read_posed_frame(image: str | Path, cache: dict) -> PosedFrame | None:
    """The camera of a frame of a ScanNet posed_images folder (``<frame>.jpg`` with ``<frame>.txt``, a
    4x4 camera-to-world pose, beside it and the folder's ``intrinsic.txt``), exactly as
    :func:`convert_scene` computes it; None when there is no pose file beside the image. A pose that is
    not a rigid 4x4 (ScanNet's all -inf frames of lost tracking included) is a DataError naming the
    file. ``cache`` remembers each folder's intrinsics."""
    image = Path(image)
    pose_path = image.with_suffix(".txt")
    if not pose_path.is_file():
        return None
    T = C.read_matrix(pose_path)
    if T.shape != (4, 4):
        raise DataError(f"{pose_path}: expected a 4x4 camera-to-world matrix, got {T.shape[0]}x{T.shape[1]}")
    if not (C.valid_pose(T) and G.is_rotation(T[:3, :3]) and np.allclose(T[3], [0, 0, 0, 1], atol=1e-6)):
        raise DataError(f"{pose_path}: not a rigid 4x4 camera-to-world matrix (needs a finite rotation, "
                        f"det +1, and the last row 0 0 0 1)")
    R, t = G.invert_pose(T[:3, :3], T[:3, 3])
    depth = image.with_suffix(".png") if image.suffix.lower() != ".png" else None
    return PosedFrame(R, t, _scene_intrinsics(image.parent, image, cache),
                      depth if depth is not None and depth.is_file() else None)


def read_axis_alignment(path: Path) -> np.ndarray | None:
    """The 4x4 ``axisAlignment`` of a scan's ``<scene>.txt``, or None when the file or the line is absent."""
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "axisAlignment":
            try:
                values = [float(v) for v in value.split()]
            except ValueError:
                raise DataError(f"{path}: axisAlignment is not 16 numbers") from None
            if len(values) != 16:
                raise DataError(f"{path}: axisAlignment has {len(values)} numbers, expected 16")
            return np.array(values, dtype=np.float64).reshape(4, 4)
    return None


def find_scan(root: Path, scene_id: str) -> Path | None:
    """The folder of a scene's scan files under ``root`` (``<scene>/`` or ``scans/<scene>/``), or None."""
    for folder in (root / scene_id, root / "scans" / scene_id):
        if (folder / f"{scene_id}_vh_clean_2.ply").is_file():
            return folder
    return None


def align_geom_token(geom: dict, alignment: np.ndarray) -> dict:
    """A manifest's ``geom_token`` with its world-to-camera poses in the aligned frame ``x' = Ra x + ta``."""
    Ra, ta = alignment[:3, :3], alignment[:3, 3]
    R = np.asarray(geom["R"], dtype=np.float64) @ Ra.T
    t = np.asarray(geom["t"], dtype=np.float64) - R @ ta
    return {**geom, "R": R.round(8).tolist(), "t": t.round(8).tolist()}


def scene_alignment(scans: Path, scene_id: str) -> np.ndarray | None:
    """The ``axisAlignment`` of a scene's scan under ``scans`` (``<scene>/<scene>.txt`` or
    ``scans/<scene>/<scene>.txt``), or None when there is none."""
    for folder in (Path(scans) / scene_id, Path(scans) / "scans" / scene_id):
        alignment = read_axis_alignment(folder / f"{scene_id}.txt")
        if alignment is not None:
            return alignment
    return None


def check_root(root: Path, scene_ids: list[str]) -> None:
    """One-line error when ``root`` is not a folder or holds none of the wanted scenes."""
    if not root.is_dir():
        raise DataError(f"--scannet {root}: not a folder")
    if scene_ids and not any(find_scene(root, s) for s in scene_ids):
        raise DataError(f"--scannet {root}: none of the {len(scene_ids)} scenes is there in either "
                        f"layout (expected e.g. {scene_ids[0]}/color/, scans/{scene_ids[0]}/color/ "
                        f"or posed_images/{scene_ids[0]}/intrinsic.txt)")


def convert_scenes(scene_ids: list[str], root: Path, out_dir: Path, num_views: int, image_size: int,
                   depth_bins: int, workers: int, desc: str) -> dict[str, C.SceneResult]:
    """Convert every scene (in parallel), returning scene id -> result."""
    jobs = [(s, str(root), str(out_dir), num_views, image_size, depth_bins) for s in sorted(set(scene_ids))]
    return C.run_scenes(convert_scene, jobs, workers, desc)


def record_base(manifest: dict) -> dict:
    """The scene part shared by every question record of a scene."""
    return {"scene_id": manifest["scene_id"], "images": list(manifest["images"]),
            "geom_token": manifest["geom_token"]}


@dataclass
class FrameOptions:
    """How ScanNet scenes become view folders: shared by the ScanQA and SQA3D converters.

    ``scannet``: the SensReader output (``<scene>/color|depth|pose|intrinsic``) or a folder with
    ``posed_images/<scene>/``; ``out``: the output folder (records + ``frames/``); ``num_views`` per scene;
    ``image_size``: width of the written JPEGs (the height keeps the aspect ratio); ``depth_bins`` of
    depth_hist over [0, 10] m; ``workers``: scenes converted in parallel; ``limit_scenes``: only the
    first N scenes (sorted); ``scans``: ScanNet's scans, whose ``axisAlignment`` turns the records' poses
    into the axis-aligned frame (:func:`align_geom_token`; None keeps the frames' own).
    """

    scannet: Path
    out: Path
    num_views: int = 8
    image_size: int = 448
    depth_bins: int = 16
    workers: int = 1
    limit_scenes: int | None = None
    scans: Path | None = None

    def __post_init__(self) -> None:
        self.scannet, self.out = Path(self.scannet), Path(self.out)
        self.scans = None if self.scans is None else Path(self.scans)
        if self.num_views < 1:
            raise DataError(f"--num-views must be >= 1, got {self.num_views}")
        if self.image_size < 14:
            raise DataError(f"--image-size must be >= 14, got {self.image_size}")
        if self.depth_bins < 1:
            raise DataError(f"--depth-bins must be >= 1, got {self.depth_bins}")


def run_qa(command: str, questions: dict[str, list[dict]], args: FrameOptions, summary: C.Summary) -> None:
    """Convert the scenes the questions need, then write ``OUT/<split>.jsonl`` for each split.

    ``questions[split]`` holds partial records with at least ``scene_id``; each gets the scene's
    ``images`` and ``geom_token``. Questions of a failed or excluded scene are skipped and counted.
    """
    import time

    start = time.perf_counter()
    scene_ids = sorted({q["scene_id"] for qs in questions.values() for q in qs})
    if args.limit_scenes is not None:
        scene_ids = scene_ids[: max(0, args.limit_scenes)]
    check_root(args.scannet, scene_ids)
    summary.scenes_requested = len(scene_ids)
    results = convert_scenes(scene_ids, args.scannet, args.out, args.num_views, args.image_size,
                             args.depth_bins, args.workers, desc=command)
    summary.add_results(results)
    summary.seconds = time.perf_counter() - start
    wanted = set(scene_ids)
    aligned: dict[str, np.ndarray | None] = {}
    for split, qs in questions.items():
        records = []
        for q in qs:
            sid = q["scene_id"]
            if sid not in wanted:
                summary.skipped["questions of scenes left out by --limit-scenes"] += 1
                continue
            r = results[sid]
            if r.manifest is None:
                summary.skipped["questions of failed scenes"] += 1
                continue
            base = record_base(r.manifest)
            if args.scans is not None:
                if sid not in aligned:
                    aligned[sid] = scene_alignment(args.scans, sid)
                if aligned[sid] is None:
                    summary.skipped["questions of scenes without axisAlignment in --scans"] += 1
                    continue
                base["geom_token"] = align_geom_token(base["geom_token"], aligned[sid])
            records.append({**base, **q})
        summary.records[f"{split}.jsonl"] = write_jsonl_atomic(args.out / f"{split}.jsonl", records)
