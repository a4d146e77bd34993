"""Liger's kernels: asking for them without CUDA or without the package is one clear line; the meta
device (memory plans) builds the architecture without them."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from helpers import tiny_config

from vqkit.errors import ConfigError
from vqkit.models.builder import build_model
from vqkit.models.liger import apply_liger_kernels, require_liger
from vqkit.tokenizer import load_tokenizer


def test_liger_on_the_cpu_is_a_one_line_error(corpus, tokenizer_dir):
    with pytest.raises(ConfigError, match="model.llm.liger_kernels: Liger.s kernels are Triton GPU kernels"):
        require_liger("cpu")
    cfg = tiny_config(corpus.root, tokenizer_dir)
    cfg.model.llm.liger_kernels = True
    with pytest.raises(ConfigError) as err:
        build_model(cfg, load_tokenizer(cfg.model.llm), device="cpu")
    assert "\n" not in str(err.value) and "set model.llm.liger_kernels=false" in str(err.value)
    # The meta device (memory plans) builds the architecture without kernels.
    build_model(cfg, device="meta")


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is not None, reason="liger-kernel is installed")
def test_liger_without_the_package_names_the_extra():
    with pytest.raises(ConfigError, match=r"pip install 'vqkit\[gpu\]'"):
        require_liger("cuda")
    with pytest.raises(ConfigError, match="not installed"):
        apply_liger_kernels(torch.nn.Linear(1, 1), "cuda")
