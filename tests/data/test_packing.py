"""Packing and batches measured in tokens: one row per micro-batch whose samples keep their own positions,
labels and turns; a sample's token count known before its images are loaded; first-fit-decreasing over a
bounded buffer, deterministic per epoch and skippable on resume."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_train_config

from vqkit.config import config_from_dict
from vqkit.data.collate import Collator
from vqkit.data.dataset import ShardedSampler, build_dataloader, build_dataset
from vqkit.data.packing import (
    TokenBatchSampler,
    first_fit_decreasing,
    micro_batch_cost,
    pack_tokens,
    sample_token_stats,
)
from vqkit.errors import ConfigError
from vqkit.tokenizer import load_tokenizer
from vqkit.train.step import label_tokens


def qa_config(synth_dir, tmp_path, **data):
    cfg = tiny_train_config(synth_dir, tmp_path / "run")
    cfg["data"].update(data)
    return config_from_dict(cfg)


def test_pack_tokens_restarts_positions_and_keeps_each_sample_whole():
    a = {"input_ids": [5, 6, 7], "labels": [-100, -100, 7], "turn_of": [0, 0, 1]}
    b = {"input_ids": [8, 9], "labels": [9, 9], "turn_of": [0, 1]}  # a labelled first token (never a target)
    c = {"input_ids": [1, 2, 3, 4], "labels": [-100, -100, 3, 4], "turn_of": [0, 1, 2, 2]}
    packed = pack_tokens([a, b])
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert packed["cu_seqlens"].tolist() == [0, 3, 5]
    assert packed["attention_mask"].tolist() == [[1] * 5]
    # b's first label would be the target of a's last position: packed, it is none, as in its own row
    assert packed["labels"].tolist() == [[-100, -100, 7, -100, 9]]
    assert "turn_of" not in packed
    assert pack_tokens([a, c])["turn_of"].tolist() == [[0, 0, 1, 0, 1, 2, 2]]


def test_packing_collator_keeps_the_views_and_drops_the_padding(synth_dir, tmp_path):
    cfg = qa_config(synth_dir, tmp_path, turns=3, view_dropout=0.5)
    dataset = build_dataset(cfg.data, "train", geometry_cfg=cfg.model.geometry, seed=cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model.llm)
    samples = [dataset[i] for i in range(5)]
    padded = Collator(tokenizer, cfg.model, cfg.data)(samples)
    packed = Collator(tokenizer, cfg.model, cfg.data, pack=True)(samples)
    for key in ("images", "view_mask", "geom_mask", "predict_geometry", "pixel_boxes"):
        assert torch.equal(padded[key], packed[key]), key
    for key in ("R", "t", "K", "depth_hist"):
        assert torch.equal(padded["geometry"][key], packed["geometry"][key]), key
    assert [m["id"] for m in padded["meta"]] == [m["id"] for m in packed["meta"]]
    lengths = padded["attention_mask"].sum(dim=1)
    assert packed["cu_seqlens"].tolist() == [0, *lengths.cumsum(0).tolist()]
    real = padded["attention_mask"].bool()
    assert torch.equal(packed["input_ids"][0], padded["input_ids"][real])
    assert torch.equal(packed["turn_of"][0], padded["turn_of"][real])
    assert int((packed["labels"] != -100).sum()) == int((padded["labels"][:, 1:] != -100).sum())
    with pytest.raises(ConfigError, match="only training batches"):
        Collator(tokenizer, cfg.model, cfg.data, mode="generate", pack=True)


@pytest.mark.parametrize("projector", ["perceiver", "patch_merger"])
def test_token_length_is_the_collated_length_without_loading_images(synth_dir, tmp_path, projector):
    data = tiny_train_config(synth_dir, tmp_path / "run")
    data["data"].update(turns=4, view_dropout=0.5, geometry_dropout=0.5, max_length=96)
    data["model"]["projector"]["type"] = projector
    cfg = config_from_dict(data)
    dataset = build_dataset(cfg.data, "train", geometry_cfg=cfg.model.geometry, seed=cfg.train.seed)
    collator = Collator(load_tokenizer(cfg.model.llm), cfg.model, cfg.data)
    sampler = ShardedSampler(len(dataset), seed=5, epoch=2)
    items = list(sampler)[:40]
    planned = [dataset.item_tokens(item, collator) for item in items]
    collated = [collator([dataset[item]]) for item in items]
    assert planned == [int(batch["attention_mask"].sum()) for batch in collated]
    assert len(set(planned)) > 3  # views, geometry and turns drawn differently per sample
    stats = sample_token_stats(dataset, collator, limit=40)
    first = [collator([dataset[i]]) for i in range(40)]
    assert stats["mean_tokens"] == pytest.approx(sum(int(b["attention_mask"].sum()) for b in first) / 40)
    assert stats["mean_label_tokens"] == pytest.approx(sum(label_tokens(b) for b in first) / 40)


def test_first_fit_decreasing_fills_bins_within_the_budget():
    lengths = [90, 10, 50, 50, 40, 30, 60, 20, 70, 150]
    bins = first_fit_decreasing(lengths, 100, packed=True)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert bins[0] == [9]  # longer than the budget: a bin of its own
    assert all(micro_batch_cost([lengths[i] for i in b], True) <= 100 for b in bins[1:])
    assert len(bins) == 1 + 5  # 420 tokens under the budget fill five bins of 100 (one has 80)
    assert first_fit_decreasing(lengths, 100, packed=True) == bins  # deterministic
    padded = first_fit_decreasing(lengths[:-1], 120, packed=False)
    assert all(micro_batch_cost([lengths[i] for i in b], False) <= 120 for b in padded)


def test_token_batches_cover_the_epoch_once_within_the_budget():
    lengths = {i: 20 + (i * 37) % 80 for i in range(200)}
    sampler = ShardedSampler(200, seed=3)
    batches = list(TokenBatchSampler(sampler, lambda item: lengths[item[1]], 300, packed=True, buffer=16))
    seen = [item[1] for batch in batches for item in batch]
    assert sorted(seen) == list(range(200))
    assert all(sum(lengths[item[1]] for item in batch) <= 300 for batch in batches)
    assert sum(lengths.values()) / (300 * len(batches)) > 0.95  # well filled
    # the order within a batch is the sampler's; the same epoch gives the same batches, another epoch others
    position = {item: k for k, item in enumerate(sampler)}
    assert all([position[i] for i in batch] == sorted(position[i] for i in batch) for batch in batches)
    again = TokenBatchSampler(ShardedSampler(200, seed=3), lambda item: lengths[item[1]], 300, packed=True, buffer=16)
    assert list(again) == batches and len(again) == len(batches)
    again.set_epoch(1)
    assert list(again) != batches
    # a bounded buffer: no sample waits for more than the buffer's worth of samples behind it
    order = [item[1] for item in sampler]
    emitted = 0
    for batch in batches:
        emitted += len(batch)
        assert all(order.index(item[1]) < emitted + 16 for item in batch)


def test_token_batched_loader_resumes_where_it_stopped(synth_dir, tmp_path):
    from accelerate.data_loader import skip_first_batches

    cfg = qa_config(synth_dir, tmp_path, turns=3, view_dropout=0.3)
    tokenizer = load_tokenizer(cfg.model.llm)

    def loader():
        return build_dataloader(cfg, "train", tokenizer, batch_size=4, shuffle=True, epoch=1, pack=True,
                                tokens_per_batch=400)

    batches = list(loader())
    assert all(b["input_ids"].shape[1] <= 400 for b in batches)
    assert len({b["input_ids"].shape[0] for b in batches}) == 1
    assert sum(len(b["meta"]) for b in batches) == len(loader().dataset)
    rest = list(skip_first_batches(loader(), 3))
    assert len(rest) == len(batches) - 3
    for a, b in zip(batches[3:], rest, strict=True):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["images"], b["images"])


def test_tokens_per_batch_must_hold_the_longest_sample(synth_dir, tmp_path):
    data = tiny_train_config(synth_dir, tmp_path / "run", tokens_per_batch=100)
    with pytest.raises(ConfigError, match="tokens_per_batch=100 is less than data.max_length=128"):
        config_from_dict(data)
    data["model"]["llm"]["attn_implementation"] = "eager"
    data["train"]["tokens_per_batch"] = 512
    data["data"]["packing"] = True
    with pytest.raises(ConfigError, match="data.packing keeps packed samples apart"):
        config_from_dict(data)


@pytest.mark.parametrize("template", ["chat", "{question}\n<image>\n{answer}"])
def test_conversation_samples_plan_and_pack_as_they_collate(tmp_path, tiny_tokenizer, template):
    """A conversation file's samples (views inside the question, their own system message, later turns)
    count as many tokens before their images load as collated, and pack into the padded batch's tokens."""
    from conversation_fixtures import gpt, human, photos, write_json

    shots = photos(tmp_path, 3)
    samples = [{"images": shots[:2], "messages": [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Look here.\n<image><image>\nWhat colour is the sofa?"},
        {"role": "assistant", "content": "red"}, {"role": "user", "content": "How many lamps?"},
        {"role": "assistant", "content": "two"}]},
        {"image": shots[2], "conversations": [human("<image>\nIs there a chair?"), gpt("no")]},
        {"image": shots[0], "conversations": [human("Is there a bed?\n<image>"), gpt("yes")]}]
    path = write_json(tmp_path / "conv.json", samples)
    cfg = config_from_dict({"data": {"train": [{"path": str(path)}], "num_views": 2, "image_size": 28,
                                     "prompt_template": template}})
    dataset = build_dataset(cfg.data, "train", sources=cfg.data.train)
    assert len(dataset) == 3 and dataset[0]["vision_at"] and dataset[0]["system"] and dataset[0]["turns"]
    collator = Collator(tiny_tokenizer, cfg.model, cfg.data)
    planned = [dataset.item_tokens(i, collator) for i in range(3)]
    assert planned == [int(collator([dataset[i]])["attention_mask"].sum()) for i in range(3)]
    batch = [dataset[i] for i in range(3)]
    padded = collator(batch)
    packed = Collator(tiny_tokenizer, cfg.model, cfg.data, pack=True)(batch)
    assert packed["cu_seqlens"].tolist() == [0, *torch.tensor(planned).cumsum(0).tolist()]
    assert torch.equal(packed["input_ids"][0], padded["input_ids"][padded["attention_mask"].bool()])
    assert torch.equal(packed["turn_of"][0], padded["turn_of"][padded["attention_mask"].bool()])


