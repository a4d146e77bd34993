import pickle

import pytest
import torch

from vqkit.config import DataConfig, ModelConfig
from vqkit.data.collate import IGNORE_INDEX, Collator
from vqkit.data.dataset import build_dataset
from vqkit.tokenizer import vision_token_count, vision_token_ids

SEED_TEMPLATE = "{question}\n<image>\n{answer}"


def _model(latents=5, geometry=True) -> ModelConfig:
    m = ModelConfig()
    m.projector.num_latents = latents
    m.geometry.enabled = geometry
    return m


def _samples(corpus, **kw):
    ds = build_dataset(DataConfig(image_size=28, num_views=2, **kw), "val", sources=[str(corpus.path)])
    return [ds[i] for i in range(len(ds))]


@pytest.fixture(params=["tiny", "qwen"])
def tokenizer(request, tiny_tokenizer):
    if request.param == "tiny":
        return tiny_tokenizer
    return request.getfixturevalue("qwen_tokenizer")


@pytest.mark.parametrize("template", ["chat", SEED_TEMPLATE])
def test_label_span_is_answer_plus_end_token(tokenizer, tiny_records, template):
    samples = _samples(tiny_records)
    col = Collator(tokenizer, _model(), DataConfig(prompt_template=template, max_length=256))
    batch = col(samples)
    end = "<|im_end|>" if template == "chat" else tokenizer.eos_token
    for b, s in enumerate(samples):
        labels = batch["labels"][b]
        span = labels[labels != IGNORE_INDEX]
        assert tokenizer.decode(span) == s["answer"] + end
        # The labelled tokens are the last real tokens (right padding after them).
        n = int(batch["attention_mask"][b].sum())
        assert torch.equal(batch["input_ids"][b, n - len(span):n], span)
        assert torch.all(batch["attention_mask"][b, :n] == 1) and torch.all(batch["attention_mask"][b, n:] == 0)
        assert torch.all(batch["input_ids"][b, n:] == tokenizer.pad_token_id)


@pytest.mark.parametrize("geometry", [True, False])
def test_vision_placeholders_match_the_model(tokenizer, tiny_records, geometry):
    samples = _samples(tiny_records)
    model = _model(latents=7, geometry=geometry)
    batch = Collator(tokenizer, model, DataConfig(prompt_template="chat"))(samples)
    vt = vision_token_ids(tokenizer)
    for b, s in enumerate(samples):
        ids = batch["input_ids"][b].tolist()
        n = vision_token_count(model, s["R"].shape[0], s["has_geometry"])
        assert ids.count(vt.pad_id) == n and ids.count(vt.start_id) == 1 and ids.count(vt.end_id) == 1
        start = ids.index(vt.start_id)
        assert ids[start + 1:start + 1 + n] == [vt.pad_id] * n and ids[start + 1 + n] == vt.end_id
    # 2 views with geometry -> 7 + 2; the record in the original format (no geometry) -> 7.
    assert [m["num_vision_tokens"] for m in batch["meta"]] == ([9, 9, 9, 7] if geometry else [7] * 4)
    assert batch["geom_mask"].tolist() == [True, True, True, False]


def test_seed_template_is_reproduced_exactly(tiny_tokenizer, tiny_records):
    samples = _samples(tiny_records)
    batch = Collator(tiny_tokenizer, _model(latents=3), DataConfig(prompt_template=SEED_TEMPLATE))(samples)
    s = samples[3]  # no geometry: 3 placeholders
    n = int(batch["attention_mask"][3].sum())
    text = tiny_tokenizer.decode(batch["input_ids"][3, :n])
    block = "<|vision_start|>" + "<|image_pad|>" * 3 + "<|vision_end|>"
    assert text == f"{s['question']}\n{block}\n{s['answer']}<|endoftext|>"


def test_chat_prompt_with_system_and_situation(qwen_tokenizer, tiny_records):
    tok = qwen_tokenizer
    samples = _samples(tiny_records)
    samples[0]["situation"] = "I am sitting on the bed."
    col = Collator(tok, _model(latents=2), DataConfig(prompt_template="chat", system_prompt="Be brief."))
    batch = col(samples[:1])
    text = tok.decode(batch["input_ids"][0])
    block = "<|vision_start|>" + "<|image_pad|>" * 4 + "<|vision_end|>"
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nI am sitting on the bed. "
                    f"{samples[0]['question']}\n{block}<|im_end|>\n<|im_start|>assistant\n"
                    f"{samples[0]['answer']}<|im_end|>")


