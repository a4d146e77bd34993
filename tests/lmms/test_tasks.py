"""vqkit's lmms-eval tasks run by lmms-eval itself (``python -m lmms_eval``, the README's command): the
synthetic task's EM is ``vqkit eval``'s on the same records, the VSI-Bench-style task scores every question
type it asks; under ``accelerate launch`` two processes give the one process's scores."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install 'vqkit[lmms]')")

from helpers import REPO  # noqa: E402

from vqkit.eval.generate import evaluate  # noqa: E402
from vqkit.lmms.synth_docs import SYNTH_DIR_ENV, spatial_doc_to_text, spatial_docs  # noqa: E402
from vqkit.models.builder import load_model  # noqa: E402

TASKS = REPO / "vqkit" / "lmms" / "tasks"
VSI_PROMPTS = {"pre_prompt": "", "mca_post_prompt": "Answer with the option's letter from the given choices directly.",
               "na_post_prompt": "Please answer the question using a single word or phrase."}  # VSI-Bench's


def run_lmms_eval(model_dir: Path, out: Path, cwd: Path, env: dict | None = None, launcher: list[str] | None = None,
                  tasks: str = "vqkit_synth_val,vqkit_spatial", expect_ranks: int = 1) -> tuple[dict, dict]:
    """``python -m lmms_eval --model vqkit ...`` as the README gives it, with ``--log_samples``: the results
    JSON it writes and, per task, its samples (prompt and answer of every question) in document order."""
    command = [*(launcher or [sys.executable]), "-m", "lmms_eval", "--model", "vqkit",
               "--model_args", f"pretrained={model_dir},device=cpu", "--tasks", tasks,
               "--include_path", str(TASKS), "--batch_size", "4", "--output_path", str(out), "--log_samples"]
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])  # this tree's vqkit
    environment = {**os.environ, "LMMS_EVAL_PLUGINS": "vqkit.lmms", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in log, log[-6000:]
    ranks = {int(r) for r in re.findall(r"Running on rank (\d+)", log)}
    assert ranks == set(range(expect_ranks)), f"ranks {ranks}: " + log[-3000:]
    results = sorted(out.rglob("*_results.json"))
    assert len(results) == 1, list(out.rglob("*"))
    samples = {}
    for task in tasks.split(","):
        (file,) = out.rglob(f"*_samples_{task}.jsonl")
        rows = [json.loads(line) for line in file.read_text().splitlines()]
        samples[task] = sorted(rows, key=lambda r: r["doc_id"])
    return json.loads(results[0].read_text())["results"], samples


@pytest.fixture(scope="module")
def one_process(synth_model_dir, synth_dir, tmp_path_factory):
    """The tasks run from a folder whose data/synth is the session's rooms (as after `make demo`)."""
    cwd = tmp_path_factory.mktemp("lmms_cwd")
    (cwd / "data").mkdir()
    (cwd / "data" / "synth").symlink_to(synth_dir)
    return run_lmms_eval(synth_model_dir, cwd / "out", cwd)


def test_synthetic_task_asks_and_scores_as_vqkit_eval(one_process, synth_model_dir, synth_dir):
    """Every question's prompt is the record's question, its answer ``vqkit eval``'s prediction, and the
    scores ``vqkit eval``'s."""
    rows, metrics = evaluate(load_model(synth_model_dir, device="cpu"), data=str(synth_dir / "val.jsonl"),
                             language=False, progress=False)
    results, samples = one_process
    got = samples["vqkit_synth_val"]
    assert [s["input"] for s in got] == [f"{r['situation']} {r['question']}" if r.get("situation") else r["question"]
                                         for r in rows]
    assert [s["filtered_resps"] for s in got] == [r["prediction"] for r in rows]
    assert len({r["prediction"] for r in rows}) > 1  # the tiny model's answers differ: the match means something
    scores = results["vqkit_synth_val"]
    assert scores["em,none"] == pytest.approx(metrics["overall"]["em"], abs=1e-9)
    assert scores["em_refined,none"] == pytest.approx(metrics["overall"]["em_refined"], abs=1e-9)
    for qtype, m in metrics["by_qtype"].items():
        assert scores[f"em_{qtype},none"] == pytest.approx(m["em"], abs=1e-9), qtype
        if "mra" in m:
            assert scores[f"mra_{qtype},none"] == pytest.approx(m["mra"], abs=1e-9), qtype


def test_spatial_task_asks_as_vsibench_and_scores_the_types_it_asks(one_process, synth_dir):
    results, samples = one_process
    docs = spatial_docs(synth_dir)
    assert [s["input"] for s in samples["vqkit_spatial"]] == [spatial_doc_to_text(d, VSI_PROMPTS) for d in docs]
    got = results["vqkit_spatial"]
    scores = {k.split(",")[0]: v for k, v in got.items() if k.endswith(",none") and isinstance(v, float)}
    for name in ("overall", "object_counting_mra", "room_size_estimation_mra"):
        assert 0.0 <= scores[name] <= 100.0, name  # every room asks these
    asked = [v for k, v in scores.items() if k != "overall" and not math.isnan(v)]
    assert scores["overall"] == pytest.approx(sum(asked) / len(asked))


@pytest.mark.slow  # synth_docs.synth_dir's test covers the choice; this runs it through lmms-eval
def test_the_synthetic_folder_can_be_elsewhere(synth_model_dir, synth_dir, tmp_path):
    results, _ = run_lmms_eval(synth_model_dir, tmp_path / "out", tmp_path, env={SYNTH_DIR_ENV: str(synth_dir)},
                               tasks="vqkit_synth_val")
    assert "em,none" in results["vqkit_synth_val"]


@pytest.mark.slow
def test_two_processes_under_accelerate_give_one_process_s_scores(one_process, synth_model_dir, synth_dir, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synth").symlink_to(synth_dir)
    # --multi_gpu launches the processes; ACCELERATE_USE_CPU makes every Accelerator of the run (lmms-eval's
    # own first) join them on the CPU, over gloo.
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    two, _ = run_lmms_eval(synth_model_dir, tmp_path / "out", tmp_path, launcher=launcher,
                        env={"ACCELERATE_USE_CPU": "1"}, expect_ranks=2)
    for task in ("vqkit_synth_val", "vqkit_spatial"):
        keys = [k for k, v in one_process[0][task].items() if k.endswith(",none") and isinstance(v, float)]
        for key in keys:
            a, b = one_process[0][task][key], two[task][key]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b), (task, key, a, b)
