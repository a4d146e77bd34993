"""``vqkit prep scanrefer``: ScanRefer's referring expressions + ScanNet scans and frames -> grounding records.

Input:

- ``ScanRefer_filtered_<split>.json`` (a folder of them, or one file): a list of ``{scene_id, object_id,
  object_name, ann_id, description, token}``; ``object_id`` is the object's ``objectId`` in the scene's
  aggregation.
- the ScanNet scans (``--scans``, default ``--scannet``; ``<root>/<scene>/`` or ``<root>/scans/<scene>/``):
  ``<scene>_vh_clean_2.ply`` (the mesh; its vertices), ``<scene>_vh_clean_2.0.010000.segs.json``
  (``segIndices``: each vertex's segment), ``<scene>.aggregation.json`` (or ``<scene>_vh_clean.aggregation
  .json``; ``segGroups``: each object's ``objectId``, ``label`` and ``segments``) and ``<scene>.txt``
  (``axisAlignment = `` 16 numbers, the 4x4 matrix that turns the scan upright and square to the walls);
- the scene's frames, as for ScanQA (:mod:`vqkit.prep.scannet`).

Each object's box is the axis-aligned box of its vertices after ``axisAlignment`` (how ScanRefer and
ScanQA make their boxes), so the records' **scene frame is ScanNet's axis-aligned frame**: their
``geom_token`` poses are turned into it too (``R' = R Ra^T``, ``t' = t - R' ta`` for the alignment
``[Ra | ta]``). A scene without ``axisAlignment`` keeps the scan's frame (a warning says so).

Output: ``OUT/<split>.jsonl``, one grounding record per description (docs/design.md, section 2):
``task: grounding``, ``question`` = ``Locate: <description>``, ``description``, ``box`` (label: the
object name with ``_`` for spaces; size = (x extent, height, y extent), yaw 0), ``object_id``,
``object_name``, ``ann_id``, ``qtype`` ``unique`` when no other object of the scene's aggregation has
its class, else ``multiple`` (the class: ``--label-map`` ``scannetv2-labels.combined.tsv``'s
``nyu40class`` of the raw label, as ScanRefer, else the raw label); and ``OUT/frames/``.

Bad input is one line each, never a traceback: a scene without frames or scans fails alone (the summary
names it and why); a description naming an object id the aggregation does not have, an object without
vertices, an empty description are skipped, counted and listed.
"""

from __future__ import annotations

import csv
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

from vqkit.errors import DataError
from vqkit.prep import common as C
from vqkit.prep import scannet
from vqkit.prep.scannet import align_geom_token, find_scan, read_axis_alignment
from vqkit.roomplan.elements import RoomObject
from vqkit.roomplan.grounding import GROUNDING_TASK, box_to_dict, grounding_question
from vqkit.utils.files import write_jsonl_atomic

SPLITS = ("train", "val", "test")
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


# ----------------------------------------------------------------------------------------------
# ScanNet scan files
# ----------------------------------------------------------------------------------------------


def read_ply_vertices(path: Path) -> np.ndarray:
    """The x, y, z of a PLY file's vertices [N, 3] (ASCII or binary little / big endian; the vertex
    element first, as ScanNet writes it)."""
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise DataError(f"{path}: not a PLY file")
        fmt, props, count, first, current = None, [], None, None, None
        while True:
            line = f.readline()
            if not line:
                raise DataError(f"{path}: PLY header without end_header")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "format" and len(words) > 1:
                fmt = words[1]
            elif words[0] == "element" and len(words) > 2:
                current = words[1]
                first = current if first is None else first
                if current == "vertex":
                    count = int(words[2])
            elif words[0] == "property" and current == "vertex" and len(words) > 2:
                props.append((words[-1], "" if words[1] == "list" else _PLY_TYPES.get(words[1], "")))
            elif words[0] == "end_header":
                break
        if first != "vertex" or count is None or not {"x", "y", "z"} <= {p for p, _ in props}:
            raise DataError(f"{path}: expected a PLY whose first element is 'vertex' with x, y, z")
        if any(not t for _, t in props):
            raise DataError(f"{path}: unknown PLY property type in the vertex element")
        if fmt == "ascii":
            rows = [f.readline().split() for _ in range(count)]
            names = [p for p, _ in props]
            data = np.array([[float(r[names.index(k)]) for k in "xyz"] for r in rows], dtype=np.float64)
            return data.reshape(-1, 3)
        order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
        if order is None:
            raise DataError(f"{path}: unknown PLY format {fmt!r}")
        dtype = np.dtype([(p, order + t) for p, t in props])
        data = np.frombuffer(f.read(dtype.itemsize * count), dtype=dtype, count=count)
    return np.stack([data["x"], data["y"], data["z"]], axis=1).astype(np.float64)


