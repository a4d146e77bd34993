"""``vqkit prep scanqa`` end to end on synthetic ScanNet + ScanQA files, and its error paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vqkit import cameras as G
from vqkit.commands import main as vqkit_main
from vqkit.commands.prep import main as prep_main
from vqkit.errors import DataError
from vqkit.prep import scanqa


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(tree, out, *extra):
    return prep_main(["scanqa", "--annotations", str(tree["scanqa"]), "--scannet", str(tree["root"]), "--out", str(out),
                        "--num-views", "4", "--image-size", "112", *extra])


def test_records_join_questions_with_scene_views(scannet_tree, tmp_path, capsys):
    assert _run(scannet_tree, tmp_path) == 0
    train, val = _read(tmp_path / "train.jsonl"), _read(tmp_path / "val.jsonl")
    questions = json.loads((scannet_tree["scanqa"] / "ScanQA_v1.0_train.json").read_text())
    # scene0009_00 is not on disk: its 3 questions are skipped, the others all kept.
    assert len(train) == len(questions) - 3 and len(val) == 2
    by_id = {q["question_id"]: q for q in questions}
    for rec in train + val:
        assert rec["task"] == "scanqa" and rec["scene_id"] != "scene0009_00"
        if rec["id"] in by_id:
            assert rec["answers"] == by_id[rec["id"]]["answers"] and rec["answer"] == rec["answers"][0]
            assert rec["question"] == by_id[rec["id"]]["question"]
        assert len(rec["images"]) == 4 and all((tmp_path / p).is_file() for p in rec["images"])
        assert all(not Path(p).is_absolute() for p in rec["images"])
        g = rec["geom_token"]
        assert np.asarray(g["R"]).shape == (4, 3, 3) and np.asarray(g["depth_hist"]).shape == (4, 16)
        assert all(G.is_rotation(np.asarray(R)) for R in g["R"])
    # Questions of one scene share one set of views (written once).
    same = [r for r in train if r["scene_id"] == "scene0000_00"]
    assert len(same) == 3 and all(r["images"] == same[0]["images"] for r in same)
    summary = json.loads((tmp_path / "prep_summary.json").read_text())
    assert summary["scenes"] == {"requested": 4, "converted": 3, "reused": 0, "failed": 1}
    assert "scene0009_00" in summary["failed_scenes"]
    assert summary["skipped"] == {"questions of failed scenes": 3}
    assert summary["records"] == {"train.jsonl": 6, "val.jsonl": 2}
    out = capsys.readouterr().out
    assert "failed scene0009_00: scene folder not found" in out and "Traceback" not in out


def test_resumes_without_reconverting(scannet_tree, tmp_path):
    assert _run(scannet_tree, tmp_path) == 0
    first = (tmp_path / "train.jsonl").read_text()
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "frames").rglob("*.jpg")}
    assert _run(scannet_tree, tmp_path, "--workers", "2") == 0
    summary = json.loads((tmp_path / "prep_summary.json").read_text())
    assert summary["scenes"]["reused"] == 3 and summary["scenes"]["converted"] == 0
    assert (tmp_path / "train.jsonl").read_text() == first
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "frames").rglob("*.jpg")} == mtimes


def test_parallel_output_equals_serial(scannet_tree, tmp_path):
    assert _run(scannet_tree, tmp_path / "a", "--workers", "1") == 0
    assert _run(scannet_tree, tmp_path / "b", "--workers", "2") == 0
    for name in ("train.jsonl", "val.jsonl"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_test_split_questions_have_no_references(scannet_tree, tmp_path):
    """Test questions (no answers) become records with answers [] and no answer: asked and exported for
    the test server, refused for training; a training file's unanswered questions are still skipped."""
    from vqkit.config import DataConfig, GeometryConfig, SourceConfig
    from vqkit.data.dataset import build_dataset

    assert _run(scannet_tree, tmp_path, "--splits", "test_wo_obj") == 0
    summary = json.loads((tmp_path / "prep_summary.json").read_text())
    assert summary["skipped"] == {}
    test = _read(tmp_path / "test_wo_obj.jsonl")
    assert len(test) == 2 and all(r["answers"] == [] and "answer" not in r for r in test)
    cfg = DataConfig(train=[SourceConfig(path=str(tmp_path / "test_wo_obj.jsonl"))], num_views=2, image_size=56)
    val = build_dataset(cfg, "val", geometry_cfg=GeometryConfig(), seed=0,
                        sources=[str(tmp_path / "test_wo_obj.jsonl")])
    assert val[0]["answer"] is None
    with pytest.raises(DataError, match="marks a question without references, for evaluation only"):
        build_dataset(cfg, "train", geometry_cfg=GeometryConfig(), seed=0)


