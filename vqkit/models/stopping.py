"""Stopping criteria for generation: :class:`RepeatedLineStop` (a layout that starts to loop stops
after one repeated line instead of filling the token budget). ``VQModel.generate`` uses it for
Stage 2 records; ``vqkit.models.vqmodel`` re-exports it."""

from __future__ import annotations

import torch

from vqkit.roomplan.text import first_repeated_line


class RepeatedLineStop:
    """A stopping criterion for transformers' ``generate`` (the ``StoppingCriteria`` call protocol;
    not a subclass, so importing this module does not import transformers): a sequence is done once
    its generated text completes a line whose element repeats an earlier line
    (:func:`vqkit.roomplan.text.first_repeated_line`).

    Greedy decoding of a structured text can loop (the same object line again and again until the
    token budget runs out). The check runs only for sequences whose newest token holds a newline
    (a per-token-id cache), so it costs a decode per finished line, not per token.

    Args:
        tokenizer: decodes the generated ids (special tokens skipped, as ``generate`` returns them).
        prompt_length: columns of ``input_ids`` that are prompt (generation sees prompt + new tokens).

    ``__call__(input_ids [B, L], scores) -> bool [B]`` (True = this sequence is done).
    """

    def __init__(self, tokenizer, prompt_length: int):
        self.tokenizer = tokenizer
        self.prompt_length = int(prompt_length)
        self._has_newline: dict[int, bool] = {}

    def __call__(self, input_ids: torch.Tensor, scores=None, **kwargs) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if input_ids.shape[1] <= self.prompt_length:
            return done
        for i, token in enumerate(input_ids[:, -1].tolist()):
            newline = self._has_newline.get(token)
            if newline is None:
                newline = self._has_newline[token] = "\n" in self.tokenizer.decode([token], skip_special_tokens=True)
            if newline:
                text = self.tokenizer.decode(input_ids[i, self.prompt_length:], skip_special_tokens=True)
                done[i] = first_repeated_line(text, complete_only=True) is not None
        return done


__all__ = ["RepeatedLineStop"]