@pytest.mark.parametrize("box_frame", ["scene", "first_view"])
def test_grounding_samples_plan_as_they_collate(synth_dir, tmp_path, box_frame):
    """A grounding sample's answer is its box in the frame of the sample's first view (data.box_frame):
    counted before the images load with the views the sample draws, it is the collated length."""
    data = tiny_train_config(synth_dir, tmp_path / "run")
    data["data"].update(train=[{"path": str(synth_dir / "grounding_train.jsonl")}], turns=4, view_dropout=0.5,
                        box_frame=box_frame, max_length=256)
    cfg = config_from_dict(data)
    dataset = build_dataset(cfg.data, "train", geometry_cfg=cfg.model.geometry, seed=cfg.train.seed)
    collator = Collator(load_tokenizer(cfg.model.llm), cfg.model, cfg.data)
    items = list(ShardedSampler(len(dataset), seed=5, epoch=1))[:24]
    planned = [dataset.item_tokens(item, collator) for item in items]
    assert planned == [int(collator([dataset[item]])["attention_mask"].sum()) for item in items]
    packed = build_dataloader(cfg, "train", collator.tokenizer, batch_size=4, shuffle=True, pack=True,
                              tokens_per_batch=4 * cfg.data.max_length)
    assert all(batch["input_ids"].shape[1] <= 4 * cfg.data.max_length for batch in packed)
