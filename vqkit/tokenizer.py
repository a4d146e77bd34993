"""Tokenizers and the vision-token rules: load the LLM's tokenizer with vqkit's vision tokens, or train
a tiny one; how many vision tokens a sample's prompt holds (:func:`vision_token_count`).

Every sample's prompt carries one vision block ``<|vision_start|>`` + N x ``<|image_pad|>`` +
``<|vision_end|>``; the model overwrites the N ``<|image_pad|>`` embeddings with vision tokens
(docs/design.md, section 3). Qwen tokenizers already hold these three tokens, so the LLM's embedding
matrix needs no resize; other tokenizers get them added as special tokens (and the model must then
resize its embeddings to ``len(tokenizer)``).

``train_tokenizer`` builds the small byte-level BPE tokenizer that the synthetic demo trains on: the
same special tokens as Qwen, a Qwen-style chat template, and a vocabulary small enough for a
random-init tiny Qwen3.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vqkit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - import-time only for annotations
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

    from vqkit.config.schema import LLMConfig, ModelConfig

VISION_START = "<|vision_start|>"
IMAGE_PAD = "<|image_pad|>"
VISION_END = "<|vision_end|>"
VISION_TOKENS = (VISION_START, IMAGE_PAD, VISION_END)

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# Special tokens of the tiny tokenizer, in id order (ids 0..5): the Qwen names, so code never
# branches on which tokenizer it has.
TINY_SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, VISION_START, IMAGE_PAD, VISION_END)

# A minimal Qwen-style chat template: system/user/assistant turns between <|im_start|>role\n and
# <|im_end|>\n, and the generation prompt "<|im_start|>assistant\n" (what Qwen3-Instruct emits).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class VisionTokens:
    """Ids of the vision block's tokens: ``start_id`` + N x ``pad_id`` + ``end_id``."""

    start_id: int
    pad_id: int
    end_id: int

    def block(self, n: int) -> list[int]:
        """Token ids of one vision block with ``n`` placeholders (length n + 2)."""
        return [self.start_id, *([self.pad_id] * n), self.end_id]


def vision_token_count(model: ModelConfig, num_views: int, has_geometry: bool,
                       image_hw: tuple[int, int] | None = None) -> int:
    """Vision tokens the model writes into one sample's placeholders.

    The collator emits exactly this many ``<|image_pad|>`` tokens and the model checks it: the
    projector's tokens, plus one geometry token per view when geometry is enabled and the record
    has it. A Perceiver writes ``num_latents`` tokens whatever the views; a patch merger one token
    per merged cell of every view, which depends on the patch grid, hence on ``image_hw``, the
    (padded) image size of the sample's batch: the collator knows it once it has stacked the views,
    the model reads it from the batch.
    """
    geometry = num_views if (model.geometry.enabled and has_geometry) else 0
    proj = model.projector
    if proj.type == "perceiver":
        return proj.num_latents + geometry
    if image_hw is None:
        raise ConfigError("model.projector.type 'patch_merger' writes one token per merged patch cell: "
                          "vision_token_count needs the image size (image_hw)")
    patch, m = model.encoder.patch_size, proj.merge_size
    rows, cols = int(image_hw[0]) // patch, int(image_hw[1]) // patch
    return num_views * (-(-rows // m)) * (-(-cols // m)) + geometry


def vision_block_text(n: int) -> str:
    """The vision block as text (n placeholders); tokenizes to exactly n + 2 tokens."""
    return VISION_START + IMAGE_PAD * n + VISION_END


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int | None:
    """Id of a token that exists as a single vocabulary entry, else None (never the unk id)."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tokenizer.unk_token_id is not None and tid == tokenizer.unk_token_id
                       and token != tokenizer.unk_token):
        return None
    return int(tid)


def vision_token_ids(tokenizer: PreTrainedTokenizerBase) -> VisionTokens:
    """The three vision token ids; a tokenizer without them was not made by :func:`load_tokenizer`."""
    ids = [_token_id(tokenizer, t) for t in VISION_TOKENS]
    if any(i is None for i in ids):
        missing = [t for t, i in zip(VISION_TOKENS, ids, strict=True) if i is None]
        raise ConfigError(f"tokenizer lacks the vision tokens {missing}; load it with "
                          f"vqkit.tokenizer.load_tokenizer, which adds them")
    return VisionTokens(*ids)


def ensure_special_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add the vision tokens (as special tokens) when missing and set a pad token. Returns how many
    tokens were added, i.e. whether the LLM's embeddings need ``resize_token_embeddings``."""
    from tokenizers import AddedToken

    missing = [t for t in VISION_TOKENS if _token_id(tokenizer, t) is None]
    added = 0
    if missing:
        # add_tokens(special_tokens=True) keeps them whole and skips them in decode(skip_special_tokens)
        # without replacing the tokenizer's own list of extra special tokens.
        added += tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing],
                                      special_tokens=True)
    if tokenizer.pad_token is None:
        # Qwen pads with <|endoftext|>; otherwise reuse eos; a tokenizer with neither gets one.
        if _token_id(tokenizer, ENDOFTEXT) is not None:
            tokenizer.pad_token = ENDOFTEXT
        elif tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            added += tokenizer.add_special_tokens({"pad_token": ENDOFTEXT})
    return added


