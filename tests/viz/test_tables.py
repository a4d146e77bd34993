"""vqkit.viz.tables: the tables hold the records' and the model's numbers (HTML escaped), and the
question-type figure draws them."""

from __future__ import annotations

import pytest

from vqkit import viz
from vqkit.data.schema import load_records


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


def test_records_table_rows_hold_each_records_fields():
    records = [
        {"id": "a", "task": "sqa3d", "qtype": "what", "images": ["1.png", "2.png", "3.png"], "geom_token": {"R": []},
         "situation": "I sit on the bed.", "question": "What is in front of me?", "answer": "a table"},
        {"id": "b", "task": "synth", "images": ["1.png"], "geom_token": None, "question": "q" * 60, "answer": "2"},
        {"id": "c", "task": "roomplan", "images": ["1.png"], "question": "Layout?", "roomplan": {"walls": []}},
    ]
    table = viz.records_table(records, n=2, width=30)
    assert table.columns == ["id", "task", "qtype", "views", "geometry", "question", "answer"]
    assert table.rows[0] == ["a", "sqa3d", "what", 3, "yes", "[I sit on the bed.] What is i\u2026", "a table"]
    assert table.rows[1][3:] == [1, "no", "q" * 29 + "\u2026", "2"]
    assert table.caption == "3 records (first 2)" and len(table.rows) == 2
    assert viz.records_table(records).rows[2][-1] == "(layout)"


def test_html_table_formats_numbers_and_aligns_text():
    table = viz.HTMLTable(["name", "value"], [["big", 12.345], ["small", 0.012345], ["zero", 0.0], ["none", None]],
                          caption="numbers")
    lines = [line.rstrip() for line in str(table).splitlines()]
    assert lines == ["numbers", "name   value", "-----  ------", "big    12.3", "small  0.0123", "zero   0.0",
                     "none   -"]
    html = table._repr_html_()
    assert "<caption>numbers</caption>" in html and "<td>0.0123</td>" in html and "<td>-</td>" in html


def test_qtype_stats_figure_draws_the_counts_and_shares(synth):
    """Left: one bar per qtype as long as its number of questions; right: each qtype's answers
    stacked to 100%, the first segment as long as the majority answer's share."""
    records = load_records(str(synth / "train.jsonl"))
    stats = viz.qtype_stats(records)
    table = viz.qtype_stats_table(records)
    assert [r[:5] for r in table.rows] == [[q, s["n"], s["answers"], s["top_answer"], s["top_share"]]
                                          for q, s in stats.items()]
    counts_ax, shares_ax = viz.qtype_stats_figure(records).axes
    bars = {t.get_text(): p.get_width() for t, p in zip(counts_ax.get_yticklabels(), counts_ax.patches, strict=True)}
    assert bars == {q: s["n"] for q, s in stats.items()}
    for i, s in enumerate(stats.values()):
        segments = sorted((p for p in shares_ax.patches if abs(p.get_y() + p.get_height() / 2 - i) < 1e-6),
                          key=lambda p: p.get_x())
        assert sum(p.get_width() for p in segments) == pytest.approx(100.0)
        assert segments[0].get_x() == 0 and segments[0].get_width() == pytest.approx(s["top_share"])
    assert [t.get_text() for t in shares_ax.get_yticklabels()] == list(stats)


def test_parameter_table_of_a_real_model(tiny_records, tokenizer_dir):
    """The table's numbers are the model's: per part total / trainable / frozen with thousands
    separators, the state of each part, and a total row."""
    from helpers import tiny_config

    from vqkit.models.builder import build_model

    model = build_model(tiny_config(tiny_records.root, tokenizer_dir))
    counts = model.parameter_counts()
    table = viz.parameter_table(model)
    assert [r[0] for r in table.rows] == [*counts, "total"]
    for row, (total, trainable) in zip(table.rows, counts.values(), strict=False):
        assert row[1:4] == [f"{total:,}", f"{trainable:,}", f"{total - trainable:,}"]
    states = {r[0]: r[4] for r in table.rows}
    assert states["encoder"] == "frozen" and states["projector"] == "trains" and states["lora"] == "absent"
    total = sum(t for t, _ in counts.values())
    trainable = sum(t for _, t in counts.values())
    assert table.rows[-1] == ["total", f"{total:,}", f"{trainable:,}", f"{total - trainable:,}",
                              f"{100.0 * trainable / total:.2f}% trains"]
    assert total == sum(p.numel() for p in model.parameters())


def test_token_budget_counts_where_a_real_batchs_tokens_go(tiny_records, tiny_tokenizer):
    """Per sample: the projector's latents, one geometry token per view when the record has geometry,
    the two markers, the answer with its end token; prompt text is the rest and adds up to the total."""
    from vqkit.config import DataConfig, ModelConfig
    from vqkit.data.collate import Collator
    from vqkit.data.dataset import build_dataset

    model_cfg = ModelConfig()
    model_cfg.projector.num_latents = 5
    data_cfg = DataConfig(image_size=28, num_views=2, prompt_template="chat", max_length=256)
    ds = build_dataset(data_cfg, "val", sources=[str(tiny_records.path)])
    samples = [ds[i] for i in range(len(ds))]
    batch = Collator(tiny_tokenizer, model_cfg, data_cfg, mode="train")(samples)
    table = viz.token_budget(batch, model_cfg, tiny_tokenizer)
    assert table.columns == ["id", "views", "vision (projector)", "geometry", "markers", "prompt text", "answer",
                             "padding", "total"]
    length = batch["input_ids"].shape[1]
    for row, sample in zip(table.rows, samples, strict=True):
        _, views, projector, geometry, markers, prompt, answer, padding, total = row
        assert views == 2 and projector == 5 and markers == 2
        assert geometry == (2 if sample["has_geometry"] else 0)
        assert answer == len(tiny_tokenizer(sample["answer"] + "<|im_end|>")["input_ids"])
        assert projector + geometry + markers + prompt + answer == total and total + padding == length
        assert prompt > len(tiny_tokenizer(sample["question"])["input_ids"])
    assert [r[3] for r in table.rows].count(0) == 1  # the record without geometry


def test_tensor_shapes_walks_nested_outputs():
    import torch

    table = viz.tensor_shapes({"batch": {"input_ids": torch.zeros(2, 7, dtype=torch.long),
                                         "image_hw": (28, 28), "meta": [{"id": "x"}]},
                               "loss": torch.tensor(1.5)})
    assert table.rows == [["batch.input_ids", (2, 7), "int64"], ["batch.image_hw", (28, 28), "ints"],
                          ["loss", (), "float32"]]
