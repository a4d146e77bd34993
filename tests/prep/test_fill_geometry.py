"""vqkit prep geometry: records without geometry get the predicted geom_token, everything else is kept,
the input is never touched, the output is written atomically, non-finite predictions are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from helpers import write_jsonl
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vqkit.data.schema import load_records
from vqkit.prep.fill_geometry import fill_geometry


def _records(synth_dir: Path, folder: Path) -> Path:
    """4 synthetic records beside their rooms: #1 without geometry, #2 without geometry nor depth maps
    (the prior fixes its scale), #3 sharing #1's views; #0 keeps its own."""
    rows, scenes = [], set()
    for line in (synth_dir / "train.jsonl").read_text().splitlines():  # one question of each of 3 rooms
        row = json.loads(line)
        if row["scene_id"] not in scenes and len(rows) < 3:
            scenes.add(row["scene_id"])
            rows.append(row)
    rows[1]["geom_token"] = None
    rows[2] = {k: v for k, v in rows[2].items() if k not in ("geom_token", "depths")}
    rows[2]["note"] = {"kept": [1, 2]}  # a field vqkit does not know
    rows.append(dict(rows[1], id="same-views", question="Another question?"))
    return write_jsonl(synth_dir / f"{folder.name}.jsonl", rows)


def test_fills_only_missing_geometry_and_keeps_every_other_field(synth_dir, tiny_vggt_file, tmp_path):
    src = _records(synth_dir, tmp_path / "in")
    before = src.read_bytes()
    out = synth_dir / f"{tmp_path.name}_out.jsonl"
    report = fill_geometry(src, out, tiny_vggt_file, progress=False)
    assert src.read_bytes() == before  # the input is never touched
    assert (report.records, report.filled, report.kept, report.refused, report.view_sets) == (4, 3, 1, 0, 2)
    assert report.scale_from_depth == 2 and report.scale_from_prior == 1
    old = [json.loads(line) for line in before.decode().splitlines()]
    new = [json.loads(line) for line in out.read_text().splitlines()]
    assert new[0] == old[0]
    for a, b in zip(old[1:], new[1:], strict=True):
        assert {k: v for k, v in b.items() if k not in ("geom_token", "geom_token_from")} == \
               {k: v for k, v in a.items() if k != "geom_token"}
        assert b["geom_token_from"]["model"] == str(tiny_vggt_file)
    assert new[1]["geom_token"] == new[3]["geom_token"]  # one prediction per distinct view set
    assert list(new[1])[list(old[1]).index("geom_token")] == "geom_token"  # filled where it was
    assert new[2]["geom_token_from"]["scale"] == "prior" and new[1]["geom_token_from"]["scale"] == "depth"
    # the filled records are valid records: rotations, intrinsics of the stored files, histograms
    records = load_records(str(out))
    geo = records[1].geometry
    assert np.allclose(geo.R[0], np.eye(3), atol=1e-5) and np.allclose(geo.t[0], 0, atol=1e-6)
    assert np.allclose(geo.K[:, 0, 2], 28.0) and np.allclose(geo.depth_hist.sum(1), 1.0, atol=1e-5)


def test_replace_predicts_for_every_record(synth_dir, tiny_vggt_file, tmp_path):
    src = _records(synth_dir, tmp_path / "in2")
    report = fill_geometry(src, synth_dir / "replaced.jsonl", tiny_vggt_file, replace=True, progress=False)
    assert (report.filled, report.kept) == (4, 0)


def test_input_output_and_model_mistakes_are_one_line(synth_dir, tiny_vggt_file, tmp_path, capsys):
    from vqkit.commands import main

    src = _records(synth_dir, tmp_path / "in3")
    args = ["prep", "geometry", "--records", str(src), "--model", str(tiny_vggt_file)]
    assert main([*args, "--out", str(src)]) == 2
    assert "is the input file" in capsys.readouterr().err
    out = synth_dir / "in3_out.jsonl"
    out.write_text("keep me\n")
    assert main([*args, "--out", str(out)]) == 2
    assert "already exists; choose another file or pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"
    assert main([*args, "--out", str(out), "--overwrite"]) == 0
    assert "4 records, 3 given predicted geometry" in capsys.readouterr().out
    state = {k: v for k, v in load_file(str(tiny_vggt_file)).items() if not k.startswith("depth_head.")}
    with safe_open(str(tiny_vggt_file), "pt") as f:
        metadata = f.metadata()
    no_depth = tmp_path / "model.safetensors"
    save_file(state, str(no_depth), metadata=metadata)
    assert main(["prep", "geometry", "--records", str(src), "--model", str(no_depth), "--out",
                 str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no depth_head.* keys, so it cannot predict geometry" in err and len(err.strip().splitlines()) == 1


def test_a_prediction_that_is_not_finite_is_refused_not_written(synth_dir, tiny_vggt_file, tmp_path):
    state = load_file(str(tiny_vggt_file))
    state["depth_head.scratch.output_conv2.2.bias"][:] = float("nan")  # every predicted depth is NaN
    with safe_open(str(tiny_vggt_file), "pt") as f:
        metadata = f.metadata()
    broken = tmp_path / "model.safetensors"
    save_file(state, str(broken), metadata=metadata)
    src = _records(synth_dir, tmp_path / "in4")
    out = synth_dir / "in4_out.jsonl"
    report = fill_geometry(src, out, broken, progress=False)
    assert (report.filled, report.refused, report.kept) == (0, 3, 1)
    assert "the predicted depth of view 0 is not finite and positive" in report.first_refusal
    assert [json.loads(line) for line in out.read_text().splitlines()] == \
           [json.loads(line) for line in src.read_text().splitlines()]
    assert "3 refused (prediction not finite)" in report.summary(out)
