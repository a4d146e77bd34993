"""The training step: the loss weighted per label token across micro-batches and ranks, so the
accumulated gradient is the one of a single forward/backward over the whole global batch, and one
non-finite check per step that skips it everywhere. Packed micro-batches (``data.packing``: each
micro-batch's samples in one row) give the same loss and gradients as the unpacked batch, for answers
of one question, of several turns (``data.turns``), layouts and a mix, in one process and in two.

Gradients are read as the update of plain SGD at lr 1 (before - after): what reaches the optimizer,
under DDP and DeepSpeed alike. The micro-batches mix one-word QA answers with Stage 2 layouts of
hundreds of tokens, so averaging micro-batch means would be far off (checked).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import REPO, tiny_train_config

from vqkit.config import config_from_dict
from vqkit.data.collate import Collator
from vqkit.data.dataset import build_dataset
from vqkit.models.builder import build_model
from vqkit.models.vqmodel import VQModel
from vqkit.train.step import label_tokens, train_step

TOLERANCE = 1e-6  # fp32
PACKED_TOLERANCE = 1e-5  # fp32: packed rows sum the same terms in another order

# Micro-batches of the 1-process tests as (source, index) lists: short QA answers, one layout, a mix.
ONE_PROCESS = [[("qa", 0), ("qa", 1), ("qa", 2), ("qa", 3)], [("room", 0)], [("room", 1), ("qa", 4)]]
# Each rank's 3 micro-batches in the 2-process tests (grad_accum 3 on 2 ranks).
TWO_PROCESSES = [
    [[("qa", 0), ("qa", 1), ("qa", 2)], [("room", 0)], [("qa", 3), ("room", 1)]],
    [[("room", 2)], [("qa", 4), ("qa", 5), ("qa", 6), ("qa", 7)], [("room", 3), ("room", 4)]],
]


def step_config(synth_dir: Path, run_dir: Path, **train) -> dict:
    """The tiny model over QA and layout records: no dropout anywhere, fp32, no clipping."""
    cfg = tiny_train_config(synth_dir, run_dir, grad_accum=3, max_grad_norm=0.0, mixed_precision="no", **train)
    cfg["model"]["lora"]["dropout"] = 0.0
    cfg["model"]["llm"]["config_overrides"]["max_position_embeddings"] = 1024
    cfg["data"].update(train=[{"path": str(synth_dir / "train.jsonl")},
                              {"path": str(synth_dir / "roomplan_train.jsonl")}],
                       view_dropout=0.0, max_length=640)
    return cfg


def collated(cfg, groups, pack: bool | None = None) -> tuple[list[dict], dict]:
    """(micro-batches, the whole batch of their samples, unpacked) for ``groups`` of (source, index); the
    micro-batches are packed when ``pack`` (default: ``data.packing``)."""
    from vqkit.tokenizer import load_tokenizer

    dataset = build_dataset(cfg.data, "train", geometry_cfg=cfg.model.geometry, seed=cfg.train.seed)
    sources = {"qa": dataset.datasets[0], "room": dataset.datasets[1]}
    tokenizer = load_tokenizer(cfg.model.llm)
    collator = Collator(tokenizer, cfg.model, cfg.data, mode="train", blind=cfg.data.blind)
    packer = Collator(tokenizer, cfg.model, cfg.data, mode="train", blind=cfg.data.blind, pack=True)
    pack = cfg.data.packing if pack is None else pack
    samples = [[sources[source][i] for source, i in group] for group in groups]
    whole = collator([s for group in samples for s in group])
    return [(packer if pack else collator)(group) for group in samples], whole


def trainable(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.trainable_state_dict().items()}


def sgd_update(model, run) -> dict[str, torch.Tensor]:
    """before - after of the trainable weights around ``run(model, optimizer)`` with SGD at lr 1."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    before = trainable(model)
    run(model, optimizer)
    after = trainable(model)
    return {k: before[k] - after[k] for k in before}


def one_big_batch(model, whole: dict) -> tuple[dict[str, torch.Tensor], float]:
    """The reference: one forward/backward over the whole batch (mean over all its label tokens)."""
    loss = {}

    def run(m, optimizer):
        out = m(whole)
        out.loss.backward()
        loss["value"] = float(out.loss.detach())
        optimizer.step()

    return sgd_update(copy.deepcopy(model), run), loss["value"]


