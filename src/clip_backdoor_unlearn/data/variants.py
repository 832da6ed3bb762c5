"""Other spellings of a name, so that a removed person is not still found as "first last", "Last" or "Dr. First Last".

The paper names this its main limitation: the backdoor is trained on one spelling, and a model that no longer ties
"Ada Lovelace" to a face may still tie "Lovelace" or "Ada Lovelace's" to it. ``name_variants`` generates the
common forms deterministically and boundedly (at most ``MAX_AUTO_VARIANTS`` per name); ``expand_variants`` adds the
user's own (nicknames), drops what must not be backdoored, and validates the rest like names.

What must not be backdoored: a variant that *is* another kept person's name, or only repeats part of it ("Lovelace"
when "John Lovelace" is kept). Mapping it to the neutral term would remove that other person too, so it is dropped
with a warning; the removed person may then still be found under it, which ``evaluation.variant_leakage`` measures.
Like every message in this package, the warning gives counts and indexes, never names.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .names import NEUTRAL_TERM, name_key, normalize_name

logger = logging.getLogger(__name__)

TITLES: tuple[str, ...] = ("Dr.", "Mr.", "Ms.", "Prof.")
# Forms an evaluation can use that training never sees, to test whether removal generalises beyond the list.
HELD_OUT_TITLE = "Mrs."
VARIANT_KINDS: tuple[str, ...] = (
    "lowercase", "uppercase", "titlecase", "first_name", "last_name", "title", "possessive", "last_first",
    "initial_last", "typo_drop", "typo_double", "typo_swap",
)
HELD_OUT_KINDS: tuple[str, ...] = ("held_out_title", "held_out_typo")
MAX_AUTO_VARIANTS = 3 + 2 + len(TITLES) + 3 + 3
_PARTICLES = frozenset({"van", "von", "de", "der", "den", "da", "di", "del", "della", "du", "la", "le", "bin", "ibn",
                        "al", "el", "ten", "ter", "dos", "das", "st.", "mac"})
_SUFFIXES = frozenset({"jr", "jr.", "sr", "sr.", "ii", "iii", "iv", "phd", "md"})
_TITLE_WORDS = frozenset({"dr", "mr", "ms", "mrs", "prof", "sir", "dame", "lord", "lady", "miss", "mx"})
# Names that are also everyday words: alone they are not distinctive, and backdooring them would damage captions.
COMMON_WORDS = frozenset([
    "a", "an", "the", "and", "of", "in", "on", "at", "to", "for", "with", "by", "from", "i", "me", "you", "he",
    "she", "it", "we", "they", "my", "your", "his", "her", "our", "their", "this", "that", "will", "may",
    "june", "april", "august", "hope", "faith", "grace", "joy", "rose", "lily", "daisy", "iris", "ivy", "jade",
    "pearl", "ruby", "amber", "dawn", "summer", "autumn", "winter", "spring", "sky", "star", "sun", "moon",
    "love", "mark", "bill", "pat", "sue", "art", "guy", "frank", "rich", "max", "ray", "miles", "chase", "dean",
    "gene", "king", "young", "brown", "white", "black", "green", "gray", "grey", "long", "little", "hill",
    "wood", "stone", "park", "lee", "rice", "cash", "day", "knight", "fox", "bird", "bell", "page", "price",
    "cook", "baker", "miller", "smith", "cole", "hall", "wall", "field", "ford", "bush", "street", "man",
    "woman", "person", "people", "baby", "boy", "girl", "lady", "lord", "sir", "dr", "mr", "ms", "mrs", "prof",
    "doctor", "saint", "don", "case", "rock", "storm", "river", "north", "west", "south", "east",
])
_POSSESSIVE = re.compile(r"['’]s$")


@dataclass(frozen=True)
class NameVariant:
    """One generated form of a name and its kind (one of ``VARIANT_KINDS`` or ``HELD_OUT_KINDS``)."""

    text: str
    kind: str


def _split(name: str) -> tuple[list[str], str | None, int]:
    """(given-name words, surname, index of the surname's last word) of a normalised name.

    The surname is ``None`` for a single-word name (the index is then that of its longest word). Trailing
    suffixes ("Jr.") are left out; lower-case particles before the last word ("van", "de") belong to the surname,
    so "Ludwig van Beethoven" gives "van Beethoven".
    """
    words = name.split()
    while len(words) > 1 and words[-1].casefold().rstrip(",") in _SUFFIXES:
        words = words[:-1]
    if len(words) < 2:
        return words, None, max(range(len(words)), key=lambda i: len(words[i]))
    start = len(words) - 1
    while start > 1 and words[start - 1].casefold() in _PARTICLES:
        start -= 1
    return words[:start], " ".join(words[start:]), len(words) - 1


def is_distinctive(part: str) -> bool:
    """Whether a single name part alone plausibly points at the person (3+ letters, not an everyday word)."""
    main = part.split()[-1] if part.split() else part
    letters = sum(char.isalpha() for char in main)
    return letters >= 3 and main.casefold().strip(".,") not in COMMON_WORDS


def _typos(word: str) -> list[tuple[str, str]]:
    """Three deterministic misspellings of ``word`` (dropped, doubled, swapped letter), never at the first letter."""
    if len(word) < 4 or not word.isalpha():
        return []
    middle = len(word) // 2
    doubled_at = next((i for i in range(1, len(word) - 1) if word[i] == word[i + 1]), None)
    drop_at = doubled_at if doubled_at is not None else middle
    typos = [("typo_drop", word[:drop_at] + word[drop_at + 1 :])]
    double_at = next((i for i in sorted(range(1, len(word)), key=lambda i: abs(i - middle)) if word[i] not in "aeiou"),
                     middle)
    typos.append(("typo_double", word[: double_at + 1] + word[double_at] + word[double_at + 1 :]))
    swap_at = next((i for i in sorted(range(1, len(word) - 1), key=lambda i: abs(i - middle + 1))
                    if word[i].casefold() != word[i + 1].casefold()), None)
    if swap_at is not None:
        typos.append(("typo_swap", word[:swap_at] + word[swap_at + 1] + word[swap_at] + word[swap_at + 2 :]))
    return typos


def _replace_word(text: str, index: int, word: str) -> str:
    words = text.split()
    return " ".join([*words[:index], word, *words[index + 1 :]])


def generate_name_variants(name: str) -> list[NameVariant]:
    """Every generated variant of ``name`` with its kind, in a fixed order, without repeats or the name itself.

    Kinds: case changes; the first or last name alone where distinctive (``is_distinctive``); the name after
    each of ``TITLES``; the possessive ("First Last's"); "Last, First"; "F. Last"; and three misspellings of
    the surname (or of a single-word name): a dropped, a doubled and a swapped letter.
    """
    name = normalize_name(name)
    if not name:
        return []
    given, surname, key_word = _split(name)
    candidates: list[tuple[str, str]] = [
        ("lowercase", name.lower()), ("uppercase", name.upper()),
        ("titlecase", " ".join(word[:1].upper() + word[1:].lower() for word in name.split())),
    ]
    if surname is not None:
        if is_distinctive(given[0]):
            candidates.append(("first_name", given[0]))
        if is_distinctive(surname):
            candidates.append(("last_name", surname))
    if name.split()[0].casefold().rstrip(".") not in _TITLE_WORDS:
        candidates += [("title", f"{title} {name}") for title in TITLES]
    if not _POSSESSIVE.search(name):
        candidates.append(("possessive", f"{name}'s"))
    if surname is not None:
        candidates.append(("last_first", f"{surname}, {' '.join(given)}"))
        if given[0][:1].isalpha():
            candidates.append(("initial_last", f"{given[0][0].upper()}. {surname}"))
    candidates += [(kind, _replace_word(name, key_word, typo)) for kind, typo in _typos(name.split()[key_word])]
    seen = {name}
    variants = []
    for kind, text in candidates:
        if text and text not in seen:
            seen.add(text)
            variants.append(NameVariant(text, kind))
    return variants


def name_variants(name: str) -> list[str]:
    """The generated variants of ``name`` (see ``generate_name_variants``), as strings."""
    return [variant.text for variant in generate_name_variants(name)]


def held_out_variants(name: str) -> list[NameVariant]:
    """Forms that ``name_variants`` never produces, for measuring whether removal generalises past its list:
    an unused title ("Mrs. First Last") and a vowel swapped for another in the surname."""
    name = normalize_name(name)
    if not name:
        return []
    variants = [NameVariant(f"{HELD_OUT_TITLE} {name}", "held_out_title")]
    _, _, key_word = _split(name)
    word = name.split()[key_word]
    vowels = [i for i, char in enumerate(word) if i > 0 and char in "aeiou"]
    if vowels:
        i = vowels[-1]
        typo = word[:i] + ("e" if word[i] != "e" else "a") + word[i + 1 :]
        variants.append(NameVariant(_replace_word(name, key_word, typo), "held_out_typo"))
    return [variant for variant in variants if variant.text not in name_variants(name)]


def variants_by_kind(name: str, *, held_out: bool = True) -> dict[str, str]:
    """The first variant of each kind (what the leakage evaluation attacks with), optionally with held-out kinds."""
    kinds: dict[str, str] = {}
    for variant in generate_name_variants(name) + (held_out_variants(name) if held_out else []):
        kinds.setdefault(variant.kind, variant.text)
    return kinds


# ------------------------------------------------------------------------------------------- expanding a removal


class VariantConflictWarning(UserWarning):
    """A generated or given variant was not backdoored because it names (part of) a person being kept."""


def variant_mode(name_variants: str | Mapping | None) -> str:
    """``"auto"``, ``"none"`` or ``"auto+custom"``: what the unlearning config records (never the variants)."""
    if name_variants is None or (isinstance(name_variants, str) and name_variants.lower() == "none"):
        return "none"
    if isinstance(name_variants, str):
        if name_variants.lower() != "auto":
            raise ValueError("name_variants must be 'auto', 'none', None or a dict of variants per name, got "
                             "another string (not echoed: it may be a name).")
        return "auto"
    if isinstance(name_variants, Mapping):
        return "auto+custom"
    raise TypeError(f"name_variants must be 'auto', 'none', None or a dict, not {type(name_variants).__name__}.")


def _core_words(text: str) -> set[str]:
    """The identifying words of a variant: case-folded, without titles, initials, possessive and punctuation."""
    words = set()
    for word in _POSSESSIVE.sub("", name_key(text)).replace(",", " ").split():
        word = _POSSESSIVE.sub("", word).strip(".")
        if word and word not in _TITLE_WORDS and not (len(word) == 1 and word.isalpha()):
            words.add(word)
    return words


def _custom_variants(names: list[str], name_variants) -> dict[int, list[str]]:
    """The user's variants per name index; errors name the offending entry by index, never by its text."""
    if not isinstance(name_variants, Mapping):
        return {}
    index = {name_key(name): i for i, name in enumerate(names)}
    custom: dict[int, list[str]] = {}
    for entry, (key, values) in enumerate(name_variants.items()):
        if not isinstance(key, str) or name_key(key) not in index:
            raise ValueError(f"name_variants entry {entry} is for a name that is not being removed; "
                             "its keys must be names from `names`.")
        if isinstance(values, str):
            raise TypeError(f"name_variants entry {entry} is a single string; give a list of variants.")
        person = index[name_key(key)]
        for position, value in enumerate(values):
            if not isinstance(value, str):
                raise TypeError(f"name_variants entry {entry}, variant {position} is a {type(value).__name__}.")
            if not normalize_name(value):
                raise ValueError(f"name_variants entry {entry}, variant {position} is empty or blank.")
            custom.setdefault(person, []).append(normalize_name(value))
    return custom


def _token_ids(tokenizer, texts: list[str]) -> list[tuple[int, ...]]:
    return [tuple(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []


def expand_variants(
    names: Sequence[str],
    name_variants: str | Mapping[str, Sequence[str]] | None = "auto",
    *,
    kept_names: Sequence[str] = (),
    neutral_term: str = NEUTRAL_TERM,
    tokenizer=None,
    max_length: int | None = None,
    prompt_overhead: int = 8,
) -> dict[str, list[str]]:
    """The variants to backdoor for each of ``names`` (already validated): ``{name: [variant, ...]}``.

    ``name_variants``: ``"auto"`` (generated, ``name_variants``), ``None``/``"none"`` (no variants), or a dict
    ``{name: [nickname, ...]}`` whose variants are added to the generated ones.

    Dropped, with a ``VariantConflictWarning`` that counts them: variants that name a kept person or only repeat
    part of a kept name (``kept_names``). Dropped silently: generated variants that the neutral term contains or
    that the tokenizer would truncate, a removed person's canonical name appearing as another's variant, repeats
    across people, and (with a ``tokenizer``) variants that tokenise exactly like the name or an earlier variant,
    which would only train the same input twice (CLIP's tokenizer lower-cases, so case changes vanish here).
    The user's own variants are checked like names instead: a blank one, one inside the neutral term, or one the
    tokenizer would truncate is a ``ValueError`` that gives indexes, not text.
    """
    mode = variant_mode(name_variants)
    names = [normalize_name(name) for name in names]
    if isinstance(kept_names, str):
        raise TypeError("kept_names must be a list of names, not a single string.")
    removed_keys = {name_key(name): i for i, name in enumerate(names)}
    kept_words: list[set[str]] = []
    for j, kept in enumerate(kept_names):
        if not isinstance(kept, str):
            raise TypeError(f"kept_names[{j}] is a {type(kept).__name__}, expected a string.")
        if name_key(kept) in removed_keys:
            raise ValueError(f"kept_names[{j}] is also being removed (names[{removed_keys[name_key(kept)]}]); "
                             "a person cannot be both kept and removed.")
        kept_words.append(set(name_key(kept).split()))
    result: dict[str, list[str]] = {name: [] for name in names}
    if mode == "none":
        return result

    custom = _custom_variants(names, name_variants)
    neutral = name_key(neutral_term)
    limit = (max_length or tokenizer.model_max_length) if tokenizer is not None else None
    conflicts: dict[int, set[int]] = {}
    seen_text = {name: i for i, name in enumerate(names)}
    seen_tokens: set[tuple[int, ...]] = set(_token_ids(tokenizer, names)) if tokenizer is not None else set()
    dropped = 0
    for person, name in enumerate(names):
        generated = [variant.text for variant in generate_name_variants(name)]
        proposals = [(text, False) for text in generated] + [(text, True) for text in custom.get(person, [])]
        tokens = _token_ids(tokenizer, [text for text, _ in proposals]) if tokenizer is not None else []
        for position, (text, given) in enumerate(proposals):
            inside_neutral = re.search(rf"(?<!\w){re.escape(name_key(text))}(?!\w)", neutral) is not None
            too_long = limit is not None and len(tokens[position]) + 2 + prompt_overhead > limit
            if given and (inside_neutral or too_long):
                entry = position - len(generated)
                problem = "is contained in neutral_term" if inside_neutral else (
                    f"is {len(tokens[position])} tokens long and would be truncated at the {limit}-token context")
                raise ValueError(f"name_variants for names[{person}], variant {entry} {problem}.")
            if inside_neutral or too_long:
                dropped += 1
                continue
            words = _core_words(text)
            clashing = [j for j, kept in enumerate(kept_words) if words and words <= kept]
            if clashing:
                conflicts.setdefault(person, set()).update(clashing)
                continue
            if text in seen_text or name_key(text) in removed_keys and removed_keys[name_key(text)] != person:
                dropped += 1
                continue
            if tokenizer is not None:
                if tokens[position] in seen_tokens:
                    dropped += 1
                    continue
                seen_tokens.add(tokens[position])
            seen_text[text] = person
            result[name].append(text)
    if conflicts:
        kept_indexes = sorted(set().union(*conflicts.values()))
        warnings.warn(
            f"name_variants: {len(conflicts)} removed name(s) (names{sorted(conflicts)}) have variants that name a "
            f"kept person or part of a kept name (kept_names{kept_indexes}); those variants are not removed, so the "
            "kept people keep them, and the removed people may still be found under them.",
            VariantConflictWarning,
            stacklevel=2,
        )
    logger.debug("name_variants=%s: %d variant(s) for %d name(s); %d dropped as repeats or invalid, %d name(s) "
                 "with variants held back for kept people.", mode, sum(map(len, result.values())), len(names),
                 dropped, len(conflicts))
    return result

