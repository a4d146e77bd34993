"""The answer viewer: an ipywidgets browser over a model's ``predictions.jsonl``.

Filter by task, question type and correctness, step through examples, and see what the model saw: its
views, the cameras from above over the layout, the question, situation, gold answers and the prediction
(Stage 2: predicted vs gold layout from above; grounding: the predicted box, dashed red, beside the gold
one, solid green, from above, with their IoU). Its state is plain attributes (``filtered``, ``current``,
``text.value``, ``image.value``, ``figure``) so scripts and tests drive it headless.
"""

from __future__ import annotations

import html
import io
import os
from typing import Any

import numpy as np

from vqkit.data.images import open_view
from vqkit.data.schema import load_records
from vqkit.errors import DataError
from vqkit.eval.grounding import is_grounding_row, read_prediction
from vqkit.eval.metrics import exact_match, refined_match
from vqkit.eval.results import is_layout_row, read_predictions
from vqkit.roomplan import Room, iou_3d, score_layouts
from vqkit.roomplan.grounding import box_from_dict
from vqkit.viz.labels import label_points_2d
from vqkit.viz.layouts import draw_room, label_objects_of, plot_layout_topdown
from vqkit.viz.poses import draw_frustum_2d
from vqkit.viz.scene import VIEW_COLOURS, SceneView, frusta, grounding_boxes, scene_from_images, scene_from_record

ALL = "all"
CORRECT_CHOICES = (ALL, "correct", "incorrect")
#: A Stage 2 prediction counts as "correct" in the viewer when its F1 over all elements (walls,
#: doors, windows, openings, objects) at IoU 0.5 reaches this value.
ROOMPLAN_CORRECT_F1 = 0.5
#: A grounding prediction counts as "correct" when its box's IoU with the gold box reaches this (Acc@0.25).
GROUNDING_CORRECT_IOU = 0.25


def _shown(prediction: str | None) -> str:
    """A prediction as displayed: an empty generation is visible as such."""
    return prediction if prediction and prediction.strip() else "(empty)"


def _qtype(row: dict) -> str:
    return str(row.get("qtype") or "none")


def _matched(kind_score: dict) -> int:
    """True positives at IoU 0.5 of one element kind: ``matched@0.5`` where ``score_layouts`` reports
    it, else precision (a fraction) times the predicted count."""
    if "matched@0.5" in kind_score:
        return int(kind_score["matched@0.5"])
    return round((kind_score["precision@0.5"] or 0.0) * kind_score["n_pred"])


def judge(row: dict) -> dict:
    """Correctness of one prediction row: ``{"correct", "em", "em_refined"}`` for QA (correct = EM,
    the official ScanQA EM@1), ``{"correct", "f1", "problems", "pred_room", "gold_room"}`` for Stage 2
    (correct = all-element F1@0.5 >= :data:`ROOMPLAN_CORRECT_F1`), ``{"correct", "iou", "problems"}`` for
    grounding (correct = IoU >= :data:`GROUNDING_CORRECT_IOU`)."""
    if is_grounding_row(row):
        pred, problems = read_prediction(row.get("prediction") or "", row.get("box_frame", "scene"),
                                         row.get("view_pose"))
        iou = iou_3d(pred, box_from_dict(row["box"])) if pred is not None else 0.0
        return {"correct": iou >= GROUNDING_CORRECT_IOU, "iou": iou, "problems": problems}
    if is_layout_row(row):
        gold = Room.from_capturedroom(row["roomplan"], problems=[])
        pred, problems = Room.from_text(row.get("prediction") or "")
        s = score_layouts([pred], [gold])
        kinds = ("walls", "doors", "windows", "openings", "objects")
        n_pred = sum(s[k]["n_pred"] for k in kinds)
        n_gold = sum(s[k]["n_gold"] for k in kinds)
        tp = sum(_matched(s[k]) for k in kinds)
        f1 = 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 1.0
        return {"correct": f1 >= ROOMPLAN_CORRECT_F1, "f1": f1, "problems": problems, "pred_room": pred,
                "gold_room": gold}
    answers = row.get("answers") or []
    em = exact_match(row.get("prediction") or "", answers)
    return {"correct": em, "em": em, "em_refined": refined_match(row.get("prediction") or "", answers)}


