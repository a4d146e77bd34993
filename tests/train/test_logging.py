"""vqkit.train.logging: what a run writes about itself (metrics.jsonl appended line by line, the same
scalars in TensorBoard, console lines through the progress bar) and the one reader of it."""

from __future__ import annotations

import json
import math

import pytest

from vqkit.errors import DataError
from vqkit.train.logging import METRICS_FILE, RunLogger, format_duration, metrics_path, read_metrics


class Bar:
    """What RunLogger needs of a tqdm bar: write() above it."""

    def __init__(self):
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.append(text)


def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    # By step: the event files of one second are read in name order, and their names end in a per-process
    # writer count written as text (".10" before ".9").
    return {tag: sorted((e.step, e.value) for e in events.Scalars(tag)) for tag in events.Tags()["scalars"]}


def test_the_log_appends_every_record_and_tensorboard_gets_the_finite_scalars(tmp_path):
    logger = RunLogger(tmp_path, enabled=True, progress_bar=None)
    logger.log({"step": 1, "loss": 2.5, "lr": 1e-3, "epoch": 0})
    logger.log({"step": 2, "eval_loss": 2.0, "eval_em": 12.5, "eval_note": "text is not a scalar"})
    logger.log({"step": 3, "loss": math.nan, "lr": 2e-3})
    # line-buffered: a reader sees each row as soon as it is logged, before the run ends
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    logger.close()
    resumed = RunLogger(tmp_path, enabled=True, progress_bar=None)  # a resumed run appends
    resumed.log({"step": 4, "loss": 1.5})
    resumed.close()
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[1]["eval_note"] == "text is not a scalar"
    assert math.isnan(rows[2]["loss"])
    scalars = tensorboard_scalars(tmp_path / "tb")
    assert scalars["train/loss"] == [(1, 2.5), (4, 1.5)]  # the NaN loss is in the log, not in the plots
    assert scalars["train/lr"] == [(1, pytest.approx(1e-3)), (3, pytest.approx(2e-3))]
    assert scalars["eval/loss"] == [(2, 2.0)] and scalars["eval/em"] == [(2, 12.5)]
    assert "train/step" not in scalars and not any("note" in tag for tag in scalars)


def test_a_disabled_logger_writes_nothing(tmp_path, capsys):
    """Ranks other than the main one log nothing: no file, no folder, no line."""
    logger = RunLogger(tmp_path, enabled=False, progress_bar=None)
    logger.log({"step": 1, "loss": 1.0})
    logger.print("hello")
    logger.close()
    assert list(tmp_path.iterdir()) == [] and capsys.readouterr().out == ""


def test_console_lines_go_above_the_progress_bar(tmp_path, capsys):
    bar = Bar()
    with_bar = RunLogger(tmp_path, enabled=True, progress_bar=bar)
    with_bar.print("step 1: loss 2.5")
    with_bar.close()
    assert bar.lines == ["step 1: loss 2.5"] and capsys.readouterr().out == ""
    plain = RunLogger(tmp_path, enabled=True, progress_bar=None)
    plain.print("step 2: loss 2.0")
    plain.close()
    assert capsys.readouterr().out == "step 2: loss 2.0\n"


def test_the_reader_skips_a_half_written_line_and_names_a_missing_log(tmp_path):
    path = tmp_path / METRICS_FILE
    path.write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n" + '{"step": 2, "lo')  # the run is mid-write
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 2.0}]
    assert read_metrics(path) == read_metrics(tmp_path)  # the file itself works too
    assert metrics_path(tmp_path) == path and metrics_path(path) == path
    assert metrics_path(tmp_path / "not_yet_made") == tmp_path / "not_yet_made" / METRICS_FILE
    assert read_metrics(tmp_path / "empty_run") == []
    with pytest.raises(DataError, match=r"empty_run/metrics\.jsonl: no metrics log"):
        read_metrics(tmp_path / "empty_run", missing_ok=False)


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (59.9, "0:59"), (61, "1:01"), (600, "10:00"),
                                           (3599, "59:59"), (3600, "1:00:00"), (3600 * 26 + 62, "26:01:02"),
                                           (-5, "0:00")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
