"""Fixtures for the lmms-eval plugin's tests: a tiny model saved for the session's synthetic rooms."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_model_dir(synth_dir, tmp_path_factory) -> Path:
    """A random-init tiny model (2 views of 56 px, geometry tokens) over ``synth_dir``, saved as RUN/final."""
    from helpers import tiny_train_config

    from vqkit.config import config_from_dict
    from vqkit.models.builder import build_model
    from vqkit.tokenizer import load_tokenizer

    root = tmp_path_factory.mktemp("lmms_model")
    cfg = config_from_dict(tiny_train_config(synth_dir, root / "run", seed=5))
    cfg.eval.max_new_tokens = 3
    model = build_model(cfg, load_tokenizer(cfg.model.llm))
    return model.save_pretrained(root / "run" / "final")
