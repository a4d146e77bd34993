"""vqkit synth's command line: what it writes (records, stats, the tokenizer), its help and its errors."""

from __future__ import annotations

import json

import pytest

from vqkit.commands import main as vqkit_main
from vqkit.commands.synth import main as synth_command
from vqkit.errors import ConfigError


def test_help_shows_real_defaults_only(capsys):
    """`vqkit synth --help` used to show "(default: None)" for the required --out (and --workers)."""
    try:
        vqkit_main(["synth", "--help"])
    except SystemExit as e:
        assert e.code == 0
    text = capsys.readouterr().out
    assert "(default: None)" not in text
    assert "output folder (required)" in text and "(default: min(2, CPU count))" in text
    assert "number of rooms (default: 100)" in text


def test_bad_splits_is_one_line(tmp_path, capsys):
    assert vqkit_main(["synth", "--out", str(tmp_path / "s"), "--splits", "a,b"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "vqkit synth: error: --splits must be three numbers like 0.8,0.1,0.1, got 'a,b'"
    with pytest.raises(ConfigError):  # called as a function, the error is raised, not printed
        synth_command(["--out", str(tmp_path), "--splits", "a,b"])


def test_cli_and_tokenizer(tmp_path):
    pytest.importorskip("tokenizers")
    rc = synth_command(["--out", str(tmp_path / "d"), "--scenes", "3", "--views", "2", "--image-size", "32",
                     "--seed", "1", "--workers", "1", "--quiet", "--vocab-size", "300",
                     "--train-questions-per-scene", "12", "--train-describe"])
    assert rc == 0
    assert (tmp_path / "d" / "tokenizer" / "tokenizer.json").is_file()
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert stats["scenes"] == {"train": 1, "val": 1, "test": 1}
    assert stats["args"]["train_questions_per_scene"] == 12 and stats["questions"]["train"] > 8
    assert stats["args"]["train_describe"] is True and stats["questions_per_qtype"]["train"]["describe"] == 1


def test_summary_line_names_rooms_questions_and_the_blind_baseline(tmp_path, capsys):
    out = tmp_path / "s"
    assert vqkit_main(["synth", "--out", str(out), "--scenes", "3", "--views", "1", "--image-size", "16",
                       "--render-scale", "1", "--workers", "1", "--no-tokenizer", "--quiet"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"vqkit synth: 3 scenes, {sum(stats['questions'].values())} questions in {out} (")
    assert line.endswith(f"blind majority EM {stats['blind']['all']['majority_em']}")
