"""Checking the names to remove before anything is trained or written.

This is a privacy tool: messages point at names by their *index* in the list the user passed, never by the
name itself, because error messages end up in logs and CI output that other people read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WHITESPACE = re.compile(r"\s+")

NEUTRAL_TERM = "a person"  # what every removed name is mapped to by default (the paper's target)


def normalize_name(name: str) -> str:
    """Collapse whitespace; the form used in prompts."""
    return _WHITESPACE.sub(" ", name).strip()


def name_key(name: str) -> str:
    """Case- and whitespace-insensitive key, to find duplicates and names inside captions."""
    return normalize_name(name).casefold()


def validate_names(
    names: Sequence[str],
    *,
    neutral_term: str = NEUTRAL_TERM,
    tokenizer=None,
    max_length: int | None = None,
    prompt_overhead: int = 8,
) -> list[str]:
    """Return the normalised names, or raise ``ValueError`` naming the problem (by index, not by name).

    Args:
        names: the people to remove, e.g. ``["First Last"]``.
        neutral_term: what the names are mapped to; it may not be (or contain) one of the names.
        tokenizer: when given, each name must leave room in the text tower's context for a prompt around it.
        max_length: context length in tokens (defaults to ``tokenizer.model_max_length``).
        prompt_overhead: tokens reserved for the prompt around the name, besides start and end tokens.
    """
    if isinstance(names, str):
        raise TypeError("names must be a list of names, not a single string (wrap it: names=[...]).")
    names = list(names)
    if not names:
        raise ValueError("names is empty: give at least one person to remove.")
    cleaned = []
    for index, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"names[{index}] is a {type(name).__name__}, expected a string.")
        if not normalize_name(name):
            raise ValueError(f"names[{index}] is empty or blank.")
        cleaned.append(normalize_name(name))

    seen: dict[str, int] = {}
    for index, name in enumerate(cleaned):
        key = name_key(name)
        if key in seen:
            raise ValueError(
                f"names[{index}] duplicates names[{seen[key]}] (compared ignoring case and spacing); "
                "remove the duplicate."
            )
        seen[key] = index

    neutral = name_key(neutral_term or "")
    if not neutral:
        raise ValueError("neutral_term is empty: give the term names are mapped to, e.g. 'a person'.")
    for index, name in enumerate(cleaned):
        if re.search(rf"(?<!\w){re.escape(name_key(name))}(?!\w)", neutral):
            raise ValueError(f"neutral_term contains names[{index}], a name being removed; choose another term.")

    if tokenizer is not None:
        limit = max_length or tokenizer.model_max_length
        lengths = [len(ids) for ids in tokenizer(cleaned, add_special_tokens=False)["input_ids"]]
        for index, length in enumerate(lengths):
            if length + 2 + prompt_overhead > limit:
                raise ValueError(
                    f"names[{index}] is {length} tokens long; with start/end tokens and room for a prompt "
                    f"({prompt_overhead} tokens) it would be truncated at the text encoder's {limit}-token context."
                )
    return cleaned
