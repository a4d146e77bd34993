import json
import random

import pytest

from vqkit.config import Config, LLMConfig
from vqkit.errors import ConfigError
from vqkit.tokenizer import (
    IMAGE_PAD,
    TINY_SPECIAL_TOKENS,
    VISION_END,
    VISION_START,
    answer_end_token,
    load_tokenizer,
    train_tokenizer,
    vision_block_text,
    vision_token_count,
    vision_token_ids,
)

CORPUS = ["What colour is the chair?", "How many tables are there?", "Is there a lamp near the bed?",
          "red", "green", "two", "three", "yes", "no", "chair", "table", "lamp"]


def test_tiny_tokenizer_round_trips_any_text(tiny_tokenizer):
    for text in ["What colour is the chair?", "héllo wörld\n\t🙂 ünseen ∑ bytes", "  leading spaces", "a\r\nb"]:
        ids = tiny_tokenizer.encode(text, add_special_tokens=False)
        assert tiny_tokenizer.decode(ids) == text


def test_tiny_tokenizer_special_tokens_and_template(tiny_tokenizer):
    ids = [tiny_tokenizer.convert_tokens_to_ids(t) for t in TINY_SPECIAL_TOKENS]
    assert ids == list(range(6))
    assert tiny_tokenizer.eos_token == "<|endoftext|>" and tiny_tokenizer.pad_token == "<|endoftext|>"
    vt = vision_token_ids(tiny_tokenizer)
    assert (vt.start_id, vt.pad_id, vt.end_id) == (3, 4, 5)
    # Special tokens stay whole inside text; a vision block of n is n + 2 tokens.
    assert tiny_tokenizer.encode(vision_block_text(7), add_special_tokens=False) == vt.block(7)
    rendered = tiny_tokenizer.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}], add_generation_prompt=True,
        tokenize=False)
    assert rendered == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    assert answer_end_token(tiny_tokenizer, chat=True) == "<|im_end|>"
    assert answer_end_token(tiny_tokenizer, chat=False) == "<|endoftext|>"


def test_corpus_words_become_single_tokens(tmp_path):
    tok = train_tokenizer(CORPUS * 3, tmp_path, vocab_size=512)
    for word in ["red", "green", "three", "chair", "lamp"]:  # answers: texts of their own
        assert len(tok.encode(word, add_special_tokens=False)) == 1, word
    for word in ["colour", "chair", "tables", "lamp", "there"]:  # inside questions, after a space
        assert len(tok.encode(" " + word, add_special_tokens=False)) == 1, word
    assert len(tok) <= 512


def test_train_tokenizer_is_deterministic_and_order_free(tmp_path):
    shuffled = list(CORPUS * 3)
    random.Random(0).shuffle(shuffled)
    train_tokenizer(CORPUS * 3, tmp_path / "a", vocab_size=300)
    train_tokenizer(shuffled, tmp_path / "b", vocab_size=300)
    a = json.loads((tmp_path / "a" / "tokenizer.json").read_text())
    b = json.loads((tmp_path / "b" / "tokenizer.json").read_text())
    assert a == b
    assert len(a["model"]["vocab"]) == 300  # limited vocabulary: the trainer stops at vocab_size


def test_train_tokenizer_rejects_tiny_vocab(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(CORPUS, tmp_path, vocab_size=100)


def test_load_tokenizer_adds_missing_vision_tokens_and_pad(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>").save_pretrained(tmp_path)
    before = len(PreTrainedTokenizerFast.from_pretrained(tmp_path))
    tok = load_tokenizer(LLMConfig(name_or_path=str(tmp_path)))
    assert len(tok) == before + 3
    vt = vision_token_ids(tok)
    assert tok.encode(VISION_START + IMAGE_PAD + VISION_END, add_special_tokens=False) == vt.block(1)
    assert tok.pad_token == "</s>"  # no <|endoftext|>: the eos pads


def test_load_tokenizer_missing_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_tokenizer(LLMConfig(name_or_path=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="data/synth/tokenizer"):
        load_tokenizer(LLMConfig(name_or_path="x", tokenizer="data/synth/tokenizer_missing"))


def test_load_tokenizer_uses_tokenizer_field(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path)
    tok = load_tokenizer(LLMConfig(name_or_path="Qwen/never-downloaded", tokenizer=str(tmp_path)))
    assert len(tok) == len(tiny_tokenizer)


def test_qwen3_tokenizer_has_vision_tokens(qwen_tokenizer_dir):
    tok = load_tokenizer(LLMConfig(name_or_path=str(qwen_tokenizer_dir)))
    vt = vision_token_ids(tok)
    assert (vt.start_id, vt.pad_id, vt.end_id) == (151652, 151655, 151653)
    assert len(tok) == 151669  # nothing added: the LLM's embeddings need no resize
    assert tok.pad_token == "<|endoftext|>"
    assert answer_end_token(tok, chat=True) == "<|im_end|>"
    assert tok.encode(vision_block_text(3), add_special_tokens=False) == vt.block(3)


def test_vision_token_count():
    cfg = Config()
    assert vision_token_count(cfg.model, 8, has_geometry=True) == 128 + 8
    assert vision_token_count(cfg.model, 8, has_geometry=False) == 128
    cfg.model.geometry.enabled = False
    assert vision_token_count(cfg.model, 8, has_geometry=True) == 128
