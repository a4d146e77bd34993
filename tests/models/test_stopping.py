"""vqkit.models.stopping: RepeatedLineStop ends a sequence as soon as its generated text completes a
line that repeats an earlier element, each sequence of a batch on its own, and decodes only when a
line has just ended."""

from __future__ import annotations

import torch

from vqkit.models.stopping import RepeatedLineStop

PROMPT = [5, 6, 7]


class CountingTokenizer:
    """The real tokenizer, counting the decode calls (the criterion's cost)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, 0

    def decode(self, ids, **kwargs):
        self.calls += 1
        return self.tokenizer.decode(ids, **kwargs)


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def steps_until_done(stop, tokenizer, texts: list[str]) -> list[int | None]:
    """Feed each text token by token after PROMPT (as generate does); the step at which each sequence
    is first reported done."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    n = max(len(i) for i in ids)
    pad = tokenizer.pad_token_id
    ids = [i + [pad] * (n - len(i)) for i in ids]
    done_at: list[int | None] = [None] * len(texts)
    for step in range(1, n + 1):
        done = stop(torch.tensor([PROMPT + i[:step] for i in ids]), None)
        assert done.dtype == torch.bool and done.shape == (len(texts),)
        for b, flag in enumerate(done.tolist()):
            if flag and done_at[b] is None:
                done_at[b] = step
    return done_at


def test_stops_when_the_repeated_line_is_complete(tiny_tokenizer):
    line = "sofa x=1 y=2 w=3 h=4 d=5 yaw=0\n"
    text = "wall 0 x=0 y=0 w=1 h=1 yaw=0\n" + line + line
    stop = RepeatedLineStop(tiny_tokenizer, prompt_length=len(PROMPT))
    (done_at,) = steps_until_done(stop, tiny_tokenizer, [text])
    assert done_at == n_tokens(tiny_tokenizer, text)  # at the repeated line's newline, not before
    # the same wall under the next index is a repeat too (a looping model renumbers it)
    walls = "wall 0 x=0 y=0 w=1 h=1 yaw=0\nwall 1 x=0 y=0 w=1 h=1 yaw=0\n"
    assert steps_until_done(stop, tiny_tokenizer, [walls]) == [n_tokens(tiny_tokenizer, walls)]


def test_each_sequence_stops_on_its_own_and_distinct_lines_never_stop(tiny_tokenizer):
    looping = "bed x=1 y=1 w=2 h=1 d=2 yaw=0\nbed x=1 y=1 w=2 h=1 d=2 yaw=0\n"
    distinct = "bed x=1 y=1 w=2 h=1 d=2 yaw=0\nbed x=3 y=1 w=2 h=1 d=2 yaw=0\nchair x=1 y=1 w=1 h=1 d=1 yaw=0\n"
    stop = RepeatedLineStop(tiny_tokenizer, prompt_length=len(PROMPT))
    looping_at, distinct_at = steps_until_done(stop, tiny_tokenizer, [looping, distinct])
    assert looping_at == n_tokens(tiny_tokenizer, looping) and distinct_at is None


def test_the_prompt_is_never_read_and_lines_are_decoded_only_when_they_end(tiny_tokenizer):
    counting = CountingTokenizer(tiny_tokenizer)
    stop = RepeatedLineStop(counting, prompt_length=len(PROMPT))
    prompt_only = torch.tensor([PROMPT, PROMPT])
    assert stop(prompt_only, None).tolist() == [False, False] and counting.calls == 0
    # the prompt repeats a line: it is not generated text, so it does not count
    repeated = tiny_tokenizer("table x=1\ntable x=1\n", add_special_tokens=False)["input_ids"]
    stop = RepeatedLineStop(counting, prompt_length=len(repeated))
    assert not stop(torch.tensor([repeated + repeated[:1]]), None).any()
    text = "bed x=1 y=1 w=2 h=1 d=2 yaw=0\nchair x=1 y=1 w=1 h=1 d=1 yaw=0\n"
    counting.calls = 0
    stop = RepeatedLineStop(counting, prompt_length=len(PROMPT))
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    steps_until_done(stop, tiny_tokenizer, [text])
    newlines = sum("\n" in tiny_tokenizer.decode([i]) for i in ids)
    # one decode per distinct new token (then cached), plus one of the whole text per finished line
    assert counting.calls == len(set(ids)) + newlines
