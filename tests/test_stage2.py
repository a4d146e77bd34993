"""Stage 2 end to end: synthetic layouts -> training -> `vqkit eval` layout metrics -> `vqkit ask
--roomplan`, and generation that stops when a layout starts repeating itself.

Everything is real and tiny: `vqkit synth` rooms (56 px, 2 views) with the tokenizer it trains, a
1-layer Qwen3 from config, the training loop of `vqkit-train`, the eval and ask commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vqkit.commands import main as vqkit_main
from vqkit.config import config_from_dict
from vqkit.roomplan import Room, first_repeated_line, trim_repeated_lines

SIZE = 56


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    from vqkit.synth.benchmark import generate

    out = tmp_path_factory.mktemp("synth_stage2")
    generate(out, scenes=10, views=2, image_size=SIZE, seed=11, workers=1, questions_per_scene=2,
             progress=False)
    return out


def tiny_config(synth_dir: Path, run_dir: Path, train: str, val: str, **overrides) -> dict:
    """The Stage 2 demo recipe shrunk to a few CPU seconds (same prompt template, geometry on)."""
    cfg = {
        "model": {
            "encoder": {"img_size": SIZE, "embed_dim": 32, "depth": 1, "num_heads": 2, "patch_embed": "conv"},
            "projector": {"num_latents": 4, "num_layers": 1, "num_heads": 2},
            "geometry": {"hidden": 32},
            "llm": {"name_or_path": str(synth_dir / "tokenizer"), "from_config": True,
                    "config_overrides": {"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128,
                                         "num_hidden_layers": 1, "num_attention_heads": 2,
                                         "num_key_value_heads": 1, "head_dim": 32,
                                         "max_position_embeddings": 1024}},
            "lora": {"enabled": False, "full_finetune": True},
        },
        "data": {"train": [{"path": str(train)}], "val": [{"path": str(val)}], "num_views": 2,
                 "image_size": SIZE, "max_length": 640, "prompt_template": "{question}\n<image>\n{answer}"},
        "train": {"output_dir": str(run_dir), "max_steps": 4, "batch_size_per_gpu": 4, "lr": 3e-3,
                  "proj_lr": 3e-3, "warmup_steps": 0, "log_every_steps": 2, "save_every_steps": 0, "seed": 5,
                  "mixed_precision": "no"},
        "eval": {"batch_size": 4, "roomplan_max_new_tokens": 96},
    }
    for key, value in overrides.items():
        section, name = key.split("__")
        cfg[section][name] = value
    return cfg


# ------------------------------------------------------------------ stopping on a repeated element


class ForceTokens:
    """A logits processor that makes every sequence emit ``ids`` in turn (then keeps the last one):
    a stand-in for a trained model that loops, driven through the real generate loop."""

    def __init__(self, ids: list[int], prompt_length: int):
        self.ids, self.prompt_length, self.calls = ids, prompt_length, 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        step = min(input_ids.shape[1] - self.prompt_length, len(self.ids) - 1)
        forced = torch.full_like(scores, -float("inf"))
        forced[:, self.ids[step]] = 0.0
        return forced


@pytest.fixture(scope="module")
def layout_model(synth_dir, tmp_path_factory):
    from vqkit.models.builder import build_model
    from vqkit.tokenizer import load_tokenizer

    root = tmp_path_factory.mktemp("stage2_model")
    val = synth_dir / "roomplan_val.jsonl"
    cfg = config_from_dict(tiny_config(synth_dir, root / "run", val, val))
    return build_model(cfg, load_tokenizer(cfg.model.llm))


def _layout_batch(model, synth_dir):
    from vqkit.data.collate import Collator
    from vqkit.eval.generate import build_eval_dataset

    cfg = model.config
    dataset = build_eval_dataset(cfg, synth_dir / "roomplan_val.jsonl")
    collator = Collator(model.tokenizer, cfg.model, cfg.data, mode="generate")
    return collator([dataset[0]])


def test_a_looping_layout_stops_at_the_first_repeated_element(layout_model, synth_dir):
    lines = ["wall 0 x=0 y=150 w=300 h=250 yaw=90", "wall 1 x=150 y=0 w=300 h=250 yaw=0",
             "chair x=40 y=60 w=45 h=90 d=50 yaw=0"]
    loop = "\n".join(lines + [lines[2]] * 12)  # the chair line again and again
    tok = layout_model.tokenizer
    ids = tok(loop, add_special_tokens=False)["input_ids"]
    batch = _layout_batch(layout_model, synth_dir)
    assert batch["meta"][0]["task"] == "roomplan"
    prompt_length = batch["input_ids"].shape[1]
    first_repeat_end = len(tok("\n".join(lines + [lines[2]]) + "\n", add_special_tokens=False)["input_ids"])

    force = ForceTokens(ids, prompt_length)
    (text,) = layout_model.generate(batch, max_new_tokens=len(ids), logits_processor=[force])
    assert text == "\n".join(lines)                 # the repeat trimmed, nothing after it
    assert force.calls <= first_repeat_end + 1       # stopped right after the repeated line, not at the budget
    assert force.calls < len(ids) // 2

    # Off (a QA batch, or explicitly): the whole budget is spent and the text kept as generated.
    force = ForceTokens(ids, prompt_length)
    (text,) = layout_model.generate(batch, max_new_tokens=len(ids), logits_processor=[force],
                                    stop_on_repeated_line=False)
    assert force.calls == len(ids) and text == loop


def test_each_sequence_of_a_batch_stops_on_its_own(layout_model, synth_dir):
    """Two samples: the first repeats early, the second never does; the second runs to its end."""
    from vqkit.models.vqmodel import RepeatedLineStop

    tok = layout_model.tokenizer
    a = tok("sofa x=1 y=2 w=3 h=4 d=5 yaw=0\nsofa x=1 y=2 w=3 h=4 d=5 yaw=0\n", add_special_tokens=False)["input_ids"]
    b = tok("wall 0 x=1 y=2 w=3 h=4 yaw=0\nwall 1 x=9 y=2 w=3 h=4 yaw=0\nwall 2 x=9 y=8 w=3 h=4 yaw=90\n",
            add_special_tokens=False)["input_ids"]
    n = len(a)
    assert len(b) > n
    stop = RepeatedLineStop(tok, prompt_length=3)
    done_at = [None, None]
    for step in range(1, n + 1):
        ids = torch.tensor([[0, 0, 0] + a[:step], [0, 0, 0] + b[:step]])
        done = stop(ids, None)
        for i in range(2):
            if done[i] and done_at[i] is None:
                done_at[i] = step
    assert done_at[0] == len(a) and done_at[1] is None


def test_repeated_line_helpers():
    text = "wall 0 x=0 y=0 w=1 h=1 yaw=0\ndoor wall=0 s=0 w=1 h=2\nwall 1 x=0 y=0 w=1 h=1 yaw=0\nbed x=1"
    # the same wall under a new index is a repeat; blank lines and a half-written last line are not
    assert first_repeated_line(text) == text.index("wall 1")
    assert trim_repeated_lines(text) == "wall 0 x=0 y=0 w=1 h=1 yaw=0\ndoor wall=0 s=0 w=1 h=2"
    assert first_repeated_line("bed x=1\n\n\nbed x=2") is None
    assert first_repeated_line("bed x=1\nbed  x=1", complete_only=True) is None
    assert first_repeated_line("bed x=1\nbed  x=1\n", complete_only=True) == 8
    assert trim_repeated_lines("table x=1\nchair x=2") == "table x=1\nchair x=2"


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
@pytest.mark.ci
def test_stage2_synth_train_eval_reports_layout_metrics(synth_dir, tmp_path, capsys):
    from vqkit.train import run

    run_dir = tmp_path / "run"
    val = synth_dir / "roomplan_val.jsonl"
    cfg = config_from_dict(tiny_config(synth_dir, run_dir, synth_dir / "roomplan_train.jsonl", val))
    result = run(cfg, progress=False)
    final = Path(getattr(result, "final_dir", run_dir / "final"))
    assert (final / "trainable.safetensors").is_file()
    losses = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert losses and all(torch.isfinite(torch.tensor(losses)))

    out = tmp_path / "eval"
    assert vqkit_main(["eval", "--model", str(final), "--data", str(val), "--out", str(out),
                       "--no-language-metrics"]) == 0
    table = capsys.readouterr().out
    assert "roomplan (" in table and "parse rate" in table
    metrics = json.loads((out / "metrics.json").read_text())
    rp = metrics["roomplan"]
    n_val = len(val.read_text().splitlines())
    assert rp["n"] == n_val and 0.0 <= rp["parse_rate"] <= 100.0
    for kind in ("walls", "doors", "windows", "objects"):
        for key in ("f1@0.25", "f1@0.5", "precision@0.25", "recall@0.25", "n_pred", "n_gold"):
            assert key in rp[kind], (kind, key)
    assert rp["walls"]["n_gold"] >= 4 * n_val  # every synthetic room has at least 4 walls
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == n_val and all(r["task"] == "roomplan" and r["roomplan"] for r in rows)
    assert metrics["info"]["max_new_tokens"] is None  # the layout budget came from the config
    # re-scoring the predictions file gives the same layout metrics, without the model
    assert vqkit_main(["eval", "--predictions", str(out / "predictions.jsonl"), "--out", str(tmp_path / "re"),
                       "--no-language-metrics"]) == 0
    assert json.loads((tmp_path / "re" / "metrics.json").read_text())["roomplan"] == rp


@pytest.mark.slow
def test_ask_roomplan_writes_the_layout_a_model_learned(synth_dir, tmp_path, capsys):
    """Overfit one room (no geometry, like `vqkit ask` photos) until the model writes its layout
    exactly; `vqkit ask --roomplan` must then return that room as CapturedRoom JSON."""
    from vqkit.train import run

    rec = json.loads((synth_dir / "roomplan_val.jsonl").read_text().splitlines()[0])
    rec["geom_token"] = None
    one = synth_dir / "roomplan_one_room_no_geometry.jsonl"  # next to the images it names
    one.write_text(json.dumps(rec) + "\n")
    gold = Room.from_capturedroom(rec["roomplan"])
    cfg = config_from_dict(tiny_config(synth_dir, tmp_path / "run", one, one, train__max_steps=150,
                                       train__batch_size_per_gpu=1, train__lr=1e-2, train__proj_lr=1e-2,
                                       train__log_every_steps=50,
                                       eval__roomplan_max_new_tokens=len(gold.to_text()) + 8))
    run(cfg, progress=False)
    images = [str(synth_dir / p) for p in rec["images"]]
    out = tmp_path / "room.json"
    # --no-geometry: the room was trained without its cameras, and the synthetic views have a cameras.json
    # beside them that `vqkit ask` would otherwise use (a different prompt than the one trained on).
    assert vqkit_main(["ask", "--model", str(tmp_path / "run" / "final"), "--images", *images,
                       "--roomplan", "--no-geometry", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    room = Room.from_capturedroom(json.loads(out.read_text()))
    assert room.to_text() == gold.to_text(), err
    assert "parse problem" not in err and f"{len(gold.walls)} walls" in err
