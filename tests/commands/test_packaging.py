"""Install metadata: environment.yml and pyproject agree; the commands exist and answer --help."""

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

from vqkit.commands import COMMANDS, main

REPO = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for reqs in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in reqs if not r.startswith("vqkit")}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    pip_block = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    pip = {_name(d) for d in pip_block if not d.startswith("-e")}
    have = pip | conda | ({"torch"} if "pytorch" in conda else set())
    assert wanted - have == set(), f"in pyproject, missing from environment.yml: {wanted - have}"
    assert pip - wanted == set(), f"in environment.yml, missing from pyproject: {pip - wanted}"


def test_vqkit_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("synth", "train", "eval", "prep", "bench", "plan", "monitor"):
        assert name in out and name in COMMANDS


def test_unknown_command_suggests(capsys):
    assert main(["evl"]) == 2
    assert "did you mean 'eval'" in capsys.readouterr().err


def test_console_scripts_answer_help():
    bindir = Path(sys.executable).parent
    for script in ("vqkit", "vqkit-train"):
        out = subprocess.run([str(bindir / script), "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "usage" in out.stdout.lower()
