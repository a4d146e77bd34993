"""vqkit plan --probe: real steps beside the plan (a real CPU step here; the GPU's rows as text), the
CPU probe in a fresh process within 20% of the plan, and --probe on a GPU without CUDA as one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml
from helpers import tiny_config

from vqkit.config import to_dict
from vqkit.errors import ConfigError
from vqkit.tools.plan import make_plan
from vqkit.tools.plan_probe import format_cpu_probe, format_gpu_probe, measure_step, probe_plan, step_setup


def test_a_real_cpu_step_measures_memory_and_the_labelled_positions(corpus, tokenizer_dir):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    m = measure_step(step_setup(cfg, "cpu"), batch_size=3, steps=1)
    assert m["batch_size"] == 3 and m["peak_mb"] >= m["rss_before_step_mb"] > 0
    assert 0 < m["answer_tokens"] < m["seq_len"] <= cfg.data.max_length
    assert m["samples_per_s"] == pytest.approx(3 / m["step_s"])


def test_probe_rows_as_text():
    rows = [{"batch_size": 1, "fits": True, "peak_mb": 1000.0, "predicted_mb": 1100.0, "step_s": 0.5,
             "samples_per_s": 2.0},
            {"batch_size": 2, "fits": False}]
    assert format_gpu_probe(rows) == (
        "\n\nprobe (real steps):\n"
        "  batch     1: peak      1000 MB, plan      1100 MB (+10%), 0.50 s/step, 2.0 samples/s\n"
        "  batch     2: out of memory\nlargest batch that ran: 1")
    assert format_gpu_probe([{"batch_size": 1, "fits": False}]).endswith("largest batch that ran: 0")
    cpu = {"batch_size": 8, "seq_len": 40, "peak_mb": 900.0, "predicted_mb": 918.0, "error": 0.02}
    assert format_cpu_probe(cpu) == ("\n\nprobe: one real step at batch 8 (sequence 40): peak RSS 900 MB, "
                                     "plan 918 MB (+2.0%)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_a_gpu_probe_without_cuda_is_one_line(corpus, tokenizer_dir):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    plan_args = {"gpus": 1, "zero": 0, "gpu_mem_gb": 4, "device": "cuda"}
    with pytest.raises(ConfigError, match=r"^--probe on the GPU needs CUDA; use --device cpu --probe"):
        probe_plan(cfg, make_plan(cfg, **plan_args), config_path="cfg.yaml", overrides=[], plan_args=plan_args)


@pytest.mark.slow
def test_cpu_probe_within_20_percent(corpus, tokenizer_dir, tmp_path):  # noqa: F811
    cfg = tiny_config(corpus.root, tokenizer_dir)
    cfg.train.batch_size_per_gpu = 8
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    proc = subprocess.run([sys.executable, "-m", "vqkit", "plan", "--config", str(path), "--device", "cpu",
                           "--gpu-mem", "4", "--probe", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    probe = r["probe"][0]
    assert probe["batch_size"] == 8 and probe["peak_mb"] > 0
    assert abs(probe["error"]) < 0.2, probe