def _records_by_id(records: Any) -> dict[str, Any]:
    if records is None:
        return {}
    if isinstance(records, (str, os.PathLike)):
        records = load_records(str(records), check_files=False)
    out = {}
    for r in records:
        rid = r.get("id") if isinstance(r, dict) else r.id
        if rid is not None:
            out[str(rid)] = r
    return out


class AnswerViewer:
    """Browse a model's answers: filter, step through, see what the model saw.

    Args:
        predictions: a ``predictions.jsonl`` path (as ``vqkit eval`` writes) or a list of rows.
        records: optional records (file/glob, list of dicts or Records) matched by ``id``; they give
            camera poses when the predictions file lacks them. Without them, a synthetic scene's
            ``cameras.json`` / ``layout.json`` next to the views are used when present.
        max_views: views shown per example.

    Controls (ipywidgets): ``task``, ``qtype``, ``correct`` Dropdowns; ``slider`` (the example's number
    in the filtered list, from 1, beside ``count``: "of N"), ``prev_button`` / ``next_button``. Display:
    ``text`` (HTML: question, situation, gold answers, prediction and verdict) and ``image`` (PNG of the views
    and the cameras seen from above over the layout; for Stage 2 the predicted (dashed) vs gold (solid)
    layout). State for scripts and tests: ``filtered`` (row indices passing the filters), ``position``, ``current``
    (the shown row or None), ``figure`` (the last matplotlib Figure), ``show(i)`` (``i`` from 0), ``next()``,
    ``prev()``.
    ``widget`` is the whole UI; a notebook cell displays the viewer itself.
    """

    def __init__(self, predictions: str | os.PathLike | list[dict], records: Any = None, *, max_views: int = 4,
                 frustum_depth: float = 0.6, dpi: int = 80):
        import ipywidgets as widgets

        if isinstance(predictions, (str, os.PathLike)):
            self.rows = read_predictions(predictions)
        else:
            self.rows = [dict(r) for r in predictions]
        if not self.rows:
            raise DataError("AnswerViewer: no predictions to show")
        self.records = _records_by_id(records)
        self.max_views, self.frustum_depth, self.dpi = max_views, frustum_depth, dpi
        self.verdicts = [judge(r) for r in self.rows]
        self.filtered: list[int] = list(range(len(self.rows)))
        self.position = 0
        self.figure = None

        tasks = sorted({str(r.get("task")) for r in self.rows})
        self.task = widgets.Dropdown(options=[ALL] + tasks, value=ALL, description="task")
        self.qtype = widgets.Dropdown(options=self._qtype_options(ALL), value=ALL, description="qtype")
        self.correct = widgets.Dropdown(options=list(CORRECT_CHOICES), value=ALL, description="answer")
        # The slider shows the example's number counted from 1, as the "of N" beside it does.
        self.slider = widgets.IntSlider(min=1, max=max(1, len(self.rows)), value=1, description="example",
                                        continuous_update=False)
        self.prev_button = widgets.Button(description="\u25c0 prev", layout=widgets.Layout(width="80px"))
        self.next_button = widgets.Button(description="next \u25b6", layout=widgets.Layout(width="80px"))
        self.count = widgets.Label()
        self.text = widgets.HTML()
        self.image = widgets.Image(format="png")
        self._updating = False

        self.task.observe(self._on_filter, names="value")
        self.qtype.observe(self._on_filter, names="value")
        self.correct.observe(self._on_filter, names="value")
        self.slider.observe(lambda change: self.show(change["new"] - 1), names="value")
        self.prev_button.on_click(lambda _: self.prev())
        self.next_button.on_click(lambda _: self.next())
        self.widget = widgets.VBox([
            widgets.HBox([self.task, self.qtype, self.correct]),
            widgets.HBox([self.prev_button, self.slider, self.next_button, self.count]),
            self.text, self.image,
        ])
        self._apply_filters()

    # -- filters and navigation ----------------------------------------------------------------

    def _qtype_options(self, task: str) -> list[str]:
        qts = sorted({_qtype(r) for r in self.rows if task == ALL or str(r.get("task")) == task})
        return [ALL] + qts

    def _on_filter(self, change) -> None:
        if self._updating:
            return
        if change["owner"] is self.task:
            # Narrow the qtype choices to the task's; keep the selection when it still exists.
            self._updating = True
            options = self._qtype_options(self.task.value)
            keep = self.qtype.value if self.qtype.value in options else ALL
            self.qtype.options = options
            self.qtype.value = keep
            self._updating = False
        self._apply_filters()

    def _apply_filters(self) -> None:
        task, qtype, correct = self.task.value, self.qtype.value, self.correct.value
        self.filtered = [
            i for i, r in enumerate(self.rows)
            if (task == ALL or str(r.get("task")) == task)
            and (qtype == ALL or _qtype(r) == qtype)
            and (correct == ALL or self.verdicts[i]["correct"] == (correct == "correct"))
        ]
        self._updating = True
        n = len(self.filtered)
        # One message to the browser with min, max and value together: a max that arrived alone would
        # make the browser's slider clamp its old value and send that back as a step.
        with self.slider.hold_sync(), self.slider.hold_trait_notifications():
            self.slider.min, self.slider.max, self.slider.value = min(1, n), max(1, n), min(1, n)
        self.slider.disabled = n <= 1
        self._updating = False
        self.show(0)

    def show(self, i: int) -> None:
        """Show the ``i``-th example of the filtered list (clamped to its range)."""
        if self._updating:
            return
        self.position = int(min(max(0, i), max(0, len(self.filtered) - 1)))
        number = self.position + 1 if self.filtered else 0  # what the slider and the counter show
        if self.slider.value != number:
            self._updating = True
            self.slider.value = number
            self._updating = False
        self.count.value = f"of {len(self.filtered)}"
        self._render()

    def next(self) -> None:
        self.show(self.position + 1)

    def prev(self) -> None:
        self.show(self.position - 1)

    @property
    def current(self) -> dict | None:
        """The prediction row on display (None when the filters match nothing)."""
        return self.rows[self.filtered[self.position]] if self.filtered else None

    @property
    def current_verdict(self) -> dict | None:
        return self.verdicts[self.filtered[self.position]] if self.filtered else None

    # -- rendering -----------------------------------------------------------------------------

    def scene_of(self, row: dict) -> SceneView | None:
        """The views and cameras of a prediction row (from ``records`` by id, else from a synthetic
        scene's files next to its views); None when its images are unknown."""
        rec = self.records.get(str(row.get("id")))
        if rec is not None:
            return scene_from_record(rec)
        images = row.get("images") or []
        if not images:
            return None
        return scene_from_images(images, roomplan=row.get("roomplan"), scene_id=row.get("scene_id"))

    def _describe(self, row: dict, verdict: dict) -> str:
        e = html.escape
        ok = verdict["correct"]
        mark = ('<b style="color:#2ca02c">\u2714 correct</b>' if ok
                else '<b style="color:#d62728">\u2718 incorrect</b>')
        parts = [f"<b>{e(str(row.get('id')))}</b> &middot; task <code>{e(str(row.get('task')))}</code> "
                 f"&middot; qtype <code>{e(str(row.get('qtype')))}</code>"
                 + (" &middot; views removed" if row.get("blind") else "")]
        if row.get("situation"):
            parts.append(f"<b>situation:</b> {e(row['situation'])}")
        parts.append(f"<b>question:</b> {e(row.get('question') or '')}")
        if is_grounding_row(row):
            parts.append(f"<b>prediction:</b> <code>{e(_shown(row.get('prediction')))}</code>, IoU "
                         f"{100 * verdict['iou']:.0f}% with the gold box &nbsp;{mark}")
            if verdict["problems"]:
                parts.append(f"<b>parse problems:</b> {e('; '.join(verdict['problems'][:3]))}")
        elif is_layout_row(row):
            n_lines = len([ln for ln in (row.get("prediction") or "").splitlines() if ln.strip()])
            parts.append(f"<b>prediction:</b> {n_lines} layout lines, F1@0.5 {100 * verdict['f1']:.0f} &nbsp;{mark}")
            if verdict["problems"]:
                parts.append(f"<b>parse problems:</b> {e('; '.join(verdict['problems'][:3]))}")
            prediction = e(row.get("prediction") or "")
            parts.append(f"<pre style='font-size:11px;max-height:12em;overflow:auto'>{prediction}</pre>")
        else:
            parts.append(f"<b>gold answers:</b> {e(' | '.join(row.get('answers') or []))}")
            parts.append(f"<b>prediction:</b> {e(_shown(row.get('prediction')))} &nbsp;{mark}"
                         + ("" if ok or not verdict.get("em_refined") else " (refined match)"))
        return "<br>".join(parts)

    def _caption(self, row: dict, verdict: dict) -> str:
        """The text panel as plain lines (for :meth:`render_figure` with ``with_text``)."""
        qtype = f"   qtype {row['qtype']}" if row.get("qtype") else ""  # a layout has none
        lines = [f"{row.get('id')}   task {row.get('task')}{qtype}"
                 + ("   (views removed)" if row.get("blind") else "")]
        if row.get("situation"):
            lines.append(f"situation: {row['situation']}")
        lines.append(f"question: {row.get('question') or ''}")
        verdict_word = "correct" if verdict["correct"] else "incorrect"
        if is_grounding_row(row):
            lines.append(f"prediction: {_shown(row.get('prediction'))}  (IoU {100 * verdict['iou']:.0f}%)  ->  "
                         f"{verdict_word}")
        elif is_layout_row(row):
            lines.append(f"prediction: layout, F1@0.5 {100 * verdict['f1']:.0f}  ->  {verdict_word}")
        else:
            lines.append(f"gold answers: {' | '.join(row.get('answers') or [])}")
            lines.append(f"prediction: {_shown(row.get('prediction'))}  ->  {verdict_word}")
        return "\n".join(lines)

    def render_figure(self, row: dict, verdict: dict | None = None, with_text: bool = False):
        """The matplotlib Figure shown for ``row``: its views, then the cameras from above over the
        layout (Stage 2: predicted dashed vs gold solid). ``with_text`` adds the question, gold
        answers and prediction above the images (for static exports). Usable without widgets.

        The Figure is not pyplot's: the viewer draws inside widget callbacks, and the kernel runs its
        post-execute hooks after each widget message, where matplotlib-inline shows every open pyplot
        figure, under that message, in JupyterLab's Log Console. A Figure pyplot never held is shown
        only where it is asked for (the viewer's image, or a cell that returns it)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        verdict = verdict if verdict is not None else judge(row)
        scene = self.scene_of(row)
        n = min(scene.num_views, self.max_views) if scene is not None else 0
        roomplan = is_layout_row(row)
        boxes = grounding_boxes(row)
        has_map = scene is not None and (scene.has_geometry or scene.room is not None) or roomplan or bool(boxes)
        ncols = n + (2 if has_map else 0)
        map_h = 2.9 if not has_map else 4.2
        text_h = 1.1 if with_text else 0.0
        fig = Figure(figsize=(2.4 * max(1, ncols), map_h + text_h), dpi=self.dpi)
        FigureCanvasAgg(fig)  # measures text for the layout and the labels
        rows = fig.add_gridspec(2 if with_text else 1, max(1, ncols),
                                height_ratios=[text_h, map_h] if with_text else None)
        grid = rows[1:, :] if with_text else rows
        if with_text:
            tax = fig.add_subplot(rows[0, :])
            tax.axis("off")
            colour = "#2ca02c" if verdict["correct"] else "#d62728"
            tax.text(0.0, 1.0, self._caption(row, verdict), ha="left", va="top", fontsize=10, family="monospace",
                     transform=tax.transAxes, bbox={"facecolor": "white", "edgecolor": colour, "lw": 2})
        grid = grid.subgridspec(1, max(1, ncols)) if with_text else grid
        for v in range(n):
            ax = fig.add_subplot(grid[0, v])
            with open_view(scene.images[v]) as img:
                ax.imshow(np.asarray(img.convert("RGB")))
            ax.set_title(f"view {v}", fontsize=9, color=VIEW_COLOURS[v % len(VIEW_COLOURS)])
            ax.axis("off")
        map_ax, gold, cameras = None, None, []
        if has_map:
            ax = map_ax = fig.add_subplot(grid[0, n:])
            gold = verdict.get("gold_room") if roomplan else (scene.room if scene is not None else None)
            if roomplan:
                plot_layout_topdown(gold, verdict["pred_room"], ax=ax, labels=False,
                                    title="layout: gold (solid) vs predicted (dashed)")
            elif gold is not None:
                draw_room(ax, gold, "-", 0.4 if boxes else 0.8, label_objects=False)
            for b in boxes:  # a grounding answer: gold solid, predicted dashed, over the room
                foot = np.vstack([b["corners"][:4], b["corners"][:1]])
                ax.plot(foot[:, 0], foot[:, 1], color=b["colour"], lw=2.4, ls="--" if b["dash"] else "-",
                        label=b["label"])
            if boxes:  # the two boxes named beside the plan, not over it
                ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
            if scene is not None and scene.has_geometry:
                cameras = frusta(scene, self.frustum_depth)[:n]
                for v, c in enumerate(cameras):
                    draw_frustum_2d(ax, c, VIEW_COLOURS[v % len(VIEW_COLOURS)])
            ax.set_aspect("equal")
            ax.grid(True, lw=0.3, alpha=0.5)
            if boxes:
                ax.set_title(f"from above: IoU {100 * verdict['iou']:.0f}%", fontsize=9)
            elif not roomplan:
                ax.set_title("cameras from above", fontsize=9)
            ax.tick_params(labelsize=7)
        if n == 0 and not has_map:
            ax = fig.add_subplot(grid[0, 0])
            ax.text(0.5, 0.5, "no views", ha="center", va="center")
            ax.axis("off")
        fig.tight_layout()
        if map_ax is not None:  # names last, on the final layout: none prints over another
            taken: list = []
            label_points_2d(map_ax, [c[0, :2] for c in cameras], [str(v) for v in range(len(cameras))],
                            [VIEW_COLOURS[v % len(VIEW_COLOURS)] for v in range(len(cameras))], fontsize=9,
                            fontweight="bold", centred=False, taken=taken)
            if gold is not None and not boxes:  # a grounding answer's boxes are named in its legend
                label_objects_of(map_ax, gold, fontsize=7, taken=taken)
        return fig

    def snapshot(self):
        """A static rendering of what the viewer shows now (text + figure), for notebooks whose
        widgets are not live (papermill outputs, exported HTML)."""
        import base64

        from IPython.display import HTML

        if self.current is None:
            return HTML(self.text.value)
        png = base64.b64encode(self.image.value).decode("ascii")
        return HTML(f"<div>{self.text.value}</div><img src='data:image/png;base64,{png}'/>")

    def _render(self) -> None:
        row = self.current
        if row is None:
            self.text.value = "<i>no example matches these filters</i>"
            self.image.value = b""
            self.figure = None
            return
        verdict = self.current_verdict
        self.text.value = self._describe(row, verdict)
        fig = self.render_figure(row, verdict)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=self.dpi)
        self.figure = fig  # pyplot never holds it (render_figure): nothing to close, nothing shown twice
        self.image.value = buf.getvalue()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
