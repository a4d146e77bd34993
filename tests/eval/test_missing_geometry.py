"""Records without camera geometry: ``vqkit eval`` says how many there were and what was done about them,
warns when a model trained with geometry answers them without it, and suggests only what works."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from vqkit.commands import main as vqkit_main
from vqkit.config import config_from_dict
from vqkit.errors import ConfigError
from vqkit.eval.missing_geometry import effective_source, how_to_give_geometry, trained_with_geometry


def _without_geometry(eval_records, tmp_path):
    """The eval records with every geom_token removed (the images stay where they are)."""
    out = eval_records.parent / f"no_geometry_{tmp_path.name}.jsonl"
    rows = [json.loads(line) for line in eval_records.read_text().splitlines()]
    out.write_text("".join(json.dumps({**r, "geom_token": None}) + "\n" for r in rows))
    return out, len(rows)


def _trained_on(model_dir, records, dest):
    """A copy of ``model_dir`` whose config says it was trained on ``records``."""
    shutil.copytree(model_dir, dest)
    config = dest / "config.yaml"
    config.write_text(config.read_text().replace("  train: []", f"  train:\n  - path: {records}"))
    return dest


def _eval(model_dir, data, out, *extra):
    return vqkit_main(["eval", "--model", str(model_dir), "--data", str(data), "--out", str(out),
                       "--no-language-metrics", *extra])


def test_a_model_trained_with_geometry_warns_on_records_without_it(tiny_model_dir, eval_records, tmp_path, capsys):
    """The demo's first model scored 32.5 instead of 55.0 on records without geom_token, with no word."""
    data, n = _without_geometry(eval_records, tmp_path)
    posed = _trained_on(tiny_model_dir, eval_records, tmp_path / "posed")  # eval_records[0] has geom_token
    assert _eval(posed, data, tmp_path / "out") == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("vqkit eval: warning:")]
    assert len(warning) == 1, err
    assert f"{n} of {n} records have no camera geometry (geom_token): answered without geometry tokens" in warning[0]
    # its encoder has no heads: the advice is what works without them, never --set model.geometry.source=auto
    assert "this model cannot predict it (model.encoder.weights is not set" in warning[0]
    assert "vqkit prep geometry --records IN" in warning[0] and "--set model.geometry.source" not in warning[0]
    info = json.loads((tmp_path / "out" / "metrics.json").read_text())["info"]["geometry"]
    assert info["without_geometry"] == n and info["examples"] == n and info["handling"] == "none"
    # the records as they are (one with geometry): counted, still a warning; --blind: nothing to say
    assert _eval(posed, eval_records, tmp_path / "out2") == 0
    assert f"vqkit eval: warning: {n - 1} of {n} records have no camera geometry" in capsys.readouterr().err
    assert _eval(posed, data, tmp_path / "out3", "--blind") == 0
    assert "camera geometry" not in capsys.readouterr().err
    # a model never trained on geometry: a note, not a warning
    assert _eval(tiny_model_dir, data, tmp_path / "out4") == 0
    assert f"vqkit eval: note: {n} of {n} records have no camera geometry" in capsys.readouterr().err