def load_tokenizer(llm_cfg: LLMConfig) -> PreTrainedTokenizerBase:
    """The LLM's tokenizer from ``llm_cfg.tokenizer or llm_cfg.name_or_path`` (hub id or folder),
    with the three vision tokens and a pad token guaranteed (see :func:`ensure_special_tokens`).

    The collator pads by itself (right for training, left for generation), so ``padding_side`` is
    left as the tokenizer ships it.
    """
    from transformers import AutoTokenizer

    source = llm_cfg.tokenizer or llm_cfg.name_or_path
    local = Path(source).expanduser()
    # A hub id is "owner/name"; anything else that does not exist is a missing folder, and saying
    # so beats a hub lookup that fails (or hangs offline) with a less helpful message.
    looks_local = local.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1
    if looks_local and not local.is_dir():
        raise ConfigError(f"model.llm tokenizer folder not found: {source} (for the demo, run "
                          f"`vqkit synth` first; it writes data/synth/tokenizer)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if local.is_dir() else source)
    except (OSError, ValueError) as e:
        offline = " (HF_HUB_OFFLINE is set: use a local folder)" if os.environ.get("HF_HUB_OFFLINE") else ""
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot load the tokenizer '{source}'{offline}: {first}") from e
    ensure_special_tokens(tokenizer)
    return tokenizer


def answer_end_token(tokenizer: PreTrainedTokenizerBase, chat: bool) -> str:
    """The token that ends an answer: the chat template's end-of-turn token (``<|im_end|>`` for
    Qwen) when ``chat``, else the tokenizer's eos. Generation stops on it; the label span ends with it.

    The end-of-turn token is read from the template itself (the first special token it writes
    after an assistant message), so a non-Qwen chat template works too.
    """
    if chat and getattr(tokenizer, "chat_template", None):
        sentinel = "VQKIT_ANSWER_SENTINEL"
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "q"}, {"role": "assistant", "content": sentinel}],
                tokenize=False)
        except Exception:  # noqa: BLE001 - a template that refuses this shape: fall back to eos
            text = ""
        if sentinel in text:
            tail = text.split(sentinel, 1)[1]
            specials = sorted({str(t) for t in tokenizer.all_special_tokens} | set(TINY_SPECIAL_TOKENS),
                              key=len, reverse=True)
            positions = [(tail.find(s), s) for s in specials if s in tail and _token_id(tokenizer, s) is not None]
            if positions:
                return min(positions)[1]
    if tokenizer.eos_token is None:
        raise ConfigError("the tokenizer has no eos token to end answers with")
    return str(tokenizer.eos_token)


def answer_end_token_id(tokenizer: PreTrainedTokenizerBase, chat: bool) -> int:
    """Id of :func:`answer_end_token`."""
    return int(tokenizer.convert_tokens_to_ids(answer_end_token(tokenizer, chat)))


def train_tokenizer(texts: Iterable[str], out_dir: str | os.PathLike, vocab_size: int = 512,
                    min_frequency: int = 1) -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE tokenizer on ``texts`` and save it to ``out_dir``.

    - Byte-level pre-tokenizer and decoder: any string round-trips exactly
      (``decode(encode(x)) == x``), even characters absent from the corpus.
    - Special tokens (ids 0..5): ``<|endoftext|>`` (eos and pad), ``<|im_start|>``, ``<|im_end|>``,
      ``<|vision_start|>``, ``<|image_pad|>``, ``<|vision_end|>``; a minimal Qwen-style chat template.
    - BPE merges the most frequent pairs first, so with enough vocabulary every word of the corpus
      becomes one token. A word after a space (" red") and at the start of a text or line ("red")
      are different tokens: pass answers as texts of their own so both forms are learned.
    - Deterministic: the same texts (in any order) give the same files.

    Returns the tokenizer as loaded back from ``out_dir`` (what ``load_tokenizer`` will see).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    texts = sorted(str(t) for t in texts)  # order-independent training
    if not texts:
        raise ValueError("train_tokenizer needs at least one text")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    floor = len(alphabet) + len(TINY_SPECIAL_TOKENS)
    if vocab_size < floor:
        raise ValueError(f"vocab_size must be >= {floor} (256 bytes + {len(TINY_SPECIAL_TOKENS)} special tokens)")

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(TINY_SPECIAL_TOKENS), initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END, *VISION_TOKENS],
        padding_side="right",
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )
    fast.chat_template = CHAT_TEMPLATE
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return AutoTokenizer.from_pretrained(str(out_dir))


__all__ = [
    "VisionTokens", "vision_token_ids", "vision_block_text", "load_tokenizer", "ensure_special_tokens",
    "answer_end_token", "answer_end_token_id", "train_tokenizer", "CHAT_TEMPLATE",
    "VISION_START", "IMAGE_PAD", "VISION_END", "VISION_TOKENS", "ENDOFTEXT", "IM_START", "IM_END",
]