def instance_boxes(folder: Path, scene_id: str, alignment: np.ndarray | None) -> dict[int, dict]:
    """{objectId: {"label", "center", "size"}} of a scan: the axis-aligned box of each object's vertices
    (after ``alignment``), ``size`` = (x, y, z) extents; an object without vertices has no box."""
    agg_path = folder / f"{scene_id}.aggregation.json"
    if not agg_path.is_file():
        agg_path = folder / f"{scene_id}_vh_clean.aggregation.json"
    groups = C.load_json(agg_path, "ScanNet aggregation file").get("segGroups")
    segs = C.load_json(folder / f"{scene_id}_vh_clean_2.0.010000.segs.json", "ScanNet segments file").get("segIndices")
    if not isinstance(groups, list) or not isinstance(segs, list):
        raise DataError(f"{folder}: the aggregation needs 'segGroups' and the segments file 'segIndices'")
    vertices = read_ply_vertices(folder / f"{scene_id}_vh_clean_2.ply")
    if len(segs) != len(vertices):
        raise DataError(f"{folder}: {len(segs)} segment indices for {len(vertices)} mesh vertices")
    if alignment is not None:
        vertices = vertices @ alignment[:3, :3].T + alignment[:3, 3]
    seg_of_vertex = np.asarray(segs, dtype=np.int64)
    boxes = {}
    for g in groups:
        picked = vertices[np.isin(seg_of_vertex, np.asarray(g.get("segments", []), dtype=np.int64))]
        if len(picked):
            lo, hi = picked.min(0), picked.max(0)
            boxes[int(g["objectId"])] = {"label": str(g.get("label", "")), "center": ((lo + hi) / 2).tolist(),
                                         "size": (hi - lo).tolist()}
        else:
            boxes[int(g["objectId"])] = {"label": str(g.get("label", "")), "center": None, "size": None}
    return boxes


def convert_scene(scene_id: str, root: str, scans: str, out_dir: str, num_views: int, image_size: int,
                  depth_bins: int) -> C.SceneResult:
    """:func:`vqkit.prep.scannet.convert_scene` and the scan's instance boxes (in the result's manifest
    as ``instances``, with the ``axis_alignment``; neither is written to disk)."""
    result = scannet.convert_scene(scene_id, root, out_dir, num_views, image_size, depth_bins)
    folder = find_scan(Path(scans), scene_id)
    if folder is None:
        raise DataError(f"scan files not found under {scans} (looked for {scene_id}/{scene_id}_vh_clean_2.ply "
                        f"and scans/{scene_id}/...)")
    alignment = read_axis_alignment(folder / f"{scene_id}.txt")
    boxes = instance_boxes(folder, scene_id, alignment)
    result.manifest = {**result.manifest, "instances": boxes,
                       "axis_alignment": None if alignment is None else alignment.tolist()}
    if alignment is None:
        result.warnings.append("scans without axisAlignment: boxes and poses in the scan's own frame")
    return result


# ----------------------------------------------------------------------------------------------
# Annotations
# ----------------------------------------------------------------------------------------------


def annotation_files(path: Path, splits: list[str]) -> dict[str, Path]:
    """split -> ScanRefer JSON: a folder holding ``ScanRefer_filtered_<split>.json`` or one file."""
    return C.annotation_files(path, splits, "ScanRefer_filtered_{split}.json", SPLITS)


def load_annotations(path: Path) -> list[dict]:
    """The entries of a ScanRefer file, checked: ``scene_id`` a string, ``object_id`` and ``ann_id``
    integers (ScanRefer writes them as strings), ``description`` and ``object_name`` strings."""
    data = C.load_json(path, "ScanRefer annotation file")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of descriptions, got {type(data).__name__}")
    out = []
    for i, a in enumerate(data):
        if not isinstance(a, dict):
            raise DataError(f"{path}: entry {i}: expected an object, got {type(a).__name__}")
        for key in ("scene_id", "object_id", "object_name", "ann_id", "description"):
            if key not in a:
                raise DataError(f"{path}: entry {i}: field '{key}' missing")
        for key in ("object_id", "ann_id"):
            if not re.fullmatch(r"\s*\d+\s*", str(a[key])):
                raise DataError(f"{path}: entry {i}: field '{key}' is not an integer: {a[key]!r}")
        if not isinstance(a["description"], str) or not isinstance(a["scene_id"], str):
            raise DataError(f"{path}: entry {i}: fields 'scene_id' and 'description' must be strings")
        out.append({"scene_id": a["scene_id"], "object_id": int(a["object_id"]), "ann_id": int(a["ann_id"]),
                    "object_name": str(a["object_name"]), "description": a["description"]})
    return out