def max_difference(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def setup(synth_dir, tmp_path_factory):
    cfg = config_from_dict(step_config(synth_dir, tmp_path_factory.mktemp("step") / "run"))
    micro_batches, whole = collated(cfg, ONE_PROCESS)
    model = build_model(cfg).eval()  # eval: no dropout; gradients are still taken
    return cfg, model, micro_batches, whole


def test_micro_batches_have_very_different_answer_lengths(setup):
    _, _, micro_batches, whole = setup
    counts = [label_tokens(b) for b in micro_batches]
    assert min(counts) * 20 < max(counts), counts
    assert sum(counts) == label_tokens(whole) == int((whole["labels"][:, 1:] != -100).sum())


def test_accumulated_gradient_equals_one_big_batch(setup):
    _, model, micro_batches, whole = setup
    reference, reference_loss = one_big_batch(model, whole)
    result = {}

    def step(m, optimizer):
        result["step"] = train_step(m, optimizer, micro_batches)

    update = sgd_update(copy.deepcopy(model), step)
    assert max_difference(update, reference) <= TOLERANCE
    assert not result["step"].skipped and result["step"].global_tokens == label_tokens(whole)
    assert abs(result["step"].loss - reference_loss) <= TOLERANCE

    # The per-micro-batch means stay available: each is the model's own loss on that micro-batch, and
    # their plain average is not the step's loss.
    with torch.no_grad():
        own = [float(model(batch).loss) for batch in micro_batches]
    means = result["step"].micro_batch_losses
    assert len(means) == 3 and all(abs(a - b) <= TOLERANCE for a, b in zip(means, own, strict=True))
    assert abs(sum(means) / 3 - result["step"].loss) > 1000 * TOLERANCE

    # The old weighting (mean of the micro-batch means) is far from the big batch's gradient.
    def mean_of_means(m, optimizer):
        for batch in micro_batches:
            (m(batch).loss / len(micro_batches)).backward()
        optimizer.step()

    assert max_difference(sgd_update(copy.deepcopy(model), mean_of_means), reference) > 1000 * TOLERANCE


def test_accelerate_accumulation_equals_one_big_batch(setup):
    """The training run's path: accelerate divides each backward by grad_accum; the step undoes it."""
    from vqkit.train.accelerator import make_accelerator

    cfg, model, micro_batches, whole = setup
    reference, reference_loss = one_big_batch(model, whole)
    accelerator = make_accelerator(cfg)
    result = {}

    def step(m, optimizer):
        prepared, prepared_optimizer = accelerator.prepare(m, optimizer)
        result["step"] = train_step(prepared, prepared_optimizer, micro_batches, accelerator=accelerator)

    update = sgd_update(copy.deepcopy(model), step)
    accelerator.free_memory()
    assert max_difference(update, reference) <= TOLERANCE
    assert abs(result["step"].loss - reference_loss) <= TOLERANCE


def test_a_micro_batch_without_label_tokens_adds_nothing(setup):
    _, model, micro_batches, _ = setup
    first_two, whole = collated(setup[0], ONE_PROCESS[:2])
    empty = dict(micro_batches[2], labels=torch.full_like(micro_batches[2]["labels"], -100))
    reference, _ = one_big_batch(model, whole)
    result = {}

    def step(m, optimizer):
        result["step"] = train_step(m, optimizer, [*first_two, empty])

    update = sgd_update(copy.deepcopy(model), step)
    assert max_difference(update, reference) <= TOLERANCE
    assert math.isnan(result["step"].micro_batch_losses[2]) and not result["step"].skipped


def test_non_finite_loss_skips_the_whole_step(setup, monkeypatch):
    _, model, micro_batches, _ = setup
    real_forward = VQModel.forward
    calls = []

    def forward(self, batch):
        out = real_forward(self, batch)
        calls.append(1)
        if len(calls) == 2:
            out.loss = out.loss * float("inf")
        return out

    monkeypatch.setattr(VQModel, "forward", forward)
    copied = copy.deepcopy(model)
    result = {}

    def step(m, optimizer):
        result["step"] = train_step(m, optimizer, micro_batches)

    update = sgd_update(copied, step)
    assert result["step"].skipped and len(calls) == 3
    assert all(float(d.abs().max()) == 0.0 for d in update.values())
    assert all(p.grad is None for p in copied.parameters())


# --------------------------------------------------------------------------------------------
# Packed micro-batches == the unpacked batch
# --------------------------------------------------------------------------------------------

PACKED_CASES = {
    "qa": [[("qa", 0), ("qa", 1), ("qa", 2), ("qa", 3)], [("qa", 4), ("qa", 5)]],
    "turns": [[("qa", 0), ("qa", 9), ("qa", 17)], [("qa", 30), ("qa", 41)]],
    "layouts": [[("room", 0), ("room", 1)], [("room", 2)]],
    "mix": ONE_PROCESS,
    "blind": [[("qa", 0), ("qa", 1), ("qa", 2)], [("room", 0), ("qa", 3)]],  # text only: the blind baseline
}


@pytest.mark.parametrize("case", list(PACKED_CASES))
def test_packed_step_equals_the_unpacked_batch(synth_dir, tmp_path, case):
    data = step_config(synth_dir, tmp_path / "run")
    data["train"]["grad_accum"] = len(PACKED_CASES[case])
    if case == "turns":
        data["data"]["turns"] = 4  # up to 3 more questions about the same room in a sample, each masked
    data["data"]["blind"] = case == "blind"
    cfg = config_from_dict(data)
    packed, whole = collated(cfg, PACKED_CASES[case], pack=True)
    assert all(b["input_ids"].shape[0] == 1 and int(b["attention_mask"].sum()) == b["input_ids"].numel()
               for b in packed)  # one row, no padding
    assert ("turn_of" in whole) == (case == "turns")
    model = build_model(cfg).eval()
    reference, reference_loss = one_big_batch(model, whole)
    result = {}

    def step(m, optimizer):
        result["step"] = train_step(m, optimizer, packed)

    update = sgd_update(copy.deepcopy(model), step)
    assert result["step"].global_tokens == label_tokens(whole)
    assert abs(result["step"].loss - reference_loss) <= PACKED_TOLERANCE
    assert max_difference(update, reference) <= PACKED_TOLERANCE


def test_packed_samples_do_not_see_each_other(setup):
    """Changing one sample of a packed row changes no other sample's loss (attention stays inside each)."""
    cfg, model, _, _ = setup
    packed, _ = collated(cfg, [[("qa", 0), ("room", 0), ("qa", 1)]], pack=True)
    batch = packed[0]
    first, second = batch["cu_seqlens"][1:3].tolist()
    altered = dict(batch, images=batch["images"].clone())
    altered["images"][1] = 1.0 - altered["images"][1]  # the layout sample's views: its vision tokens
    with torch.no_grad():
        a, b = model(batch).logits, model(altered).logits
    labelled = (batch["labels"][0, 1:] != -100).nonzero().flatten()  # the positions the logits are kept at
    outside = (labelled < first - 1) | (labelled >= second - 1)
    assert torch.equal(a[0, outside], b[0, outside])
    assert not torch.equal(a[0, ~outside], b[0, ~outside])


# --------------------------------------------------------------------------------------------
# Two processes (torchrun, gloo) == one process holding both halves
# --------------------------------------------------------------------------------------------

_WORKER = """
import contextlib, json, sys
from pathlib import Path

sys.path[:0] = [sys.argv[1], sys.argv[1] + "/train"]
import torch
from safetensors.torch import save_file

from test_step import TWO_PROCESSES, collated
from vqkit.config import config_from_dict
from vqkit.models.builder import build_model
from vqkit.models.vqmodel import VQModel
from vqkit.train.accelerator import gather_trainable, make_accelerator, uses_deepspeed
from vqkit.train.step import train_step

cfg = config_from_dict(json.loads(Path(sys.argv[2]).read_text()))
out = Path(sys.argv[3])
accelerator = make_accelerator(cfg)
rank = accelerator.process_index
micro_batches, _ = collated(cfg, TWO_PROCESSES[rank])
model = build_model(cfg).eval()
optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
prepared, optimizer = accelerator.prepare(model, optimizer)
core = accelerator.unwrap_model(prepared)
def gathered():  # a copy: without ZeRO-3 the state dict shares the CPU parameters' memory
    state = gather_trainable(accelerator, core)
    return {k: v.clone() for k, v in state.items()} if state is not None else None
def every_parameter():  # frozen ones too (ZeRO-3 partitions them all): the model the ranks ran
    named = list(core.named_parameters())
    gather = (deepspeed.zero.GatheredParameters([p for _, p in named]) if zero3 else contextlib.nullcontext())
    with gather:
        return {n: p.detach().clone() for n, p in named}
zero3 = uses_deepspeed(accelerator) and accelerator.state.deepspeed_plugin.zero_stage == 3
if zero3:
    import deepspeed
weights = {"before": gathered()}

# Step 1: rank 1's second micro-batch has a NaN loss: every rank skips, nothing is left behind.
real_forward, calls = VQModel.forward, []
def forward(self, batch):
    result = real_forward(self, batch)
    calls.append(1)
    if rank == 1 and len(calls) == 2:
        result.loss = result.loss * float("nan")
    return result
VQModel.forward = forward
results = [train_step(prepared, optimizer, micro_batches, accelerator=accelerator)]
weights["after_skip"] = gathered()
VQModel.forward = real_forward
# Step 2: the same micro-batches again, finite.
results.append(train_step(prepared, optimizer, micro_batches, accelerator=accelerator))
weights["after_step"] = gathered()
weights["model"] = every_parameter()  # last: gathering frozen ZeRO-3 parameters upsets later forwards

info = {"results": [r.__dict__ for r in results]}
if uses_deepspeed(accelerator):
    engine = accelerator.deepspeed_engine_wrapped.engine
    info.update(global_steps=engine.global_steps, skipped_steps=engine.skipped_steps)
(out / f"rank{rank}.json").write_text(json.dumps(info))
if rank == 0:
    save_file({f"{name}/{k}": v for name, state in weights.items() for k, v in state.items()},
              str(out / "weights.safetensors"))
accelerator.end_training()
"""


def _two_processes(synth_dir: Path, tmp_path: Path, deepspeed: str | None, packing: bool = False) -> None:
    from safetensors.torch import load_file

    data = step_config(synth_dir, tmp_path / "run", **({"deepspeed": str(REPO / deepspeed)} if deepspeed else {}))
    data["data"]["packing"] = packing
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(data))
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(REPO / "tests"), str(config), str(tmp_path)],
                          check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    cfg = config_from_dict(data)
    model = build_model(cfg).eval()
    saved = load_file(str(tmp_path / "weights.safetensors"))
    weights = {name: {k.split("/", 1)[1]: v for k, v in saved.items() if k.startswith(name + "/")}
               for name in ("model", "before", "after_skip", "after_step")}
    assert max_difference(weights["before"], trainable(model)) == 0.0  # the same trainable start
    # The reference runs the ranks' frozen weights. Under ZeRO-3, transformers builds a from_config LLM
    # inside deepspeed.zero.Init, which draws other random weights for its (frozen) base than a plain build.
    with torch.no_grad():
        named = dict(model.named_parameters())
        assert set(named) == set(weights["model"])
        for name, param in named.items():
            if not param.requires_grad:
                param.copy_(weights["model"][name])
    _, whole = collated(cfg, [group for rank in TWO_PROCESSES for group in rank], pack=False)
    reference, reference_loss = one_big_batch(model, whole)
    assert max_difference(weights["after_skip"], weights["before"]) == 0.0
    update = {k: weights["before"][k] - weights["after_step"][k] for k in reference}
    tolerance = PACKED_TOLERANCE if packing else TOLERANCE
    assert max_difference(update, reference) <= tolerance

    infos = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for info in infos:
        skip, step = info["results"]
        assert skip["skipped"] and not step["skipped"]
        assert step["global_tokens"] == label_tokens(whole)
        assert step["global_samples"] == whole["view_mask"].shape[0]
        assert abs(step["loss"] - reference_loss) <= tolerance
    assert infos[0]["results"][1]["loss"] == infos[1]["results"][1]["loss"]
    if deepspeed:  # the engine counted the skipped step as DeepSpeed counts an overflow
        assert [(i["global_steps"], i["skipped_steps"]) for i in infos] == [(2, 1), (2, 1)]


@pytest.mark.slow
@pytest.mark.ci
def test_two_process_ddp_equals_one_process(synth_dir, tmp_path):
    _two_processes(synth_dir, tmp_path, None)


@pytest.mark.slow
@pytest.mark.parametrize("deepspeed", ["configs/deepspeed/zero2.json", "configs/deepspeed/zero3.json"])
def test_two_process_deepspeed_equals_one_process(synth_dir, tmp_path, deepspeed):
    _two_processes(synth_dir, tmp_path, deepspeed)


@pytest.mark.slow
@pytest.mark.parametrize("deepspeed", [None, "configs/deepspeed/zero2.json"], ids=["ddp", "zero2"])
def test_two_process_packed_equals_one_unpacked_batch(synth_dir, tmp_path, deepspeed):
    _two_processes(synth_dir, tmp_path, deepspeed, packing=True)
