"""vqkit.viz: scene loading, the 3D pose figure's geometry, tables and plots, and the answer viewer
driven headless through its widgets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vqkit import cameras as geo  # noqa: E402
from vqkit import viz  # noqa: E402
from vqkit.data.schema import load_records  # noqa: E402
from vqkit.roomplan import Room, RoomObject, Wall  # noqa: E402
from vqkit.viz import scene as viz_scene  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from vqkit.synth.benchmark import generate

    out = tmp_path_factory.mktemp("synth_viz")
    generate(out, scenes=3, views=2, image_size=56, seed=5, workers=1, tokenizer=False, progress=False)
    return out


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _layout(synth: Path, scene_id: str) -> dict:
    return json.loads((synth / "scenes" / scene_id / "layout.json").read_text())


# ----------------------------------------------------------------------------------------------
# Scenes and geometry
# ----------------------------------------------------------------------------------------------


def test_scene_sources_agree(synth):
    rec = load_records(str(synth / "train.jsonl"))[0]
    from_record = viz.load_scene(rec)
    from_dir = viz.load_scene(synth / "scenes" / rec.scene_id)
    from_file = viz.load_scene(synth / "train.jsonl", index=0)
    raw = json.loads((synth / "train.jsonl").read_text().splitlines()[0])
    from_dict = viz.load_scene(raw, root=synth)
    for s in (from_dir, from_file, from_dict):
        assert [Path(p).resolve() for p in s.images] == [Path(p).resolve() for p in from_record.images]
        np.testing.assert_allclose(s.R, from_record.R, atol=1e-6)
        np.testing.assert_allclose(s.t, from_record.t, atol=1e-6)
        np.testing.assert_allclose(s.K, from_record.K, atol=1e-6)
        assert s.room is not None and len(s.room.walls) == len(from_record.room.walls) >= 4
    assert len(from_record.room.objects) == len(_layout(synth, rec.scene_id)["objects"])
    with pytest.raises(Exception, match="record index 99"):
        viz.load_scene(synth / "train.jsonl", index=99)
    with pytest.raises(Exception, match="not a scene folder"):
        viz.load_scene_dir(synth)


def test_point_cloud_of_a_known_plane_with_a_smaller_depth_map(tmp_path):
    """A camera at the origin looking along +x at a wall 2 m away; depth stored at half the RGB size
    (as ScanNet's 640x480 depth next to 1296x968 colour): every point must land on x = 2 inside the
    frustum, and its colour must come from the matching RGB pixel."""
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :12] = (255, 0, 0)  # left half red, right half blue
    rgb[:, 12:] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(geo.metres_to_depth_png(np.full((8, 12), 2.0))).save(tmp_path / "depth.png")
    K = geo.intrinsics_from_fov(24, 16, 90.0)
    R, t = geo.look_at([0, 0, 1.0], [1, 0, 1.0])
    scene = viz.SceneView([str(tmp_path / "rgb.png")], [str(tmp_path / "depth.png")], R[None], t[None], K[None])
    points, colours = viz.fused_point_cloud(scene, stride=1, voxel=0.0)
    assert points.shape == (96, 3) and colours.shape == (96, 3)
    np.testing.assert_allclose(points[:, 0], 2.0, atol=1e-6)
    # 90 degree horizontal field of view: |y| < 2 at 2 m; the image's left (camera -x) is world +y.
    assert np.all(np.abs(points[:, 1]) < 2.0) and np.all(np.abs(points[:, 2] - 1.0) < 2.0 * 16 / 24)
    left, right = points[:, 1] > 0.4, points[:, 1] < -0.4  # away from the colour edge at y = 0
    assert left.sum() == right.sum() == 5 * 8  # 5 of the 12 depth columns on each side, 8 rows
    assert np.all(colours[left, 0] > 0.9) and np.all(colours[right, 2] > 0.9)
    assert np.all(colours[left, 2] < 0.1) and np.all(colours[right, 0] < 0.1)
    down, _ = viz.fused_point_cloud(scene, stride=1, voxel=0.5)
    assert 0 < len(down) < len(points)
    capped, _ = viz.fused_point_cloud(scene, stride=1, voxel=0.0, max_points=10)
    assert len(capped) == 10


def test_fused_cloud_and_frusta_sit_inside_the_synthetic_room(synth):
    scene = viz.load_scene(synth / "scenes" / "scene00000")
    layout = _layout(synth, "scene00000")
    x0, y0, z0, x1, y1, z1 = layout["room"]["bbox"]
    points, colours = viz.fused_point_cloud(scene, stride=1, voxel=0.05)
    assert len(points) > 200
    tol = 0.06  # voxel centres and the 1 mm depth quantisation
    assert np.all(points >= np.array([x0, y0, z0]) - tol) and np.all(points <= np.array([x1, y1, z1]) + tol)
    assert np.all((colours >= 0) & (colours <= 1))
    for v, corners in enumerate(viz.frusta(scene, depth=0.5)):
        centre = corners[0]
        assert x0 < centre[0] < x1 and y0 < centre[1] < y1 and z0 < centre[2] < z1
        # The frustum opens along the camera's viewing direction (third row of R).
        forward = corners[1:].mean(0) - centre
        np.testing.assert_allclose(forward / np.linalg.norm(forward), scene.R[v][2], atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(forward), 0.5, atol=1e-6)


def test_records_without_geometry_or_layout(tiny_records):
    """The seed's format (geom_token null, no depths) and real-data records without a layout still
    draw: views only, no frusta, no point cloud."""
    records = load_records(str(tiny_records.path))
    seed_style = viz.load_scene(records[-1])
    assert not seed_style.has_geometry and seed_style.depths is None and seed_style.room is None
    assert viz.frusta(seed_style) == [] and len(viz.fused_point_cloud(seed_style)[0]) == 0
    fig = viz.pose_figure(seed_style, backend="plotly")
    assert [t.name for t in fig.data] == []
    viz.pose_figure(seed_style, backend="matplotlib")
    assert [ax.get_title() for ax in viz.views_grid(seed_style).axes] == ["view 0", "view 1", "view 2"]
    posed = viz.pose_figure(records[0], backend="plotly")
    assert {t.name for t in posed.data if t.name} == {"point cloud", "view 0", "view 1", "view 2"}


def test_box_and_surface_corners():
    c = viz_scene.box_corners_3d((1.0, 2.0, 0.5), (2.0, 1.0, 0.4), math.pi / 2)  # width along +y
    assert c.shape == (8, 3)
    np.testing.assert_allclose(c.min(0), [0.8, 1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(c.max(0), [1.2, 3.0, 1.0], atol=1e-9)
    lengths = sorted({round(float(np.linalg.norm(c[a] - c[b])), 6) for a, b in viz_scene.BOX_EDGES})
    assert lengths == [0.4, 1.0, 2.0]
    s = viz_scene.surface_corners((0.0, 0.0, 1.0), 3.0, 2.0, 0.0)
    np.testing.assert_allclose(s, [[-1.5, 0, 0], [1.5, 0, 0], [1.5, 0, 2], [-1.5, 0, 2]])
    room = Room(walls=[Wall("w", (0, 0, 1), 3, 2, 0)], objects=[RoomObject("o", "bed", (1, 1, 0.3), (1, 0.6, 2), 0)])
    segs = viz.layout_segments(room)
    assert [s["kind"] for s in segs] == ["wall", "object"] and segs[1]["label"] == "bed"


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def test_pose_figure_plotly_traces(synth):
    scene = viz.load_scene(synth / "scenes" / "scene00001")
    fig = viz.pose_figure(scene, backend="plotly", stride=2)
    names = [t.name for t in fig.data if t.name]
    assert names[0] == "point cloud"
    assert {"view 0", "view 1", "wall"} <= set(names)
    categories = {o.category for o in scene.room.objects}
    assert categories <= set(names)
    # The frustum trace draws exactly the corners of frustum_corners.
    view0 = next(t for t in fig.data if t.name == "view 0")
    corners = zip(view0.x, view0.y, view0.z, strict=True)
    drawn = np.array([[x, y, z] for x, y, z in corners if x is not None and np.isfinite(x)])
    expected = viz.frusta(scene, 0.5)[0]
    assert {tuple(np.round(p, 6)) for p in drawn} == {tuple(np.round(p, 6)) for p in expected}
    assert fig.layout.scene.aspectmode == "data"


def test_pose_figure_matplotlib_png(synth, tmp_path):
    fig = viz.pose_figure(synth / "scenes" / "scene00002", backend="matplotlib")
    ax3d, ax2d = fig.axes[:2]
    assert ax3d.name == "3d" and ax2d.get_title() == "from above"
    labels = {t.get_text() for t in ax3d.get_legend().get_texts()}
    assert {"view 0", "view 1", "wall"} <= labels
    fig.savefig(tmp_path / "pose.png", dpi=60)
    assert (tmp_path / "pose.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="backend"):
        viz.pose_figure(synth / "scenes" / "scene00002", backend="vtk")


def test_open3d_geometries(synth):
    scene = viz.load_scene(synth / "scenes" / "scene00000")
    pcd, cams, layout = viz.open3d_geometries(scene)
    assert len(pcd.points) > 0 and len(pcd.colors) == len(pcd.points)
    assert len(cams.lines) == len(viz_scene.FRUSTUM_EDGES) * scene.num_views
    assert len(layout.lines) == sum(len(s["edges"]) for s in viz.layout_segments(scene.room))


def test_views_grid(synth):
    rec = load_records(str(synth / "val.jsonl"))[0]
    fig = viz.views_grid(rec)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["view 0", "view 1", "depth 0", "depth 1", ""]  # the last axes: the depth colour bar
    no_depth = viz.views_grid(rec, depth=False)
    assert sorted(ax.get_title() for ax in no_depth.axes) == ["view 0", "view 1"]


def test_tables_and_qtype_stats(synth):
    from collections import Counter

    records = load_records(str(synth / "train.jsonl"))
    table = viz.records_table(records, n=3)
    assert len(table.rows) == 3 and table.rows[0][0] == records[0].id
    assert "<table>" in table._repr_html_() and records[0].id in str(table)
    stats = viz.qtype_stats(records)
    assert {q: s["n"] for q, s in stats.items()} == dict(Counter(r.qtype for r in records))
    for q, s in stats.items():
        answers = Counter(r.answer for r in records if r.qtype == q)
        assert s["top_share"] == pytest.approx(100 * answers.most_common(1)[0][1] / s["n"])
    assert len(viz.qtype_stats_table(records).rows) == len(stats)
    fig = viz.qtype_stats_figure(records)
    assert len(fig.axes) == 2
    layouts = load_records(str(synth / "roomplan_train.jsonl"))
    assert viz.records_table(layouts).rows[0][-1] == "(layout)" and viz.qtype_stats(layouts) == {}
    assert viz.qtype_stats_figure(layouts).axes[0].texts[0].get_text() == "no question-answer records"
    escaped = viz.HTMLTable(["a"], [["<b>"]])._repr_html_()
    assert "&lt;b&gt;" in escaped and "<b>" not in escaped


def test_training_curves_read_the_log(tmp_path):
    rows = [{"step": s, "loss": 3.0 / s, "lr": 1e-3 * s / 4, "proj_lr": 2e-3 * s / 4} for s in (1, 2, 3, 4)]
    rows.insert(2, {"step": 2, "eval_loss": 2.5, "eval_em": 10.0})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fig = viz.plot_training_curves(tmp_path)
    loss_ax, lr_ax = fig.axes
    train_line, eval_line = loss_ax.get_lines()
    assert list(train_line.get_xdata()) == [1, 2, 3, 4]
    np.testing.assert_allclose(train_line.get_ydata(), [3.0, 1.5, 1.0, 0.75])
    assert list(eval_line.get_ydata()) == [2.5]
    assert [line.get_label() for line in lr_ax.get_lines()] == ["lr (LLM / LoRA)", "proj_lr"]
    with pytest.raises(Exception, match="no metrics log"):
        viz.plot_training_curves(tmp_path / "missing")


def test_metrics_table_and_bars(tmp_path):
    model = {"overall": {"n": 10, "em": 70.0, "em_refined": 75.0},
             "by_qtype": {"colour": {"n": 6, "em": 80.0, "em_refined": 80.0}, "counting": {"n": 4, "em": 55.0}}}
    blind = {"overall": {"n": 10, "em": 30.0, "em_refined": 31.0}, "by_qtype": {"colour": {"n": 6, "em": 20.0}}}
    (tmp_path / "metrics.json").write_text(json.dumps(blind))
    table = viz.metrics_table({"model": model, "blind": tmp_path})
    assert table.columns == ["split", "model EM", "model EM-R", "blind EM", "blind EM-R", "n"]
    assert table.rows[0] == ["overall", 70.0, 75.0, 30.0, 31.0, 10]
    assert table.rows[2] == ["qtype counting", 55.0, None, None, None, 4]
    fig = viz.plot_qtype_bars({"model": model, "blind": blind})
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [70.0, 80.0, 55.0, 30.0, 20.0, 0.0]  # blind has no counting score
    assert [t.get_text() for t in ax.get_xticklabels()] == ["overall", "colour", "counting"]


# ----------------------------------------------------------------------------------------------
# The answer viewer
# ----------------------------------------------------------------------------------------------


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


def test_viewer_rejects_bad_input(tmp_path):
    with pytest.raises(Exception, match="no predictions"):
        viz.AnswerViewer([])
    bad = tmp_path / "predictions.jsonl"
    bad.write_text('{"prediction": "x"}\n')
    with pytest.raises(Exception, match="answers"):
        viz.AnswerViewer(bad)


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


# ----------------------------------------------------------------------------------------------
# Grounding answers: the predicted box beside the gold one
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grounding_predictions(synth) -> list[dict]:
    """Grounding rows of the synthetic rooms as vqkit eval writes them (first-view frame): the first
    answers with its gold box, the second with a box 1 m off, the third with no box."""
    from vqkit.eval.results import prediction_row
    from vqkit.roomplan.grounding import box_text, first_view_frame
    from vqkit.synth.benchmark import add_grounding

    add_grounding(synth)
    rows = []
    for i, rec in enumerate(load_records(str(synth / "grounding_train.jsonl"))[:3]):
        meta = rec.meta()
        R, t = rec.first_view_pose(0)
        meta["view_pose"] = [R.tolist(), t.tolist()]
        box = rec.box
        off = RoomObject("p", box.category, (box.center[0] + 1.0, *box.center[1:]), box.size, box.yaw)
        text = [box_text(rec.box, first_view_frame(R, t)), box_text(off, first_view_frame(R, t)), "sofa x="][i]
        rows.append(prediction_row(i, meta, text, False, box_frame="first_view"))
    return rows


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


def test_pose_figure_draws_a_grounding_answer(synth, grounding_predictions):
    row = grounding_predictions[1]
    boxes = viz_scene.grounding_boxes(row)
    assert [b["dash"] for b in boxes] == [False, True]
    scene = synth / "scenes" / row["scene_id"]
    fig = viz.pose_figure(scene, backend="plotly", boxes=boxes)
    traces = {t.name: t for t in fig.data}
    label = row["box"]["label"]
    assert traces[f"predicted: {label}"].line.dash == "dash" and traces[f"gold: {label}"].line.dash == "solid"
    gold = traces[f"gold: {label}"]
    drawn = np.array([p for p in zip(gold.x, gold.y, gold.z, strict=True) if p[0] is not None and np.isfinite(p[0])])
    assert np.allclose(drawn.mean(0), row["box"]["center"], atol=1e-6)
    fig = viz.pose_figure(scene, backend="matplotlib", boxes=boxes)
    labels = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert {f"gold: {label}", f"predicted: {label}"} <= labels