def test_predicted_geometry_is_said_and_auto_without_heads_falls_back(tiny_model_dir, tiny_vggt_file, eval_records,
                                                                      tmp_path, capsys):
    from vqkit.models.builder import build_model, load_model_config
    from vqkit.tokenizer import load_tokenizer

    data, n = _without_geometry(eval_records, tmp_path)
    cfg = load_model_config(tiny_model_dir, [f"model.encoder.weights={tiny_vggt_file}", "model.geometry.source=auto"])
    tokenizer = load_tokenizer(dataclasses.replace(cfg.model.llm, tokenizer=str(tiny_model_dir / "tokenizer")))
    auto_dir = _trained_on(build_model(cfg, tokenizer=tokenizer).save_pretrained(tmp_path / "auto_src"),
                           eval_records, tmp_path / "auto")
    assert _eval(auto_dir, data, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert (f"vqkit eval: note: {n} of {n} records have no camera geometry (geom_token): predicted by VGGT's "
            f"camera and depth heads ({tiny_vggt_file}") in err and "warning" not in err
    info = json.loads((tmp_path / "out" / "metrics.json").read_text())["info"]["geometry"]
    assert info["without_geometry"] == n and info["handling"] == "predicted"
    # a model trained on posed records whose encoder has heads: the note suggests the --set that works ...
    posed = _trained_on(tiny_model_dir, eval_records, tmp_path / "posed")
    assert _eval(posed, data, tmp_path / "out2", "--encoder-weights", str(tiny_vggt_file)) == 0
    assert (f"--set model.geometry.source=auto predicts it with the camera and depth heads of {tiny_vggt_file}"
            in capsys.readouterr().err)
    assert _eval(posed, data, tmp_path / "out3", "--encoder-weights", str(tiny_vggt_file),
                 "--set", "model.geometry.source=auto") == 0
    assert "predicted by VGGT's camera and depth heads" in capsys.readouterr().err
    # ... and without heads, auto falls back to no geometry tokens, saying why (heads: one-line refusal)
    assert _eval(posed, data, tmp_path / "out4", "--set", "model.geometry.source=auto") == 0
    err = capsys.readouterr().err
    assert "(model.geometry.source auto cannot predict: model.encoder.weights is not set" in err
    assert "--set model.geometry.source=auto" not in err
    assert _eval(posed, data, tmp_path / "out5", "--set", "model.geometry.source=heads") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vqkit eval: error: model.geometry.source is heads but the geometry cannot be predicted")
    assert len(err.splitlines()) == 1


def test_the_library_functions(tiny_model_dir, tiny_vggt_file, eval_records):
    from vqkit.models.builder import load_model_config

    cfg = load_model_config(tiny_model_dir)
    assert trained_with_geometry(cfg) is None  # no training records named
    cfg.data.train = config_from_dict({"data": {"train": [{"path": str(eval_records)}]}}).data.train
    assert trained_with_geometry(cfg) is True
    cfg.model.geometry.source = "auto"
    assert effective_source(cfg) == ("records", "model.encoder.weights is not set (a random aggregator has no "
                                                "trained heads)")
    cfg.model.geometry.source = "heads"
    with pytest.raises(ConfigError):
        effective_source(cfg)
    cfg.model.encoder.weights = str(tiny_vggt_file)
    assert effective_source(cfg) == ("heads", "")
    assert how_to_give_geometry(cfg, photos=True).startswith("--set model.geometry.source=auto predicts it")


def test_the_note_says_where_the_predicted_depth_gets_its_scale_and_what_the_points_need(
        tiny_model_dir, tiny_vggt_file, eval_records, tmp_path):
    """The demo reads depth maps (its cells' 3D points): its predicted geometry takes the depth maps'
    metres, not the prior, and without poses its cells get no points; the note says both."""
    from vqkit.data.dataset import build_dataset
    from vqkit.eval.missing_geometry import geometry_report
    from vqkit.models.builder import load_model_config

    data, n = _without_geometry(eval_records, tmp_path)
    cfg = load_model_config(tiny_model_dir, [f"model.encoder.weights={tiny_vggt_file}", "model.geometry.source=auto",
                                             f"data.val={data}"])
    dataset = build_dataset(cfg.data, "val", geometry_cfg=cfg.model.geometry)
    report = geometry_report(cfg, dataset, n, blind=False, source="auto")
    assert report.handling == "predicted" and report.without == n
    assert "depth histograms at the scale of a 2.6 m median depth (model.geometry.median_depth_m))" in report.text
    assert "depth maps" not in report.text and "3D points" not in report.text
    cfg.data.load_depth = True
    cfg.model.projector.type, cfg.model.projector.point_embed = "patch_merger", True
    text = geometry_report(cfg, dataset, n, blind=False, source="auto").text
    assert ("depth scaled to the records' depth maps (data.load_depth), to a 2.6 m median depth "
            "(model.geometry.median_depth_m) where a record has none)") in text
    assert text.endswith("; their cells carry no 3D points (model.projector.point_embed needs the records' poses)")
