"""vqkit synth's command line: its help and its errors."""

from __future__ import annotations

from vqkit.commands import main as vqkit_main


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