def test_situation_placeholder_in_a_template(tiny_tokenizer, tiny_records):
    samples = _samples(tiny_records)[:1]
    samples[0]["situation"] = "Facing the bed."
    col = Collator(tiny_tokenizer, _model(latents=1, geometry=False),
                   DataConfig(prompt_template="Situation: {situation}\nQ: {question}\n<image>\nA: {answer}"))
    text = tiny_tokenizer.decode(col(samples)["input_ids"][0])
    assert text.startswith(f"Situation: Facing the bed.\nQ: {samples[0]['question']}\n<|vision_start|>")
    assert text.endswith(f"<|vision_end|>\nA: {samples[0]['answer']}<|endoftext|>")


def test_truncation_cuts_text_only_and_is_counted(tokenizer, tiny_records):
    samples = _samples(tiny_records)
    samples[0]["situation"] = "I am standing in the room near the door and looking at the window. " * 4
    full = Collator(tokenizer, _model(latents=20), DataConfig(prompt_template="chat", max_length=512))(samples)
    lengths = full["attention_mask"].sum(1)
    limit = int(lengths[1:].max()) + 2  # record 0 (long situation) must be cut; the others fit
    batch = Collator(tokenizer, _model(latents=20), DataConfig(prompt_template="chat", max_length=limit))(samples)
    assert batch["num_truncated"] == 1 and batch["num_overlong"] == 0
    assert int(batch["attention_mask"][0].sum()) == limit
    ids = batch["input_ids"][0].tolist()
    vt = vision_token_ids(tokenizer)
    assert ids.count(vt.pad_id) == 22
    labels = batch["labels"][0]
    assert tokenizer.decode(labels[labels != IGNORE_INDEX]) == samples[0]["answer"] + "<|im_end|>"
    text = tokenizer.decode(ids[:limit])
    assert samples[0]["question"] in text and text.startswith("<|im_start|>user\n")  # the situation's start went
    assert torch.equal(batch["input_ids"][1:], full["input_ids"][1:, :batch["input_ids"].shape[1]])
    # Not even the vision block and the answer fit: the sample is kept whole and counted.
    tight = Collator(tokenizer, _model(latents=40), DataConfig(prompt_template="chat", max_length=30))(samples)
    assert tight["num_overlong"] == 4 and tight["num_truncated"] == 4
    assert all(tight["input_ids"][b].tolist().count(vt.pad_id) >= 40 for b in range(4))


def test_generate_mode_left_pads_prompts(tokenizer, tiny_records):
    samples = _samples(tiny_records)
    samples[1]["question"] = "A much longer question about the chairs and the tables in this room?"
    batch = Collator(tokenizer, _model(), DataConfig(prompt_template="chat"), mode="generate")(samples)
    assert batch["labels"] is None
    assert torch.all(batch["attention_mask"][:, -1] == 1)  # every prompt ends at the last column
    lengths = batch["attention_mask"].sum(1)
    assert lengths[1] == batch["input_ids"].shape[1] and lengths.min() < lengths.max()
    b = int(torch.argmin(lengths))
    assert torch.all(batch["input_ids"][b, : batch["input_ids"].shape[1] - lengths[b]] == tokenizer.pad_token_id)
    text = tokenizer.decode(batch["input_ids"][b, -int(lengths[b]):])
    assert text.endswith("<|im_start|>assistant\n") and samples[b]["answer"] not in text.split("assistant")[-1]
    assert [m["answers"] for m in batch["meta"]][0] == [samples[0]["answer"]]


def test_blind_mode_has_no_vision_block(tiny_tokenizer, tiny_records):
    samples = _samples(tiny_records)
    batch = Collator(tiny_tokenizer, _model(), DataConfig(prompt_template=SEED_TEMPLATE), blind=True)(samples)
    vt = vision_token_ids(tiny_tokenizer)
    assert not any(t in batch["input_ids"] for t in (vt.start_id, vt.pad_id, vt.end_id))
    assert [m["num_vision_tokens"] for m in batch["meta"]] == [0] * 4
    assert batch["images"].shape[0] == 4  # images still travel (the model ignores them when blind)


