"""``vqkit prep arkit``: ARKitScenes 3DOD scans -> views + RoomPlan targets, round trip and errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prep_trees import N_FRAMES, copy_tree

from vqkit import cameras as G
from vqkit.commands.prep import main as prep_main
from vqkit.errors import DataError
from vqkit.prep import arkit
from vqkit.roomplan import Room


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def converted(arkit_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("arkit_out")
    assert prep_main(["arkit", "--root", str(arkit_tree["root"]), "--out", str(out), "--num-views", "5"]) == 0
    return out


def test_round_trip_poses_intrinsics_depth_hist(arkit_tree, converted):
    train = {r["id"]: r for r in _read(converted / "roomplan_train.jsonl")}
    val = {r["id"]: r for r in _read(converted / "roomplan_val.jsonl")}
    assert set(train) == {"41254925", "41254926"} and set(val) == {"42445173"}
    for vid, rec in {**train, **val}.items():
        info = arkit_tree["scans"][vid]
        offset = np.asarray(info["offset"])
        # The converter moves the floor to z = 0: its world = fixture world + (ox, oy, 0).
        np.testing.assert_allclose(rec["world_offset"], [0, 0, -offset[2]], atol=2e-3)
        shift = offset + np.asarray(rec["world_offset"])
        manifest = json.loads((converted / "frames" / vid / "scene.json").read_text())
        stamps = [f"{ts:.3f}" for ts in info["timestamps"]]
        g = {k: np.asarray(v) for k, v in rec["geom_token"].items()}
        assert rec["task"] == "roomplan" and len(rec["images"]) == 5 and g["R"].shape == (5, 3, 3)
        for j, frame in enumerate(manifest["frames"]):
            i = stamps.index(frame)
            R, t = info["scene"].w2c(i)
            np.testing.assert_allclose(g["R"][j], R, atol=1e-5)
            np.testing.assert_allclose(g["t"][j], t - R @ shift, atol=1e-5)
            np.testing.assert_allclose(g["K"][j], info["K"], atol=1e-5)  # 256 wide: kept as is
            with Image.open(converted / rec["images"][j]) as im:
                assert im.size == (256, 192)
            depth = np.asarray(Image.open(info["folder"] / f"{vid}_frames/lowres_depth/{vid}_{frame}.png"))
            np.testing.assert_allclose(g["depth_hist"][j], G.depth_histogram(G.depth_png_to_metres(depth)), atol=1e-6)
            assert abs(g["depth_hist"][j].sum() - 1) < 1e-5


def test_objects_are_mapped_to_roomplan(arkit_tree, converted):
    for rec in _read(converted / "roomplan_train.jsonl"):
        info = arkit_tree["scans"][rec["id"]]
        room = Room.from_capturedroom(rec["roomplan"])
        assert not room.walls and not room.doors and not room.windows  # 3DOD has objects only
        shift = np.asarray(info["offset"]) + np.asarray(rec["world_offset"])
        boxes = [b for b in info["scene"].boxes if b.label != "plant_pot"]
        assert [o.category for o in room.objects] == [arkit.LABEL_TO_ROOMPLAN[b.label] for b in boxes]
        for obj, box in zip(room.objects, boxes, strict=True):
            np.testing.assert_allclose(obj.center, box.center + shift, atol=1e-6)
            w, d = sorted(box.lengths[:2], reverse=True)
            np.testing.assert_allclose(obj.size, (w, box.lengths[2], d), atol=1e-9)
            assert obj.center[2] - obj.size[1] / 2 == pytest.approx(0.0, abs=2e-3)  # on the floor
            # yaw: the width axis is the box's x axis (if longer) or y axis, modulo 180 degrees.
            axis_yaw = box.yaw if box.lengths[0] >= box.lengths[1] else box.yaw + math.pi / 2
            assert math.isclose(math.cos(2 * (obj.yaw - axis_yaw)), 1.0, abs_tol=1e-9)
        # The Stage 2 target text builds from the record.
        assert room.to_text().count("\n") + 1 == len(boxes)


def test_summary_reports_unmapped_labels_and_counts(converted):
    summary = json.loads((converted / "prep_summary.json").read_text())
    assert summary["scenes"] == {"requested": 3, "converted": 3, "reused": 0, "failed": 0}
    assert summary["unmapped_labels"] == {"plant_pot": 3}
    assert summary["objects"] == 12
    assert summary["records"] == {"roomplan_train.jsonl": 2, "roomplan_val.jsonl": 1}


def test_records_load_with_the_kit_schema(converted):
    schema = pytest.importorskip("vqkit.data.schema")
    records = schema.load_records(str(converted / "roomplan_*.jsonl"), depth_bins=16)
    assert len(records) == 3


def test_nearest_timestamp_and_missing_pose(arkit_tree, tmp_path):
    root = copy_tree(arkit_tree["root"], tmp_path / "3dod")
    vid = "41254926"
    traj = root / "Training" / vid / f"{vid}_frames" / "lowres_wide.traj"
    lines = traj.read_text().splitlines()
    traj.write_text("\n".join(lines[:3] + lines[4:]) + "\n")  # frame 3 loses its pose
    r = arkit.convert_scene(vid, str(root / "Training" / vid), str(tmp_path / "out"), N_FRAMES, 448, 16)
    assert r.error is None and r.manifest["frames_valid"] == N_FRAMES - 1
    assert "frames without a pose within 50 ms skipped" in r.warnings
    stamps = [f"{ts:.3f}" for ts in arkit_tree["scans"][vid]["timestamps"]]
    assert stamps[3] not in r.manifest["frames"]


def test_box_axes_reading_matches_the_official_convention():
    """normalizedAxes rows are the box axes: a box rotated 30 degrees about z reads back yaw 30."""
    yaw = math.radians(30)
    axes = [math.cos(yaw), math.sin(yaw), 0, -math.sin(yaw), math.cos(yaw), 0, 0, 0, 1]
    centre, size, got, tilted = arkit.box_to_object(
        {"centroid": [1, 2, 0.5], "axesLengths": [2.0, 0.5, 1.0], "normalizedAxes": axes}, "box")
    assert size == (2.0, 1.0, 0.5) and got == pytest.approx(yaw) and not tilted
    # The official corners (rotmat.T @ local) put the long side along (cos 30, sin 30).
    corners = np.array(axes).reshape(3, 3).T @ np.array([[1.0, -1.0], [0, 0], [0, 0]])
    assert np.allclose(corners[:, 0] - corners[:, 1], 2 * np.array([math.cos(yaw), math.sin(yaw), 0]))


def test_failures_are_reported_not_raised(arkit_tree, tmp_path, capsys):
    root = copy_tree(arkit_tree["root"], tmp_path / "3dod")
    (root / "Training/41254925/41254925_3dod_annotation.json").unlink()
    (root / "Training/41254926/41254926_frames/lowres_wide.traj").write_text("1 2 3\n")
    assert prep_main(["arkit", "--root", str(root), "--out", str(tmp_path / "out"), "--num-views", "2"]) == 0
    summary = json.loads((tmp_path / "out/prep_summary.json").read_text())
    assert summary["scenes"] == {"requested": 3, "converted": 1, "reused": 0, "failed": 2}
    assert "3dod_annotation.json" in summary["failed_scenes"]["41254925"]
    assert "line 1: expected 7 numbers" in summary["failed_scenes"]["41254926"]
    assert "Traceback" not in capsys.readouterr().out
    # Resume: the good scan is reused, the broken ones are tried again and fail again.
    assert prep_main(["arkit", "--root", str(root), "--out", str(tmp_path / "out"), "--num-views", "2"]) == 0
    summary = json.loads((tmp_path / "out/prep_summary.json").read_text())
    assert summary["scenes"] == {"requested": 3, "converted": 0, "reused": 1, "failed": 2}


def test_wrong_root_is_one_line(tmp_path):
    with pytest.raises(DataError, match="no Training or Validation folder") as e:
        prep_main(["arkit", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="not a folder"):
        prep_main(["arkit", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
