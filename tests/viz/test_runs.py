"""vqkit.viz.runs: training curves plot the logged values, evaluations side by side in a table and in
bars, and which run a notebook evaluates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vqkit import viz


def test_training_curves_read_the_log(tmp_path):
    rows = [{"step": s, "loss": 3.0 / s, "lr": 1e-3 * s / 4, "proj_lr": 2e-3 * s / 4} for s in (1, 2, 3, 4)]
    rows.insert(2, {"step": 2, "eval_loss": 2.5, "eval_em": 10.0})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fig = viz.plot_training_curves(tmp_path)
    loss_ax, lr_ax = fig.axes
    train_line, eval_line = loss_ax.get_lines()
    assert list(train_line.get_xdata()) == [1, 2, 3, 4]
    np.testing.assert_allclose(train_line.get_ydata(), [3.0, 1.5, 1.0, 0.75])
    assert list(eval_line.get_xdata()) == [2] and list(eval_line.get_ydata()) == [2.5]
    assert [line.get_label() for line in loss_ax.get_lines()] == ["train loss", "held-out loss"]
    lr_line, proj_line = lr_ax.get_lines()
    assert [line.get_label() for line in lr_ax.get_lines()] == ["lr (LLM / LoRA)", "proj_lr"]
    np.testing.assert_allclose(lr_line.get_ydata(), [2.5e-4, 5e-4, 7.5e-4, 1e-3])
    np.testing.assert_allclose(proj_line.get_ydata(), [5e-4, 1e-3, 1.5e-3, 2e-3])
    assert list(proj_line.get_xdata()) == [1, 2, 3, 4]
    # without held-out rows or a projector learning rate, those lines are simply absent
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0, "lr": 0.1}) + "\n"
                                                    for s in (1, 2)))
    loss_ax, lr_ax = viz.plot_training_curves(tmp_path).axes
    assert len(loss_ax.get_lines()) == 1 and len(lr_ax.get_lines()) == 1
    with pytest.raises(Exception, match="no metrics log"):
        viz.plot_training_curves(tmp_path / "missing")


def test_metrics_table_and_bars(tmp_path):
    model = {"overall": {"n": 10, "em": 70.0, "em_refined": 75.0},
             "by_qtype": {"colour": {"n": 6, "em": 80.0, "em_refined": 80.0}, "counting": {"n": 4, "em": 37.5}}}
    blind = {"overall": {"n": 10, "em": 30.0, "em_refined": 31.0}, "by_qtype": {"colour": {"n": 6, "em": 20.0}}}
    (tmp_path / "metrics.json").write_text(json.dumps(blind))
    table = viz.metrics_table({"model": model, "blind": tmp_path})
    assert table.columns == ["split", "model EM", "model EM-R", "blind EM", "blind EM-R", "n"]
    assert table.rows[0] == ["overall", 70.0, 75.0, 30.0, 31.0, 10]
    assert table.rows[2] == ["qtype counting", 37.5, None, None, None, 4]
    fig = viz.plot_qtype_bars({"model": model, "blind": blind})
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [70.0, 80.0, 37.5, 30.0, 20.0, 0.0]  # blind has no counting score
    assert [t.get_text() for t in ax.get_xticklabels()] == ["overall", "colour", "counting"]
    # each run's bars stand side by side over their group, model left of blind
    centres = [p.get_x() + p.get_width() / 2 for p in ax.patches]
    np.testing.assert_allclose(centres, [-0.2, 0.8, 1.8, 0.2, 1.2, 2.2])
    # One decimal, as the tables (37.5, not 38); no label on a missing score.
    assert [t.get_text() for t in ax.texts] == ["70.0", "80.0", "37.5", "30.0", "20.0"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["model", "blind"]
    refined = viz.plot_qtype_bars({"model": model}, metric="em_refined").axes[0]
    assert [p.get_height() for p in refined.patches] == [75.0, 80.0, 0.0]
    assert refined.get_ylabel() == "refined EM (%)"


def test_metrics_table_shows_layout_scores():
    stage2 = {"overall": {"n": 4, "em": 0.0}, "roomplan": {"n": 4, "walls": {"f1@0.5": 87.5},
                                                           "doors": {"f1@0.5": None}, "objects": {"f1@0.5": 41.2}}}
    table = viz.metrics_table({"stage2": stage2})
    assert table.rows[-1] == ["stage2 roomplan F1@0.5", "walls 87.5, doors -, objects 41.2", None, 4]


def test_run_to_evaluate_prefers_the_run_then_the_demo_then_says_what_to_run(tmp_path, capsys):
    from vqkit.config.io import load_config, save_config
    from vqkit.errors import CheckpointError
    from vqkit.viz.runs import run_to_evaluate

    own, demo = tmp_path / "runs" / "nb_debug", tmp_path / "runs" / "demo"
    with pytest.raises(CheckpointError) as missing:
        run_to_evaluate(own, data_dir="data/synth_nb", fallback_run=demo)
    message = "".join(missing.value._render_traceback_())  # what a notebook shows: one line
    assert "\n" not in message and "notebooks 01 and 03" in message and "make demo" in message

    (demo / "final").mkdir(parents=True)
    from helpers import REPO

    cfg = load_config(REPO / "configs" / "first_demo.yaml")
    save_config(cfg, demo / "config.yaml")
    assert run_to_evaluate(own, data_dir="data/synth_nb", fallback_run=demo) == (demo, cfg.data.val[0].path)
    assert f"evaluating the demo's {demo} instead" in capsys.readouterr().out
    assert run_to_evaluate(own, "mine.jsonl", fallback_run=demo) == (demo, "mine.jsonl")

    (own / "final").mkdir(parents=True)
    assert run_to_evaluate(own, data_dir="data/synth_nb", fallback_run=demo) == (own, "data/synth_nb/val.jsonl")