def test_scans_put_the_poses_in_the_axis_aligned_frame(scannet_tree, tmp_path):
    import prep_fixtures as F

    align = F.z_alignment(-20.0, shift=(0.5, 1.0, 0.0))
    F.export_scannet_scan(tmp_path / "scans", "scene0001_00", [("chair", [1, 1, 0.4], [0.5, 0.5, 0.8])], align)
    assert _run(scannet_tree, tmp_path / "a", "--splits", "val") == 0
    assert _run(scannet_tree, tmp_path / "b", "--splits", "val", "--scans", str(tmp_path / "scans")) == 0
    plain, aligned = _read(tmp_path / "a" / "val.jsonl")[0], _read(tmp_path / "b" / "val.jsonl")[0]
    for v in range(4):
        R0, t0 = np.asarray(plain["geom_token"]["R"][v]), np.asarray(plain["geom_token"]["t"][v])
        R1, t1 = np.asarray(aligned["geom_token"]["R"][v]), np.asarray(aligned["geom_token"]["t"][v])
        assert np.allclose(-R1.T @ t1, align[:3, :3] @ (-R0.T @ t0) + align[:3, 3], atol=1e-6)


def test_single_file_and_limit_scenes(scannet_tree, tmp_path):
    f = scannet_tree["scanqa"] / "ScanQA_v1.0_val.json"
    assert scanqa.annotation_files(f, ["train"]) == {"val": f}
    assert _run(scannet_tree, tmp_path, "--limit-scenes", "1") == 0
    summary = json.loads((tmp_path / "prep_summary.json").read_text())
    assert summary["scenes"]["requested"] == 1
    assert summary["skipped"]["questions of scenes left out by --limit-scenes"] == 11 - 3


@pytest.mark.parametrize("case, message", [
    ("bad_root", "--scannet .*: not a folder"),
    ("empty_root", "none of the 4 scenes is there"),
    ("no_annotations", "--annotations .*: missing .*ScanQA_v1.0_train.json"),
    ("broken_json", r"ScanQA_v1.0_train.json: line 1: not valid JSON"),
    ("bad_entry", r"ScanQA_v1.0_train.json: entry 1: field 'question' missing"),
    ("bad_split", "--splits: unknown split 'dev'"),
])
def test_user_errors_are_one_line(scannet_tree, tmp_path, capsys, case, message):
    ann, root, splits = scannet_tree["scanqa"], scannet_tree["root"], "train,val"
    if case == "bad_root":
        root = tmp_path / "nowhere"
    elif case == "empty_root":
        root = tmp_path
    elif case == "no_annotations":
        ann = tmp_path
    elif case in ("broken_json", "bad_entry"):
        ann = tmp_path / "ann"
        ann.mkdir()
        (ann / "ScanQA_v1.0_val.json").write_text("[]")
        items = json.loads((scannet_tree["scanqa"] / "ScanQA_v1.0_train.json").read_text())
        del items[1]["question"]
        (ann / "ScanQA_v1.0_train.json").write_text("[{" if case == "broken_json" else json.dumps(items))
    elif case == "bad_split":
        splits = "train,dev"
    with pytest.raises(DataError, match=message):
        prep_main(["scanqa", "--annotations", str(ann), "--scannet", str(root), "--out", str(tmp_path / "o"),
                     "--splits", splits])
    # Through the real command line: exit status 2 and one line on stderr, no traceback.
    capsys.readouterr()
    rc = vqkit_main(["prep", "scanqa", "--annotations", str(ann), "--scannet", str(root),
                     "--out", str(tmp_path / "o"), "--splits", splits])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("vqkit prep: error:") and err.count("\n") == 1


def test_prep_dispatch_help_and_unknown(capsys):

    assert prep_main(["--help"]) == 0
    assert "scanqa" in capsys.readouterr().out
    assert vqkit_main(["prep", "scannet"]) == 2
    assert "unknown dataset 'scannet'" in capsys.readouterr().err
