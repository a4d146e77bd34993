"""Tables for the notebooks (HTML in a notebook, aligned text elsewhere): records, question types, the
model's parameters, where a batch's tokens go, tensor shapes."""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from vqkit.tokenizer import vision_token_ids


class HTMLTable:
    """A small table that renders as HTML in notebooks and as aligned text elsewhere."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None):
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]
        self.caption = caption

    @staticmethod
    def _fmt(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
        return str(value)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._fmt(v))}</td>" for v in r) + "</tr>"
                       for r in self.rows)
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        cells = [self.columns] + [[self._fmt(v) for v in r] for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return ((self.caption + "\n") if self.caption else "") + "\n".join(lines)

    __repr__ = __str__


def _as_dicts(records: Iterable[Any]) -> list[dict]:
    """Records (dicts or Record objects) as plain dicts with the record fields."""
    out = []
    for r in records:
        if isinstance(r, dict):
            out.append(r)
        else:
            d = r.meta()
            d["answer"] = r.answer
            d["has_geometry"] = r.geometry is not None
            out.append(d)
    return out


def records_table(records: Iterable[Any], n: int = 10, width: int = 48) -> HTMLTable:
    """The first ``n`` records: id, task, qtype, views, geometry, question (+ situation), answer."""
    rows = []
    recs = _as_dicts(records)
    for r in recs[:n]:
        question = r.get("question") or ""
        if r.get("situation"):
            question = f"[{r['situation']}] {question}"
        if len(question) > width:
            question = question[: width - 1] + "\u2026"
        answer = r.get("answer")
        if answer is None and r.get("roomplan") is not None:
            answer = "(layout)"
        geom = r.get("has_geometry", bool(r.get("geom_token")))
        rows.append([r.get("id"), r.get("task"), r.get("qtype"), len(r.get("images") or []),
                     "yes" if geom else "no", question, answer])
    return HTMLTable(["id", "task", "qtype", "views", "geometry", "question", "answer"], rows,
                     caption=f"{len(recs)} records (first {min(n, len(recs))})")


def qtype_stats(records: Iterable[Any]) -> dict[str, dict]:
    """Per qtype: number of questions, distinct answers, the most common answer and its share (%)
    (= the EM of a blind majority guess), mean question length in words."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in _as_dicts(records):
        if r.get("answer") is None and not r.get("answers"):
            continue  # Stage 2 layouts have no answer to count
        groups[r.get("qtype") or "none"].append(r)
    out = {}
    for qt in sorted(groups):
        answers = Counter((r.get("answer") if r.get("answer") is not None else r["answers"][0]) for r in groups[qt])
        top, count = answers.most_common(1)[0]
        out[qt] = {"n": len(groups[qt]), "answers": len(answers), "top_answer": top,
                   "top_share": 100.0 * count / len(groups[qt]),
                   "question_words": float(np.mean([len((r.get("question") or "").split()) for r in groups[qt]])),
                   "answer_counts": dict(answers.most_common())}
    return out


def qtype_stats_table(records: Iterable[Any]) -> HTMLTable:
    """:func:`qtype_stats` as a table."""
    stats = qtype_stats(records)
    rows = [[qt, s["n"], s["answers"], s["top_answer"], s["top_share"], s["question_words"]] for qt, s in stats.items()]
    return HTMLTable(["qtype", "questions", "distinct answers", "top answer", "top share %", "question words"], rows)


