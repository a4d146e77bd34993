"""View selection, image writing, atomic files, the scene loop and the summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vqkit import cameras as G
from vqkit.errors import DataError
from vqkit.prep import common as C


def _c2w(eyes, targets):
    out = []
    for e, t in zip(eyes, targets, strict=True):
        R, tt = G.look_at(e, t)
        Rc, tc = G.invert_pose(R, tt)
        out.append(G.pose_matrix(Rc, tc))
    return np.array(out)


def test_select_views_covers_positions_and_directions():
    # 21 cameras on a line looking the same way: FPS must take both ends and spread the rest.
    eyes = [(x, 0.0, 1.5) for x in np.linspace(0, 10, 21)]
    c2w = _c2w(eyes, [(e[0], 5.0, 1.5) for e in eyes])
    picks = C.select_views(c2w, 3)
    assert picks == [0, 10, 20]
    # Same spot, two directions: the direction term separates them.
    c2w = _c2w([(0, 0, 1.5)] * 6, [(1, 0, 1.5)] * 3 + [(-1, 0, 1.5)] * 3)
    picks = C.select_views(c2w, 2)
    assert len({p < 3 for p in picks}) == 2


def test_select_views_is_deterministic_sorted_and_handles_few_frames():
    rng = np.random.default_rng(0)
    eyes = rng.uniform(0, 5, (40, 3))
    c2w = _c2w(eyes, eyes + rng.normal(size=(40, 3)))
    a, b = C.select_views(c2w, 8), C.select_views(c2w.copy(), 8)
    assert a == b == sorted(a) and len(set(a)) == 8
    assert C.select_views(c2w[:5], 8) == [0, 1, 2, 3, 4]


def test_write_view_scales_k_to_the_written_size_and_never_upsamples(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "a.jpg"
    Image.fromarray(rng.integers(0, 255, (968, 1296, 3), dtype=np.uint8)).save(src)
    K = G.intrinsics(1169.6, 1167.1, 646.3, 489.9)
    K_new, orig, new = C.write_view(src, tmp_path / "out" / "v.jpg", K, 448)
    assert orig == (1296, 968) and new == (448, 335)
    assert Image.open(tmp_path / "out" / "v.jpg").size == new
    np.testing.assert_allclose(K_new, G.resize_intrinsics(K, orig, new))
    small = tmp_path / "b.png"
    Image.fromarray(rng.integers(0, 255, (192, 256, 3), dtype=np.uint8)).save(small)
    K_small, _, new = C.write_view(small, tmp_path / "out" / "w.jpg", K, 448)
    assert new == (256, 192) and np.allclose(K_small, K)
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic: no temporary left behind


def test_read_matrix_and_valid_pose(tmp_path):
    p = tmp_path / "m.txt"
    p.write_text("-inf -inf -inf -inf\n" * 4)
    assert not C.valid_pose(C.read_matrix(p))
    p.write_text("1 0 0 1\n0 1 0 2\n0 0 1 3\n0 0 0 1\n")
    T = C.read_matrix(p)
    assert C.valid_pose(T) and T[1, 3] == 2
    p.write_text("2 0 0 1\n0 1 0 2\n0 0 1 3\n0 0 0 1\n")  # scaled, not a rotation
    assert not C.valid_pose(C.read_matrix(p))
    p.write_text("1 0 x\n")
    with pytest.raises(DataError, match="not a matrix of numbers"):
        C.read_matrix(p)


def _ok(scene_id):
    return C.SceneResult(scene_id, manifest={"scene_id": scene_id}, warnings=["w"])


def _boom(scene_id):
    if scene_id == "bad":
        raise DataError("bad: file missing")
    if scene_id == "worse":
        raise OSError("disk on fire")
    return _ok(scene_id)


@pytest.mark.parametrize("workers", [1, 2])
def test_run_scenes_reports_failures_instead_of_crashing(workers):
    results = C.run_scenes(_boom, [("a",), ("bad",), ("worse",), ("b",)], workers, desc="t")
    assert results["a"].manifest and results["b"].manifest
    assert results["bad"].error == "bad: file missing"
    assert results["worse"].error == "OSError: disk on fire"
    s = C.Summary(command="t", out="x", scenes_requested=4)
    s.add_results(results)
    d = s.to_dict()
    assert d["scenes"] == {"requested": 4, "converted": 2, "reused": 0, "failed": 2}
    assert d["warnings"] == {"w": 2}


def test_summary_report_writes_json(tmp_path):
    s = C.Summary(command="vqkit prep x", out=str(tmp_path), scenes_requested=3, scenes_converted=2,
                  scenes_failed={"s9": "scene folder not found"}, seconds=2.0)
    s.records["train.jsonl"] = 5
    s.skipped["questions of failed scenes"] = 4
    text = s.report(tmp_path)
    d = json.loads((tmp_path / "prep_summary.json").read_text())
    assert d["scenes_per_s"] == 1.0 and d["failed_scenes"] == {"s9": "scene folder not found"}
    assert "failed s9" in text and "skipped 4" in text


def test_parse_splits_and_load_json(tmp_path):
    assert C.parse_splits("train, val", ("train", "val", "test")) == ["train", "val"]
    with pytest.raises(DataError, match="unknown split 'dev'"):
        C.parse_splits("train,dev", ("train", "val"))
    with pytest.raises(DataError, match="not valid JSON"):
        (tmp_path / "b.json").write_text("{\n oops")
        C.load_json(tmp_path / "b.json", "x")
