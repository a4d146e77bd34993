"""vqkit bench on a tiny config: every figure present and consistent."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers import tiny_config
from vqkit.commands.bench import main
from vqkit.tools.bench import ensure_data, format_table
from vqkit.config import to_dict


def test_bench_json_has_the_figures(corpus, tokenizer_dir, tmp_path, capsys):  # noqa: F811
    cfg = tiny_config(corpus.root, tokenizer_dir)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    assert main(["--config", str(path), "--json", "--batch-size", "4", "--steps", "2", "--warmup", "1",
                 "--data-batches", "1", "--device", "cpu"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("data_samples_per_s", "step_s", "step_s_cached", "train_samples_per_s", "peak_mem_mb"):
        assert r[key] > 0, key
    assert r["batch_size"] == 4
    assert r["train_samples_per_s"] == pytest.approx(4 / r["step_s_cached"])
    # The cached step does not run the encoder; the uncached one does.
    assert r["breakdown_s_cached"]["encoder"] < 1e-3 < r["breakdown_s"]["encoder"]
    parts = r["breakdown_s"]
    assert parts["total"] == pytest.approx(sum(parts[k] for k in ("encoder", "projector", "llm_fwd_bwd", "optimizer")),
                                           rel=0.05)
    # The encoder's FLOPs are only in the uncached step; no MFU without a GPU.
    assert r["flops_per_step"] > r["flops_per_step_cached"] > 0
    assert r["mfu"] is None and r["tokens_per_s"] > 0
    table = format_table(r)
    assert "DataLoader samples/s" in table and "LLM fwd+bwd" in table


def test_ensure_data_points_at_a_synthetic_folder(corpus, tokenizer_dir, tmp_path):  # noqa: F811
    cfg = tiny_config(corpus.root, tokenizer_dir)
    same, generated = ensure_data(cfg)
    assert generated is None and same.data.train[0].path == cfg.data.train[0].path
    folder = tmp_path / "synth"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "train.jsonl").write_text(corpus.path.read_text())
    cfg.model.llm.name_or_path = str(tmp_path / "missing_tokenizer")
    moved, _ = ensure_data(cfg, str(folder))
    assert moved.data.train[0].path == str(folder / "train.jsonl") and moved.data.val == []
    assert moved.model.llm.tokenizer == str(folder / "tokenizer")