def test_images_and_geometry_are_padded(tiny_tokenizer, tiny_records):
    samples = _samples(tiny_records)
    # Drop a view from sample 1 and give sample 2 a smaller image to force padding both ways.
    for key in ("images", "R", "t", "K", "depth_hist"):
        samples[1][key] = samples[1][key][:1]
    samples[2]["images"] = samples[2]["images"][:, :, 7:21, :]
    batch = Collator(tiny_tokenizer, _model(), DataConfig(prompt_template=SEED_TEMPLATE))(samples)
    assert batch["images"].shape == (4, 2, 3, 28, 28)
    assert batch["view_mask"].tolist() == [[True, True], [True, False], [True, True], [True, True]]
    assert torch.all(batch["images"][1, 1] == 0)  # padding view: zeros
    assert torch.all(batch["images"][2, :, :, :7] == 1.0)  # smaller image: white band, centred
    assert torch.equal(batch["images"][2, :, :, 7:21], samples[2]["images"])
    assert batch["geometry"]["K"][2, 0, 1, 2] == pytest.approx(samples[2]["K"][0, 1, 2].item() + 7)
    assert batch["geometry"]["image_hw"] == (28, 28)
    assert torch.all(batch["geometry"]["R"][3] == 0) and batch["geometry"]["depth_hist"].shape == (4, 2, 16)
    assert batch["num_skipped"] == 0


def test_collator_pickles_for_workers(tiny_tokenizer, tiny_records):
    col = Collator(tiny_tokenizer, _model(), DataConfig(prompt_template="chat"))
    samples = _samples(tiny_records)
    again = pickle.loads(pickle.dumps(col))
    assert torch.equal(again(samples)["input_ids"], col(samples)["input_ids"])


def test_remembered_tokens_give_the_same_batches(tokenizer, tiny_records, monkeypatch):
    """The collator remembers the tokens of each text it met; a batch built from remembered tokens,
    truncated or not, equals one from a fresh collator, and the memory stays within its bound."""
    samples = _samples(tiny_records)
    samples[0]["situation"] = "I am standing in the room near the door and looking at the window. " * 4
    cfg = DataConfig(prompt_template="chat", max_length=60)
    col = Collator(tokenizer, _model(), cfg)
    first = col(samples)
    assert first["num_truncated"] >= 1 and col._token_cache
    for again in (col(samples), Collator(tokenizer, _model(), cfg)(samples)):
        assert torch.equal(again["input_ids"], first["input_ids"]) and torch.equal(again["labels"], first["labels"])
    monkeypatch.setattr("vqkit.data.collate._TOKEN_CACHE_SIZE", 2)
    small = Collator(tokenizer, _model(), cfg)
    assert torch.equal(small(samples)["input_ids"], first["input_ids"]) and len(small._token_cache) <= 2


@pytest.mark.parametrize("template", ["chat", SEED_TEMPLATE])
def test_turns_pack_questions_about_the_same_views(tokenizer, corpus, template):
    """data.turns: record 0 and the two records that share its views become one sample of three
    turns; every answer (and its end token) is labelled, and nothing else."""
    cfg = DataConfig(image_size=28, num_views=3, prompt_template=template, max_length=512, turns=3)
    ds = build_dataset(cfg, "train", sources=[str(corpus.path)])
    assert len(ds) == 8  # still one item per record: each record leads once per epoch
    sample = ds[0]
    assert len(sample["turns"]) == 2
    assert {t["question"] for t in sample["turns"]} == {ds.records[6].question, ds.records[7].question}
    assert {t["answer"] for t in sample["turns"]} == {ds.records[6].target_text(), ds.records[7].target_text()}
    assert ds[1].get("turns") == []  # a record with views of its own has no other turns
    col = Collator(tokenizer, _model(latents=2), cfg)
    batch = col([sample])
    end = "<|im_end|>" if template == "chat" else tokenizer.eos_token
    labels = batch["labels"][0]
    labelled = tokenizer.decode(labels[labels != IGNORE_INDEX])
    assert labelled == "".join(a + end for a in [sample["answer"]] + [t["answer"] for t in sample["turns"]])
    text = tokenizer.decode(batch["input_ids"][0])
    vt = vision_token_ids(tokenizer)
    assert batch["input_ids"][0].tolist().count(vt.start_id) == 1  # the views once, in the first turn
    follow = "\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>" if template == "chat" \
        else "{q}\n\n{a}" + tokenizer.eos_token
    assert text.endswith("".join(follow.format(q=t["question"], a=t["answer"]) for t in sample["turns"]))
    # Turn numbers for the model's mask: 0 the shared prompt (through the views), 1 the first answer,
    # then each follow-up's question and answer.
    turn_of = batch["turn_of"][0].tolist()
    n_prompt = turn_of.count(0)
    assert turn_of == sorted(turn_of) and set(turn_of) == {0, 1, 2, 3}
    assert all(labels[i] == IGNORE_INDEX for i in range(n_prompt))
    assert tokenizer.decode(batch["input_ids"][0, :n_prompt]).endswith(
        "<|vision_end|><|im_end|>\n<|im_start|>assistant\n" if template == "chat" else "<|vision_end|>\n")
    assert "turn_of" not in col(_samples(corpus)[:2])  # single-turn batches keep the plain mask
    # Evaluation and generation never see the other turns.
    assert build_dataset(cfg, "val", sources=[str(corpus.path)])[0].get("turns") is None
    gen = Collator(tokenizer, _model(latents=2), cfg, mode="generate")([sample])
    assert gen["input_ids"][0].tolist().count(vt.start_id) == 1 and gen["labels"] is None
    assert tokenizer.decode(gen["input_ids"][0]).count(sample["question"]) == 1


