"""scripts/slurm/train.sbatch on a real Slurm: a one-node cluster on localhost (Debian's slurmctld,
slurmd and munge, CPU only), the demo config for a few dozen steps on a tiny synthetic set.

- A job runs to the end and its final model loads.
- A job requeued mid-run (``scontrol requeue``: what preemption does) gets SIGTERM, saves a checkpoint,
  starts again and continues from it, ending with the same losses, step by step, and the same weights
  as the uninterrupted job.

The daemons run as root from a temporary folder (their own slurm.conf, munge key and socket); CI
installs them (.ci/run). Elsewhere the test is skipped when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.ci]

SBIN = ("/usr/sbin", "/usr/bin", "/sbin")
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "sinfo")
STEPS = 60          # long enough to requeue in the middle
REQUEUE_AT = 12     # the step after which the job is requeued
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _skip_or_fail(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (.ci/run installs Slurm and munge)")
    pytest.skip(reason)


SLURM_CONF = """\
ClusterName=vqkit-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Time between SIGTERM and SIGKILL: the run finishes its step and saves its checkpoint within it.
KillWait=60
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    """A one-node Slurm cluster in ``root``: munged, slurmctld and slurmd started here, stopped by pid."""

    def __init__(self, root: Path):
        self.root = root
        self.env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
        self.pid_files = [root / "slurmd.pid", root / "slurmctld.pid", root / "munged.pid"]

    def start(self) -> None:
        root, host = self.root, socket.gethostname()
        for sub in ("state", "spool"):
            (root / sub).mkdir()
        subprocess.run([_which("mungekey"), "--create", f"--keyfile={root}/munge.key", "--force"], check=True)
        (root / "munge.key").chmod(0o600)
        subprocess.run([_which("munged"), "--force", f"--key-file={root}/munge.key",
                        f"--socket={root}/munge.socket", f"--log-file={root}/munged.log",
                        f"--pid-file={root}/munged.pid", f"--seed-file={root}/munged.seed"], check=True)
        (root / "slurm.conf").write_text(SLURM_CONF.format(host=host, root=root, cpus=os.cpu_count(),
                                                           ctld_port=_free_port(), d_port=_free_port()))
        subprocess.run([_which("slurmctld")], check=True, env=self.env)
        subprocess.run([_which("slurmd"), "-N", host], check=True, env=self.env)
        deadline = time.time() + 60
        while time.time() < deadline:
            state = self.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise AssertionError(f"the node did not come up (sinfo: {state!r}):\n{self.logs()}")

    def stop(self) -> None:
        self.run("scancel", "--full", "--user", "root", check=False)
        for pid_file in self.pid_files:
            if pid_file.is_file():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.root.glob("*.log")))

    def run(self, *args: str, check: bool = True, env: dict | None = None, cwd: Path | None = None):
        return subprocess.run([_which(args[0]), *args[1:]], check=check, capture_output=True, text=True,
                              env=env or self.env, cwd=cwd, timeout=60)

    def job(self, job_id: str) -> dict:
        line = self.run("scontrol", "show", "job", "-o", job_id).stdout
        return dict(item.split("=", 1) for item in line.split() if "=" in item)

    def wait(self, job_id: str, states: set[str], timeout: float = 600) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            info = self.job(job_id)
            if info.get("JobState") in states:
                return info
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {info.get('JobState')} after {timeout} s\n{self.logs()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = [d for d in DAEMONS if _which(d) is None]
    if missing:
        _skip_or_fail(f"no Slurm/munge here ({', '.join(missing)} missing): apt-get install slurmctld slurmd munge")
    if os.geteuid() != 0:
        _skip_or_fail("slurmd needs root to start jobs")
    # A short root: Slurm and munge keep socket paths under 108 bytes.
    root = Path(tmp_path_factory.mktemp("slurm"))
    c = Cluster(root)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory):
    """The demo config on a tiny synthetic set, logging every step and saving no periodic checkpoint
    (the only checkpoint a requeued run can continue from is the one its SIGTERM saved)."""
    from vqkit.config import load_config
    from vqkit.config.io import save_config
    from vqkit.synth import generate, use_synthetic_data

    root = Path(tmp_path_factory.mktemp("data"))
    generate(root / "synth", scenes=6, views=3, image_size=56, seed=0, progress=False)
    cfg = load_config(REPO / "configs" / "first_demo.yaml",
                      ["data.image_size=56", "train.batch_size_per_gpu=8", "train.warmup_steps=4",
                       "train.log_every_steps=1", "train.save_every_steps=0", f"train.max_steps={STEPS}"])
    use_synthetic_data(cfg, root / "synth")
    save_config(cfg, root / "config.yaml")
    return root / "config.yaml"