def read_label_map(path: Path | None) -> dict[str, str]:
    """raw_category -> nyu40class of ScanNet's ``scannetv2-labels.combined.tsv`` (empty without a file)."""
    if path is None:
        return {}
    if not Path(path).is_file():
        raise DataError(f"--label-map {path}: file not found")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or not {"raw_category", "nyu40class"} <= set(rows[0]):
        raise DataError(f"--label-map {path}: expected a TSV with raw_category and nyu40class columns")
    return {r["raw_category"]: r["nyu40class"] for r in rows}


def grounding_record(a: dict, manifest: dict, label_map: dict[str, str]) -> tuple[dict | None, str | None]:
    """The record of one description, or (None, why it is skipped) as one line."""
    where = f"{a['scene_id']} object {a['object_id']} (ann {a['ann_id']})"
    if not a["description"].strip():
        return None, f"{where}: empty description"
    instances = manifest["instances"]
    box = instances.get(a["object_id"])
    if box is None:
        ids = sorted(instances)
        known = f"{ids[0]}..{ids[-1]}" if ids else "none"
        return None, f"{where}: unknown object id (the scene's aggregation has objects {known})"
    if box["center"] is None:
        return None, f"{where}: the object has no mesh vertices"
    classes = Counter(label_map.get(b["label"], b["label"]) for b in instances.values())
    label = "_".join(a["object_name"].split()) or "object"
    dx, dy, dz = box["size"]
    target = RoomObject(str(a["object_id"]), label, box["center"], (max(dx, 1e-3), max(dz, 1e-3), max(dy, 1e-3)), 0.0)
    geom = manifest["geom_token"]
    if manifest.get("axis_alignment") is not None:
        geom = align_geom_token(geom, np.asarray(manifest["axis_alignment"]))
    unique = classes[label_map.get(box["label"], box["label"])] == 1
    return {"id": f"{a['scene_id']}_{a['object_id']}_{a['ann_id']}", "scene_id": a["scene_id"],
            "task": GROUNDING_TASK, "qtype": "unique" if unique else "multiple",
            "images": list(manifest["images"]), "geom_token": geom,
            "question": grounding_question(a["description"]), "description": " ".join(a["description"].split()),
            "object_id": a["object_id"], "object_name": a["object_name"], "ann_id": a["ann_id"],
            "box": box_to_dict(target)}, None


def convert(annotations: Path, options: scannet.FrameOptions, splits: str = "train,val", scans: Path | None = None,
            label_map: Path | None = None) -> C.Summary:
    """ScanRefer descriptions + ScanNet scans and frames -> ``OUT/<split>.jsonl`` (grounding records) and
    ``OUT/frames/``; returns what was converted and skipped (module docstring)."""
    start = time.perf_counter()
    chosen = C.parse_splits(splits, SPLITS)
    summary = C.Summary(command="vqkit prep scanrefer", out=str(options.out))
    labels = read_label_map(label_map)
    entries = {split: load_annotations(path) for split, path in annotation_files(Path(annotations), chosen).items()}
    scene_ids = sorted({a["scene_id"] for es in entries.values() for a in es})
    if options.limit_scenes is not None:
        scene_ids = scene_ids[: max(0, options.limit_scenes)]
    scannet.check_root(options.scannet, scene_ids)
    options.out.mkdir(parents=True, exist_ok=True)
    summary.scenes_requested = len(scene_ids)
    jobs = [(s, str(options.scannet), str(scans or options.scannet), str(options.out), options.num_views,
             options.image_size, options.depth_bins) for s in scene_ids]
    results = C.run_scenes(convert_scene, jobs, options.workers, "prep scanrefer")
    summary.add_results(results)
    wanted = set(scene_ids)
    for split, items in entries.items():
        records = []
        for a in items:
            result = results.get(a["scene_id"])
            if a["scene_id"] not in wanted or result is None or result.manifest is None:
                summary.skipped["descriptions of failed or left-out scenes" if a["scene_id"] in wanted
                                else "descriptions of scenes left out by --limit-scenes"] += 1
                continue
            record, why = grounding_record(a, result.manifest, labels)
            if record is None:
                summary.skipped[why.split(": ", 1)[1].split(" (")[0]] += 1
                summary.problems.append(why)
                continue
            records.append(record)
        summary.records[f"{split}.jsonl"] = write_jsonl_atomic(options.out / f"{split}.jsonl", records)
    summary.seconds = time.perf_counter() - start
    summary.extra["descriptions"] = sum(summary.records.values())
    return summary
