"""model.llm.number_embeddings: number tokens that start from their value."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_config

from vqkit.config import LLMConfig
from vqkit.errors import ConfigError
from vqkit.models.builder import build_model
from vqkit.models.number_embeddings import add_value_embeddings, number_token_values
from vqkit.tokenizer import load_tokenizer


class _Vocab:
    def __init__(self, tokens):
        self.vocab = {t: i for i, t in enumerate(tokens)}

    def get_vocab(self):
        return self.vocab


def test_whole_number_tokens_are_found_with_or_without_the_space_marker():
    vocab = _Vocab(["x", "=", "120", "Ġ3", "▁40", "1.5", "a1", "Ġ", "-20"])
    assert number_token_values(vocab) == {2: 120, 3: 3, 4: 40, 8: -20}


def test_value_embeddings_leave_other_tokens_and_make_near_values_close():
    torch.manual_seed(0)
    values = {0: 100, 1: 110, 2: 800}
    emb = torch.nn.Embedding(5, 64)
    torch.nn.init.normal_(emb.weight, std=0.02)
    before = emb.weight.detach().clone()
    assert add_value_embeddings(emb, values, torch.Generator().manual_seed(1)) == 3
    added = emb.weight.detach() - before
    assert torch.equal(added[3:], torch.zeros_like(added[3:]))  # not numbers: untouched
    assert added[:3].std() == pytest.approx(0.02, rel=0.3)  # at the rows' own scale
    cos = torch.nn.functional.cosine_similarity
    assert cos(added[0], added[1], dim=0) > cos(added[0], added[2], dim=0) + 0.3  # 1 m vs 1.1 m vs 8 m


def test_fourier_number_embeddings_need_an_llm_built_from_its_config():
    with pytest.raises(ConfigError, match="number_embeddings: fourier"):
        LLMConfig(name_or_path="Qwen/Qwen3-4B-Instruct-2507", number_embeddings="fourier")


def test_the_builder_changes_only_the_number_rows_and_is_reproducible(corpus, tokenizer_dir):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    tokenizer = load_tokenizer(cfg.model.llm)
    numbers = sorted(number_token_values(tokenizer))
    assert numbers, "the fixture tokenizer has number tokens"
    learned = build_model(cfg, tokenizer).llm.get_input_embeddings().weight.detach()
    cfg.model.llm.number_embeddings = "fourier"
    fourier = [build_model(cfg, tokenizer).llm.get_input_embeddings().weight.detach() for _ in range(2)]
    assert torch.equal(fourier[0], fourier[1])
    changed = (fourier[0] != learned).any(dim=1).nonzero().flatten().tolist()
    assert changed == numbers


def test_an_untied_output_head_gets_the_same_value_part(corpus, tokenizer_dir):
    cfg = tiny_config(corpus.root, tokenizer_dir)
    cfg.model.llm.config_overrides["tie_word_embeddings"] = False
    tokenizer = load_tokenizer(cfg.model.llm)
    numbers = sorted(number_token_values(tokenizer))
    plain = build_model(cfg, tokenizer).llm
    cfg.model.llm.number_embeddings = "fourier"
    fourier = build_model(cfg, tokenizer).llm
    tables = [(m.get_input_embeddings().weight.detach(), m.get_output_embeddings().weight.detach())
              for m in (plain, fourier)]
    assert tables[1][0].data_ptr() != tables[1][1].data_ptr()  # untied
    added_in = (tables[1][0] - tables[0][0])[numbers]
    added_out = (tables[1][1] - tables[0][1])[numbers]
    assert added_in.abs().sum() > 0 and added_out.abs().sum() > 0
    cos = torch.nn.functional.cosine_similarity(added_in.flatten(), added_out.flatten(), dim=0)
    assert cos > 0.99  # one projection of the values, each at its own table's scale
