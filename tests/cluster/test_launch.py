"""scripts/launch.sh, run with bash as a user does: --help prints its usage and runs nothing (no torchrun,
no .cache/ folders); otherwise it calls torchrun with the project's caches (a stand-in torchrun records
the call)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from helpers import REPO


def _repo_with_launcher(tmp_path: Path) -> tuple[Path, dict]:
    """A copy of scripts/launch.sh in a fresh folder, and an environment whose torchrun records its
    arguments instead of training."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "launch.sh", repo / "scripts" / "launch.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "torchrun"
    fake.write_text(f'#!/usr/bin/env bash\necho "$@" > {tmp_path / "torchrun_called"}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "TORCH_HOME", "GPUS")}
    return repo, {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}


def test_help_prints_the_usage_and_runs_nothing(tmp_path):
    repo, env = _repo_with_launcher(tmp_path)
    for flag in ("--help", "-h"):
        out = subprocess.run(["bash", str(repo / "scripts" / "launch.sh"), flag], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("usage: scripts/launch.sh [--safe] [--gpus N] -- [vqkit-train arguments]")
        assert "--safe" in out.stdout and "example:" in out.stdout
        assert not (tmp_path / "torchrun_called").exists() and not (repo / ".cache").exists()
    bad = subprocess.run(["bash", str(repo / "scripts" / "launch.sh"), "--gpus"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip() == "scripts/launch.sh: error: --gpus needs a number (--help)"
    assert not (repo / ".cache").exists()


def test_a_launch_calls_torchrun_with_the_projects_caches(tmp_path):
    repo, env = _repo_with_launcher(tmp_path)
    out = subprocess.run(["bash", str(repo / "scripts" / "launch.sh"), "--gpus", "2", "--", "--config", "c.yaml"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    called = (tmp_path / "torchrun_called").read_text().split()
    assert called[called.index("--nproc_per_node") + 1] == "2"
    assert called[-4:] == ["-m", "vqkit.train", "--config", "c.yaml"]
    assert (repo / ".cache" / "huggingface").is_dir()
