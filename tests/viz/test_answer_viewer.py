"""vqkit.viz.answer_viewer: the ipywidgets browser over predictions.jsonl, driven headless through its
widgets: what it shows, its filters and navigation, Stage 2 layouts, poses from the records, exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vqkit import viz
from vqkit.data.schema import load_records
from vqkit.roomplan import Room
from vqkit.viz import scene as viz_scene

PNG = b"\x89PNG\r\n\x1a\n"
WRONG = "purple-ish"


@pytest.fixture(scope="module")
def predictions(synth) -> Path:
    """A predictions.jsonl exactly as vqkit eval writes it: every second QA answer wrong, and two
    Stage 2 layouts (one perfect, one missing everything but its walls)."""
    from vqkit.eval.results import prediction_row, write_results

    rows = []
    qa = load_records(str(synth / "train.jsonl"))
    for i, rec in enumerate(qa):
        rows.append(prediction_row(len(rows), rec.meta(), rec.answer if i % 2 == 0 else WRONG, False))
    for k, rec in enumerate(load_records(str(synth / "roomplan_*.jsonl"))[:2]):
        gold = Room.from_capturedroom(rec.roomplan)
        pred = gold if k == 0 else Room(walls=gold.walls)
        rows.append(prediction_row(len(rows), rec.meta(), pred.to_text(), False))
    out = synth / "eval"
    write_results(out, rows, None)
    return out / "predictions.jsonl"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_judge():
    assert viz.judge({"prediction": " red ", "answers": ["red"]})["correct"]
    v = viz.judge({"prediction": "The Red.", "answers": ["red"]})
    assert not v["correct"] and v["em_refined"]


def test_viewer_initial_display(predictions):
    rows = _rows(predictions)
    viewer = viz.AnswerViewer(predictions, dpi=50)
    assert viewer.filtered == list(range(len(rows)))
    first = viewer.current
    assert first["id"] == rows[0]["id"]
    text = viewer.text.value
    assert first["question"] in text and first["prediction"] in text and "gold answers" in text
    assert "\u2714 correct" in text  # row 0 carries the gold answer
    assert viewer.image.value[:8] == PNG
    titles = [ax.get_title() for ax in viewer.figure.axes]
    assert titles[:2] == ["view 0", "view 1"] and "cameras from above" in titles
    # The slider and the counter agree, both counting from 1: "1" beside "of N".
    assert viewer.slider.value == 1 and viewer.slider.min == 1 and viewer.slider.max == len(rows)
    assert viewer.count.value == f"of {len(rows)}"
    assert set(viewer.task.options) == {"all", "synth", "roomplan"}


def test_viewer_filters_and_navigation(predictions):
    rows = _rows(predictions)
    viewer = viz.AnswerViewer(predictions, dpi=50)
    qtype = rows[1]["qtype"]
    viewer.qtype.value = qtype
    assert viewer.filtered == [i for i, r in enumerate(rows) if r["qtype"] == qtype]
    assert viewer.current["qtype"] == qtype and f"qtype <code>{qtype}</code>" in viewer.text.value

    viewer.qtype.value = "all"
    viewer.correct.value = "incorrect"
    wrong = [i for i, r in enumerate(rows) if r["task"] == "synth" and r["prediction"] == WRONG] + [len(rows) - 1]
    assert viewer.filtered == wrong  # the wall-only layout is wrong too
    assert WRONG in viewer.text.value and "\u2718 incorrect" in viewer.text.value

    viewer.next_button.click()
    assert viewer.position == 1 and viewer.slider.value == 2 and viewer.current is rows_at(viewer, wrong[1])
    assert viewer.slider.max == len(wrong) and viewer.count.value == f"of {len(wrong)}"
    viewer.slider.value = len(wrong)  # the last example
    assert viewer.current["task"] == "roomplan" and viewer.position == len(wrong) - 1
    viewer.next()  # clamps at the end
    assert viewer.position == len(wrong) - 1
    viewer.prev_button.click()
    assert viewer.position == len(wrong) - 2

    viewer.correct.value = "correct"
    assert all(viewer.verdicts[i]["correct"] for i in viewer.filtered)
    assert viewer.position == 0  # a new filter starts at its first example

    viewer.task.value = "roomplan"
    assert viewer.qtype.options == ("all", rows[-1]["qtype"])  # narrowed to the task's qtypes
    assert [rows[i]["id"] for i in viewer.filtered] == [rows[-2]["id"]]
    viewer.correct.value = "all"
    viewer.task.value = "synth"
    viewer.qtype.value = rows[0]["qtype"]
    viewer.correct.value = "incorrect"
    viewer.task.value = "roomplan"  # no roomplan row has this qtype: qtype resets to all
    assert viewer.qtype.value == "all"


def rows_at(viewer, index):
    return viewer.rows[index]


def test_viewer_empty_filter(predictions):
    rows = _rows(predictions)
    viewer = viz.AnswerViewer(predictions, dpi=50)
    viewer.task.value = "roomplan"
    viewer.correct.value = "incorrect"
    viewer.qtype.value = "all"
    assert len(viewer.filtered) == 1
    only_perfect = [r for r in rows if r["task"] == "roomplan"][:1]
    v2 = viz.AnswerViewer(only_perfect, dpi=50)
    v2.correct.value = "incorrect"
    assert v2.filtered == [] and v2.current is None
    assert "no example" in v2.text.value and v2.image.value == b""
    assert v2.slider.value == 0 and v2.slider.disabled and v2.count.value == "of 0"


def test_viewer_roomplan_display(predictions):
    viewer = viz.AnswerViewer(predictions, dpi=50)
    viewer.task.value = "roomplan"
    assert len(viewer.filtered) == 2
    perfect, walls_only = (viewer.verdicts[i] for i in viewer.filtered)
    assert perfect["f1"] == 1.0 and perfect["correct"]
    assert 0 < walls_only["f1"] < 1 and not walls_only["correct"]
    assert "F1@0.5 100" in viewer.text.value and "layout lines" in viewer.text.value
    layout_ax = next(ax for ax in viewer.figure.axes if ax.get_title().startswith("layout"))
    dashed = [line for line in layout_ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) > 0  # the prediction is drawn dashed over the solid gold
    viewer.next()
    layout_ax = next(ax for ax in viewer.figure.axes if ax.get_title().startswith("layout"))
    n_walls = len(Room.from_capturedroom(viewer.current["roomplan"]).walls)
    assert len([ln for ln in layout_ax.lines if ln.get_linestyle() == "--"]) == n_walls


def test_viewer_takes_poses_from_records_by_id(predictions, synth, tmp_path):
    """Rows whose views are not next to a cameras.json get their poses from the records."""
    rows = [r for r in _rows(predictions) if r["task"] == "synth"][:2]
    moved = []
    for r in rows:
        images = []
        for p in r["images"]:
            target = tmp_path / f"{r['id']}_{Path(p).name}"
            target.write_bytes(Path(p).read_bytes())
            images.append(str(target))
        moved.append({**r, "images": images})
    bare = viz.AnswerViewer(moved, dpi=50)
    assert not bare.scene_of(bare.current).has_geometry
    assert "cameras from above" not in [ax.get_title() for ax in bare.figure.axes]
    with_records = viz.AnswerViewer(moved, records=synth / "train.jsonl", dpi=50)
    scene = with_records.scene_of(with_records.current)
    rec = next(r for r in load_records(str(synth / "train.jsonl")) if r.id == rows[0]["id"])
    np.testing.assert_allclose(scene.R, rec.geometry.R)
    assert "cameras from above" in [ax.get_title() for ax in with_records.figure.axes]


def test_viewer_static_exports(predictions):
    viewer = viz.AnswerViewer(predictions, dpi=50)
    fig = viewer.render_figure(viewer.current, with_text=True)
    caption = fig.axes[0].texts[0].get_text()
    assert viewer.current["question"] in caption and caption.endswith("->  correct")
    html = viewer.snapshot().data
    assert viewer.current["question"] in html and "data:image/png;base64," in html
    layout = {k: v for k, v in next(r for r in _rows(predictions) if r["task"] == "roomplan").items() if k != "qtype"}
    caption = viewer.render_figure(layout, with_text=True).axes[0].texts[0].get_text()
    assert "qtype" not in caption and "prediction: layout, F1@0.5" in caption  # a layout has no qtype to print


def test_viewer_rejects_bad_input(tmp_path):
    with pytest.raises(Exception, match="no predictions"):
        viz.AnswerViewer([])
    bad = tmp_path / "predictions.jsonl"
    bad.write_text('{"prediction": "x"}\n')
    with pytest.raises(Exception, match="answers"):
        viz.AnswerViewer(bad)


def test_viewer_leaves_nothing_for_a_notebook_to_show_on_its_own(predictions, tmp_path, monkeypatch):
    """In a notebook the viewer draws inside widget callbacks, after which the kernel runs its
    post-execute hooks: matplotlib-inline then shows every open pyplot figure under the widget's
    message, in JupyterLab's Log Console (a half-drawn "cameras from above" when a step failed midway),
    and a warning printed there lands in it too. No pyplot figure exists at any time while the viewer
    draws (not even when drawing fails), and stepping through QA and Stage 2 examples warns nothing."""
    import warnings

    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    open_while_saving = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (open_while_saving.append(plt.get_fignums()),
                                                                 save(fig, *a, **k))[1])
    plt.close("all")
    monkeypatch.setattr(plt, "isinteractive", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        viewer = viz.AnswerViewer(predictions, dpi=50)
        for _ in range(len(viewer.rows) - 1):
            viewer.next()
            assert plt.get_fignums() == [], viewer.current["id"]
        assert viewer.current.get("roomplan") is not None  # a layout came too
    assert len(open_while_saving) == len(viewer.rows) and all(nums == [] for nums in open_while_saving)
    # A step that fails midway (a view file gone) leaves no half-drawn figure behind either.
    rows = _rows(predictions)[:2]
    rows[1]["images"] = [str(tmp_path / "gone.png")] + rows[1]["images"][1:]
    rows[1]["id"] = "elsewhere"
    viewer = viz.AnswerViewer(rows, dpi=50)
    with pytest.raises(Exception):  # noqa: B017 (whatever the failure, it is the caller's to see)
        viewer.next()
    assert plt.get_fignums() == []


def test_viewer_draws_the_predicted_box_beside_the_gold_one(grounding_predictions, tmp_path):
    viewer = viz.AnswerViewer(grounding_predictions, dpi=50)
    assert [v["correct"] for v in viewer.verdicts] == [True, False, False]
    assert viewer.verdicts[0]["iou"] > 0.9 and viewer.verdicts[2]["problems"]
    ax = next(a for a in viewer.figure.axes if a.get_title().startswith("from above: IoU"))
    styles = {line.get_label(): (line.get_linestyle(), line.get_color()) for line in ax.lines}
    gold = viewer.current["box"]["label"]
    assert styles[f"gold: {gold}"] == ("-", viz_scene.GOLD_BOX_COLOUR)
    assert styles[f"predicted: {gold}"] == ("--", viz_scene.PREDICTED_BOX_COLOUR)
    assert "IoU" in viewer.text.value and "\u2714 correct" in viewer.text.value
    viewer.next()
    assert "\u2718 incorrect" in viewer.text.value
    viewer.next()
    labels = [line.get_label() for a in viewer.figure.axes for line in a.lines]
    assert f"gold: {viewer.current['box']['label']}" in labels and not any(lb.startswith("predicted") for lb in labels)
    fig = viewer.render_figure(grounding_predictions[1], with_text=True)
    fig.savefig(tmp_path / "grounding.png", dpi=50)
    assert (tmp_path / "grounding.png").read_bytes()[:8] == PNG