def qtype_stats_figure(records: Iterable[Any], top: int = 8):
    """Questions per qtype (left) and the answer distribution of each qtype (right, stacked shares
    of its ``top`` most common answers). Returns the Figure."""
    import matplotlib.pyplot as plt

    stats = qtype_stats(records)
    if not stats:  # e.g. a Stage 2 (layout-only) record file
        fig, ax = plt.subplots(figsize=(6, 1))
        ax.text(0.5, 0.5, "no question-answer records", ha="center", va="center")
        ax.axis("off")
        return fig
    names = list(stats)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.5), gridspec_kw={"width_ratios": [1, 2]})
    a.barh(names, [stats[q]["n"] for q in names], color="#4363d8")
    a.invert_yaxis()
    a.set_xlabel("questions")
    a.set_title("questions per qtype")
    cmap = plt.get_cmap("tab10")
    for i, q in enumerate(names):
        left = 0.0
        counts = list(stats[q]["answer_counts"].items())
        shown, rest = counts[:top], sum(c for _, c in counts[top:])
        for k, (ans, c) in enumerate(shown + ([("other", rest)] if rest else [])):
            share = 100.0 * c / stats[q]["n"]
            b.barh(i, share, left=left, color=cmap(k % 10) if ans != "other" else "#cccccc", edgecolor="white")
            if share >= 7:
                b.text(left + share / 2, i, ans, ha="center", va="center", fontsize=7)
            left += share
    b.set_yticks(range(len(names)), names)
    b.invert_yaxis()
    b.set_xlim(0, 100)
    b.set_xlabel("% of the qtype's questions")
    b.set_title("answers per qtype (first segment = blind majority guess)")
    fig.tight_layout()
    return fig



def parameter_table(model) -> HTMLTable:
    """Parameters per part of a VQModel (``model.parameter_counts()``): total, trainable, frozen."""
    counts = model.parameter_counts()
    rows = [[name, total, trainable, total - trainable,
             "absent" if total == 0 else "trains" if trainable == total else "frozen" if not trainable else "partly"]
            for name, (total, trainable) in counts.items()]
    total = sum(r[1] for r in rows)
    trainable = sum(r[2] for r in rows)
    rows.append(["total", total, trainable, total - trainable, f"{100.0 * trainable / max(1, total):.2f}% trains"])
    for r in rows:
        r[1:4] = [f"{v:,}" for v in r[1:4]]
    return HTMLTable(["part", "parameters", "trainable", "frozen", ""], rows)


def token_budget(batch: dict, model_cfg, tokenizer) -> HTMLTable:
    """Where each sample's tokens go in a collated train-mode batch: projector tokens (Perceiver
    latents or patch-merger cells), geometry tokens, the two vision markers, prompt text, answer
    (label tokens incl. the end token), padding.

    Counts come from the batch itself (``<|image_pad|>`` placeholders, ``labels``, ``attention_mask``),
    so the table shows what the model will actually see.
    """
    ids = vision_token_ids(tokenizer)
    rows = []
    for b, meta in enumerate(batch["meta"]):
        input_ids = batch["input_ids"][b]
        mask = batch["attention_mask"][b].bool()
        placeholders = int((input_ids == ids.pad_id).sum())
        markers = int(((input_ids == ids.start_id) | (input_ids == ids.end_id)).sum())
        answer = int((batch["labels"][b] != -100).sum()) if batch.get("labels") is not None else 0
        used = int(mask.sum())
        views = int(batch["view_mask"][b].sum())
        has_geometry = model_cfg.geometry.enabled and bool(batch["geom_mask"][b]) if "geom_mask" in batch else False
        geometry = views if (has_geometry and placeholders) else 0
        rows.append([meta.get("id"), views, placeholders - geometry, geometry, markers,
                     used - placeholders - markers - answer, answer, int((~mask).sum()), used])
    return HTMLTable(["id", "views", "vision (projector)", "geometry", "markers", "prompt text", "answer",
                      "padding", "total"], rows)


def tensor_shapes(obj: Any, prefix: str = "") -> HTMLTable:
    """Name, shape and dtype of every tensor in a (nested) dict / model output, e.g. a batch."""
    rows: list[list[Any]] = []

    def walk(value, name):
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            rows.append([name, tuple(value.shape), str(value.dtype).replace("torch.", "")])
        elif isinstance(value, dict) or hasattr(value, "items"):
            for k, v in value.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(value, tuple) and all(isinstance(v, int) for v in value):
            rows.append([name, value, "ints"])

    walk(obj, prefix)
    return HTMLTable(["tensor", "shape", "dtype"], rows)
