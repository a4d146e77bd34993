"""``vqkit prep scanrefer`` on ScanNet scans and ScanRefer files in the official layouts, and its bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import prep_fixtures as F
import pytest

from vqkit import cameras as G
from vqkit.commands.prep import main as prep_main
from vqkit.data.schema import load_records
from vqkit.errors import DataError
from vqkit.prep.scanrefer import read_ply_vertices

ALIGN = F.z_alignment(30.0, shift=(-1.5, 0.8, 0.1))
# (label, centre, size) in the aligned frame: two chairs (multiple), a bed and a tv (unique).
OBJECTS = [("chair", [1.2, 0.9, 0.45], [0.5, 0.55, 0.9]), ("chair", [2.6, 1.4, 0.44], [0.48, 0.5, 0.88]),
           ("bed", [1.9, 2.8, 0.3], [1.6, 2.05, 0.6]), ("tv", [0.3, 2.0, 1.3], [0.1, 1.1, 0.65])]


@pytest.fixture(scope="module")
def scanrefer_tree(scannet_tree, tmp_path_factory):
    """Scans for scene0000_00 (aligned) and scene0002_00 (no axisAlignment, an ASCII mesh); none for
    scene0001_00 (frames only); ScanRefer files naming those and scene0009_00 (nothing on disk)."""
    root = tmp_path_factory.mktemp("scanrefer")
    F.export_scannet_scan(root / "scans", "scene0000_00", OBJECTS, ALIGN)
    F.export_scannet_scan(root / "scans", "scene0002_00", OBJECTS[2:], None, ply_format="ascii", seed=1)
    ann = root / "ScanRefer"
    F.write_scanrefer(ann / "ScanRefer_filtered_train.json", [
        ("scene0000_00", 0, "chair", "this is a black chair. it is next to the bed."),
        ("scene0000_00", 1, "chair", "the chair near the window."),
        ("scene0000_00", 2, "bed", "a large bed with white sheets."),
        ("scene0000_00", 2, "bed", "the bed in the corner."),
        ("scene0000_00", 3, "tv", "a flat tv on the wall."),
        ("scene0000_00", 99, "lamp", "a lamp that is not there."),
        ("scene0000_00", 3, "tv", "   "),
        ("scene0001_00", 0, "chair", "a chair in a scene without scans."),
        ("scene0009_00", 0, "chair", "a chair in a scene without frames."),
    ])
    F.write_scanrefer(ann / "ScanRefer_filtered_val.json", [
        ("scene0002_00", 0, "bed", "the bed."), ("scene0002_00", 1, "tv", "the television.")])
    return {**scannet_tree, "scans": root / "scans", "annotations": ann}


def _run(tree, out, *extra):
    return prep_main(["scanrefer", "--annotations", str(tree["annotations"]), "--scannet", str(tree["root"]),
                      "--scans", str(tree["scans"]), "--out", str(out), "--num-views", "4", "--image-size", "112",
                      *extra])


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_boxes_equal_the_scans_instance_boxes(scanrefer_tree, tmp_path, capsys):
    assert _run(scanrefer_tree, tmp_path) == 0
    train, val = _read(tmp_path / "train.jsonl"), _read(tmp_path / "val.jsonl")
    assert [r["object_id"] for r in train] == [0, 1, 2, 2, 3] and [r["object_id"] for r in val] == [0, 1]
    for rec in train + [dict(v, _objects=OBJECTS[2:]) for v in val]:
        label, center, size = rec.pop("_objects", OBJECTS)[rec["object_id"]]
        box = rec["box"]
        assert box["label"] == rec["object_name"] and box["yaw"] == 0.0
        assert np.allclose(box["center"], center, atol=1e-3)  # within 1 mm
        assert np.allclose(box["size"], [size[0], size[2], size[1]], atol=1e-3)  # (x extent, height, y extent)
        assert rec["task"] == "grounding" and rec["question"] == f"Locate: {rec['description']}"
    assert [r["qtype"] for r in train] == ["multiple", "multiple", "unique", "unique", "unique"]
    assert [r["ann_id"] for r in train] == [0, 0, 0, 1, 0] and train[0]["id"] == "scene0000_00_0_0"
    summary = json.loads((tmp_path / "prep_summary.json").read_text())
    assert summary["skipped"] == {"descriptions of failed or left-out scenes": 2, "empty description": 1,
                                  "unknown object id": 1}
    assert summary["failed_scenes"].keys() == {"scene0001_00", "scene0009_00"}
    out = capsys.readouterr().out
    assert "Traceback" not in out
    unknown = "skipped: scene0000_00 object 99 (ann 0): unknown object id (the scene's aggregation has objects 0..4)"
    for line in (unknown,
                 "skipped: scene0000_00 object 3 (ann 1): empty description",
                 "failed scene0001_00: scan files not found under", "failed scene0009_00: scene folder not found"):
        assert sum(line in x for x in out.splitlines()) == 1, line
    assert "warning x1: scans without axisAlignment" in out


def test_poses_are_turned_into_the_aligned_frame(scanrefer_tree, tmp_path):
    """The records' cameras sit where the alignment puts the scan's cameras, so a box and the views agree."""
    assert _run(scanrefer_tree, tmp_path) == 0
    rec = _read(tmp_path / "train.jsonl")[0]
    manifest = json.loads((tmp_path / "frames" / "scene0000_00" / "scene.json").read_text())
    scene = scanrefer_tree["scenes"]["scene0000_00"]["scene"]
    for v, frame in enumerate(manifest["frames"]):
        c2w = scene.c2w[int(frame)]
        R, t = np.asarray(rec["geom_token"]["R"][v]), np.asarray(rec["geom_token"]["t"][v])
        centre = -R.T @ t
        assert np.allclose(centre, ALIGN[:3, :3] @ c2w[:3, 3] + ALIGN[:3, 3], atol=1e-5)
        assert G.is_rotation(R) and np.allclose(R.T, ALIGN[:3, :3] @ c2w[:3, :3], atol=1e-5)
    records = load_records(str(tmp_path / "train.jsonl"))  # valid records, boxes read as boxes
    assert records[2].box.category == "bed" and records[2].target_text() == "bed x=190 y=280 w=160 h=60 d=205 yaw=0"


def test_label_map_decides_unique_and_multiple(scanrefer_tree, tmp_path):
    tsv = tmp_path / "scannetv2-labels.combined.tsv"
    tsv.write_text("id\traw_category\tcategory\tcount\tnyu40id\tnyu40class\n1\tchair\tchair\t1\t5\tchair\n"
                   "2\tbed\tbed\t1\t4\tfurniture\n3\ttv\ttv\t1\t25\tfurniture\n")
    assert _run(scanrefer_tree, tmp_path / "out", "--label-map", str(tsv), "--splits", "train") == 0
    assert [r["qtype"] for r in _read(tmp_path / "out" / "train.jsonl")] == ["multiple"] * 5


@pytest.mark.parametrize("fmt", ["binary_little_endian", "ascii", "binary_big_endian"])
def test_ply_vertices_in_every_format(tmp_path, fmt):
    if fmt == "binary_big_endian":
        path = tmp_path / "s" / "s_vh_clean_2.ply"
        path.parent.mkdir(parents=True)
        pts = np.array([[1.0, 2.0, 3.0], [-4.5, 0.25, 6.0]], dtype=">f4")
        path.write_bytes(b"ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty float x\n"
                         b"property float y\nproperty float z\nend_header\n" + pts.tobytes())
        assert np.allclose(read_ply_vertices(path), pts)
        return
    folder = F.export_scannet_scan(tmp_path, "s", OBJECTS[:1], None, ply_format=fmt)
    pts = read_ply_vertices(folder / "s_vh_clean_2.ply")
    assert pts.shape == (38 + 38 + 15, 3)
    lo, hi = pts[:8].min(0), pts[:8].max(0)
    assert np.allclose((lo + hi) / 2, OBJECTS[0][1], atol=1e-5)


def test_bad_annotation_files_are_one_line_errors(scanrefer_tree, tmp_path):
    bad = tmp_path / "ScanRefer_filtered_train.json"
    for content, says in [("[1]", "entry 0: expected an object"), ('[{"scene_id": "s"}]', "field 'object_id' missing"),
                          (json.dumps([{"scene_id": "s", "object_id": "x", "object_name": "c", "ann_id": "0",
                                        "description": "d"}]), "field 'object_id' is not an integer"),
                          ("{", "not valid JSON")]:
        bad.write_text(content)
        with pytest.raises(DataError, match=says):
            prep_main(["scanrefer", "--annotations", str(bad), "--scannet", str(scanrefer_tree["root"]),
                       "--out", str(tmp_path / "o")])
    with pytest.raises(DataError, match="missing .*ScanRefer_filtered_test.json"):
        _run(scanrefer_tree, tmp_path / "o", "--splits", "test")
    not_ply = tmp_path / "n.ply"
    not_ply.write_text("hello\n")
    with pytest.raises(DataError, match="not a PLY file"):
        read_ply_vertices(not_ply)