def test_turns_that_do_not_fit_are_left_out_whole(tiny_tokenizer, corpus):
    cfg = DataConfig(image_size=28, num_views=3, prompt_template=SEED_TEMPLATE, max_length=512, turns=3)
    sample = build_dataset(cfg, "train", sources=[str(corpus.path)])[0]
    full = Collator(tiny_tokenizer, _model(latents=2), cfg)([sample])
    one = Collator(tiny_tokenizer, _model(latents=2), cfg)([dict(sample, turns=sample["turns"][:1])])
    n_full, n_one = int(full["attention_mask"].sum()), int(one["attention_mask"].sum())
    # A budget one token short of the three turns keeps the first two, whole.
    short = DataConfig(image_size=28, num_views=3, prompt_template=SEED_TEMPLATE, max_length=n_full - 1, turns=3)
    batch = Collator(tiny_tokenizer, _model(latents=2), short)([sample])
    assert torch.equal(batch["input_ids"][0, :n_one], one["input_ids"][0, :n_one])
    assert int(batch["attention_mask"].sum()) == n_one and batch["num_truncated"] == 0


@pytest.mark.parametrize("template", ["chat", SEED_TEMPLATE])
def test_a_samples_own_view_place_and_system_message(tokenizer, tiny_records, template):
    sample = _samples(tiny_records)[0]
    sample.update(question="Look at the room.\nIs there a bed?", vision_at=len("Look at the room."),
                  system="Answer in one word.")
    col = Collator(tokenizer, _model(latents=2), DataConfig(prompt_template=template, system_prompt="Be brief."))
    text = tokenizer.decode(col([sample])["input_ids"][0])
    block = "<|vision_start|>" + "<|image_pad|>" * 4 + "<|vision_end|>"
    assert f"Look at the room.\n{block}\nIs there a bed?" in text
    assert "Answer in one word." in text and "Be brief." not in text
    sample.update(question="Is there a bed?", vision_at=0)
    text = tokenizer.decode(col([sample])["input_ids"][0])
    if template == "chat":
        assert f"<|im_start|>user\n{block}\nIs there a bed?<|im_end|>" in text
    else:
        assert text.startswith(f"Answer in one word.\n{block}\nIs there a bed?\n")


def test_depth_maps_come_with_cached_features_too(tmp_path):
    """Samples of cached features (no images) keep their depth maps in the batch (the patch merger's 3D
    points read them)."""
    import torch

    from vqkit.data.collate import collate_views

    def sample(depth: float) -> dict:
        return {"features": torch.zeros(2, 5, 4), "image_hw": (28, 28), "depths": torch.full((2, 28, 28), depth),
                "R": torch.eye(3).expand(2, 3, 3), "t": torch.zeros(2, 3), "K": torch.eye(3).expand(2, 3, 3),
                "depth_hist": torch.zeros(2, 4), "has_geometry": True, "pixel_box": torch.tensor([[0, 0, 28, 28]] * 2)}

    batch = collate_views([sample(1.5), sample(2.5)])
    assert batch["depths"].shape == (2, 2, 28, 28)
    assert float(batch["depths"][0].mean()) == 1.5 and float(batch["depths"][1].mean()) == 2.5
