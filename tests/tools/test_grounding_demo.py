"""The grounding demo end to end on a few rooms: both models trained and evaluated, the summary's keys."""

from __future__ import annotations

import json

from helpers import REPO

from vqkit.tools.grounding_demo import DEFAULT_GROUNDING_CONFIG, format_grounding_table, run_grounding_demo


def test_grounding_demo_runs_end_to_end_and_writes_its_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    summary = run_grounding_demo(
        "configs/first_demo.yaml", str(tmp_path / "synth"), str(tmp_path / "run"),
        overrides=["train.max_steps=3", "train.save_every_steps=0", "train.warmup_steps=1", "data.turns=4",
                   "train.batch_size_per_gpu=4",
                   "data.max_length=160", "eval.grounding_max_new_tokens=4", "data.box_frame=first_view"],
        synth={"scenes": 12, "views": 4, "image_size": 112, "seed": 0}, progress=False)
    written = json.loads((tmp_path / "run" / "demo_summary.json").read_text())
    for key in ("acc25_full", "acc25_blind", "acc50_full", "acc50_blind", "minutes", "acc25_mean_box"):
        assert key in written and written[key] == summary[key]
        assert key == "minutes" or 0.0 <= written[key] <= 100.0
    assert written["box_frame"] == "first_view" and written["n_val"] == written["blind"]["n"] > 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert rows and all(r["task"] == "grounding" and r["box"] and "pred_box" in r and r["view_pose"] for r in rows)
    blind = json.loads((tmp_path / "run" / "blind" / "eval" / "metrics.json").read_text())
    assert blind["info"]["trained_blind"] is True and blind["grounding"]["n"] == len(rows)
    assert (tmp_path / "synth" / "grounding_val.jsonl").is_file()


def test_the_command_runs_the_grounding_demo(monkeypatch):
    import vqkit.commands.demo as command

    calls = []
    monkeypatch.setattr(command, "run_grounding_demo", lambda *args, **kwargs: calls.append(args))
    assert command.main(["--task", "grounding"]) == 0
    assert calls == [(None, "data/synth", "runs/grounding_demo", [])]
    assert (REPO / DEFAULT_GROUNDING_CONFIG).is_file()


def test_table_has_every_subset():
    def scores(a):
        sub = {"n": 2, "acc@0.25": a, "acc@0.5": a / 2, "mean_iou": a}
        return {**sub, "n": 4, "parse_rate": 100.0, "by_subset": {"unique": sub, "multiple": sub}}

    text = format_grounding_table(scores(50.0), scores(10.0), scores(20.0))
    assert "unique" in text and "multiple" in text and "50.0" in text and "parse rate: full 100.0%" in text
