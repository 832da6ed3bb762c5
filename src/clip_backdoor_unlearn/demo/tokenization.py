"""Build a real CLIP tokenizer offline.

No tokenizer can be downloaded here, and ``CLIPTokenizer(vocab_file=..., merges_file=...)`` silently builds an
empty one.  This module learns byte-pair merges from a corpus with CLIP's own pre-tokenisation rules and hands
the result to ``CLIPTokenizer(vocab=..., merges=...)``.  The vocabulary always contains the full byte-level
alphabet, with and without the end-of-word suffix, so *every* string tokenises without unknown tokens: names the
corpus never saw still get a faithful (if longer) encoding, which the unlearner's truncation check relies on.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from tokenizers import pre_tokenizers
from transformers import CLIPTokenizer

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"

# The split rule of CLIPTokenizer's pre-tokenizer (letters runs, single digits, punctuation runs, contractions).
_WORD_PATTERN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.UNICODE)


def _byte_alphabet() -> list[str]:
    return sorted(pre_tokenizers.ByteLevel.alphabet())


def _to_byte_symbols(word: str) -> tuple[str, ...]:
    """Map a word to byte-level symbols exactly as ``pre_tokenizers.ByteLevel`` does."""
    pieces = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(word)
    symbols = list("".join(piece for piece, _ in pieces))
    symbols[-1] = symbols[-1] + END_OF_WORD
    return tuple(symbols)


def _count_words(corpus: Iterable[str]) -> Counter[tuple[str, ...]]:
    words: Counter[str] = Counter()
    for text in corpus:
        words.update(_WORD_PATTERN.findall(" ".join(text.lower().split())))
    return Counter({_to_byte_symbols(word): count for word, count in words.items()})


def _learn_merges(words: Counter[tuple[str, ...]], num_merges: int) -> list[tuple[str, str]]:
    """Plain BPE: repeatedly merge the most frequent adjacent pair (ties broken lexicographically)."""
    merges: list[tuple[str, str]] = []
    words = Counter(words)
    for _ in range(num_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best_count = max(pairs.values())
        if best_count < 2:
            break
        best = min(pair for pair, count in pairs.items() if count == best_count)
        merges.append(best)
        merged = best[0] + best[1]
        updated: Counter[tuple[str, ...]] = Counter()
        for symbols, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            updated[tuple(out)] += count
        words = updated
    return merges


def train_clip_tokenizer(corpus: Iterable[str], vocab_size: int = 2048) -> CLIPTokenizer:
    """Learn a byte-level BPE ``CLIPTokenizer`` from ``corpus`` without any download.

    Args:
        corpus: texts to learn merges from (captions, names, prompt templates).
        vocab_size: upper bound on the vocabulary size; at least the 514 base symbols are always present.

    Returns:
        A ``CLIPTokenizer`` with ``<|startoftext|>`` = 0 and ``<|endoftext|>`` = 1 (also the padding token), which
        round-trips through ``save_pretrained`` / ``CLIPTokenizer.from_pretrained``.
    """
    alphabet = _byte_alphabet()
    vocab: dict[str, int] = {BOS_TOKEN: 0, EOS_TOKEN: 1}
    for symbol in alphabet + [symbol + END_OF_WORD for symbol in alphabet]:
        vocab[symbol] = len(vocab)
    merges = _learn_merges(_count_words(corpus), max(0, vocab_size - len(vocab)))
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=77,
    )