def _submit(cluster: Cluster, config: Path, run_dir: Path, name: str, env: dict, output: Path | None) -> str:
    args = ["sbatch", "--parsable", f"--chdir={REPO}", "--gpus-per-node=0", f"--cpus-per-task={os.cpu_count()}",
            f"--job-name={name}"]
    args += [f"--output={output}"] if output else []
    args += ["scripts/slurm/train.sbatch", "--config", str(config), "--output-dir", str(run_dir), "--no-progress"]
    return cluster.run(*args, env=env).stdout.strip().split(";")[0]


def _job_env(cluster: Cluster, **extra: str) -> dict:
    """The submitting shell: no Python environment active (the script finds .venv), one thread per
    process on both runs so their sums are taken in the same order."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env = {k: v for k, v in cluster.env.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH")}
    return {**env, "PATH": path, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}


def _losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert len(steps) == len(set(steps)), f"{run_dir}: a step was logged twice: {steps}"
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _trainable(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "final" / "trainable.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(cluster, demo_config, tmp_path_factory):
    """A job run to the end, its log in the submission folder (Slurm's default place: no logs/ folder
    needed). Returns the run folder and the log's text."""
    run_dir = Path(tmp_path_factory.mktemp("runs")) / "straight"
    job_id = _submit(cluster, demo_config, run_dir, "vqkit-slurm-test", _job_env(cluster), output=None)
    log = REPO / f"vqkit-slurm-test-{job_id}.out"
    try:
        info = cluster.wait(job_id, FINAL_STATES)
        text = log.read_text() if log.is_file() else ""
    finally:
        log.unlink(missing_ok=True)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{text}\n{cluster.logs()}"
    return run_dir, text


def test_a_job_finishes_and_its_model_loads(uninterrupted):
    import vqkit

    run_dir, log = uninterrupted
    assert "with " + str(REPO / ".venv" / "bin" / "python") in log  # found the repository's .venv itself
    assert max(_losses(run_dir)) == STEPS
    model = vqkit.load_model(run_dir / "final")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) > 0


def test_a_requeued_job_continues_from_its_checkpoint_with_the_same_losses(cluster, demo_config, uninterrupted,
                                                                         tmp_path):
    """Long because it drives one job through requeue and restart."""
    straight, _ = uninterrupted
    run_dir, log = tmp_path / "requeued", tmp_path / "requeued.out"
    env = _job_env(cluster, VQKIT_ENV=sys.prefix)  # the environment named explicitly this time
    job_id = _submit(cluster, demo_config, run_dir, "vqkit-requeue", env, output=log)
    deadline = time.time() + 300
    while not ((run_dir / "metrics.jsonl").is_file() and max(_losses(run_dir), default=0) >= REQUEUE_AT):
        assert time.time() < deadline and cluster.job(job_id)["JobState"] in ("PENDING", "RUNNING"), \
            f"{cluster.job(job_id)}\n{log.read_text() if log.is_file() else ''}"
        time.sleep(0.2)
    cluster.run("scontrol", "requeue", job_id)
    # Requeued jobs wait two minutes before they are eligible again; a test has no need to.
    cluster.wait(job_id, {"PENDING"}, timeout=120)
    cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
    info = cluster.wait(job_id, FINAL_STATES)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", f"{info}\n{text}"

    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(checkpoints) == 1, checkpoints  # the one SIGTERM saved (no periodic checkpoints)
    saved_at = int(checkpoints[0].split("_")[1])
    assert REQUEUE_AT <= saved_at < STEPS
    assert "interrupted: checkpoint" in text and f"resumed from {run_dir / 'checkpoints' / checkpoints[0]}" in text
    assert "restart 1" in text

    requeued, reference = _losses(run_dir), _losses(straight)
    assert sorted(requeued) == list(range(1, STEPS + 1))
    for step in reference:
        assert requeued[step] == pytest.approx(reference[step], rel=1e-6, abs=1e-7), f"step {step}"
    a, b = _trainable(straight), _trainable(run_dir)
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= 1e-6, name


def test_a_wrong_environment_is_one_clear_line(cluster, demo_config, tmp_path):
    log = tmp_path / "bad.out"
    env = _job_env(cluster, VQKIT_ENV=str(tmp_path / "no-such-env"))
    job_id = _submit(cluster, demo_config, tmp_path / "never", "vqkit-bad-env", env, output=log)
    info = cluster.wait(job_id, FINAL_STATES, timeout=120)
    assert info["JobState"] == "FAILED"
    assert "VQKIT_ENV=" in log.read_text() and "neither a venv nor a conda environment" in log.read_text()
    assert not (tmp_path / "never").exists()
