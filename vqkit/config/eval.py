"""The evaluation section: generation and scoring."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalConfig:
    """Generation and scoring (vqkit eval, periodic eval)."""

    batch_size: int = 8
    """Samples per generation batch."""
    max_new_tokens: int = 16
    """Generation budget for Stage 1 answers."""
    roomplan_max_new_tokens: int = 512
    """Generation budget for Stage 2 layouts (a room with 8 objects is ~400 Qwen3 tokens)."""
    grounding_max_new_tokens: int = 48
    """Generation budget for grounding answers (one box line: ~20 tokens of the demo's tokenizer, ~40 of
    Qwen3's, which writes digits one by one)."""
    do_sample: bool = False
    """Greedy decoding by default (the official scorers assume it)."""
    temperature: float = 1.0
    """Sampling temperature (only with do_sample)."""
    top_p: float = 1.0
    """Nucleus sampling (only with do_sample)."""
    num_beams: int = 1
    """Beam search width."""
