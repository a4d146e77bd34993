"""vqkit.errors: what a user sees of vqkit's errors: one line naming the problem, in a notebook cell as
on the command line, and errors of bad input that code catching ValueError still catches."""

from __future__ import annotations

import pytest

from vqkit.errors import CheckpointError, ConfigError, DataError, VQKitError


def test_input_errors_are_value_errors_and_all_are_vqkit_errors():
    for cls in (ConfigError, DataError, CheckpointError):
        assert issubclass(cls, VQKitError)
    assert issubclass(ConfigError, ValueError) and issubclass(DataError, ValueError)
    assert not issubclass(CheckpointError, ValueError)
    assert ConfigError("x")._render_traceback_() == ["ConfigError: x"]


def test_a_notebook_cell_shows_one_line_not_a_traceback(capsys):
    """What IPython (JupyterLab, papermill) prints for a failing cell."""
    shell_module = pytest.importorskip("IPython.core.interactiveshell")
    shell = shell_module.InteractiveShell.instance()
    try:
        shell.run_cell("from vqkit.errors import DataError\n"
                       "raise DataError('data/x.jsonl:3: field \\'answer\\': expected a string, got 5')")
        shown = capsys.readouterr()
        lines = [line for line in (shown.out + shown.err).splitlines() if line.strip()]
        assert lines == ["DataError: data/x.jsonl:3: field 'answer': expected a string, got 5"]
        shell.run_cell("raise ValueError('a plain error')")  # others keep their traceback
        shown = capsys.readouterr()
        assert "Traceback" in shown.out + shown.err or "----" in shown.out + shown.err
    finally:
        shell_module.InteractiveShell.clear_instance()


def test_the_command_line_prints_one_line_and_exits_2(tmp_path, capsys):
    from vqkit.commands import main

    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"config file not found: {tmp_path / 'missing.yaml'}" in err
