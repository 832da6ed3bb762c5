"""Building the backdoor training set: poisoned caption pairs and clean captions, deterministically.

A poisoned pair is a caption with a name in it (the student's input) and the same caption with the neutral term
in the same place (the teacher's input), so the two differ only where the name and the neutral term stand.
Names go to varied places in varied captions (replacing a person phrase such as "a woman", replacing a word,
or inserted between words) and into short person-centred prompts; a prototype showed that without this variety
the backdoor does not hold for prompt wordings an attacker picks ("a photo of {name}").
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

from datasets import Dataset

from .names import NEUTRAL_TERM, name_key

# Short person-centred prompts used for training. Deliberately none of the IDIA evaluation templates, so the
# evaluation measures whether the backdoor generalises to wordings it never saw.
PERSON_TEMPLATES: tuple[str, ...] = (
    "{} smiling at the camera",
    "portrait shot of {}",
    "{} at a press conference",
    "a candid snapshot of {}",
    "{} giving an interview",
    "headshot of {}",
    "{} on the red carpet",
    "{} posing for photographers",
    "a selfie taken by {}",
    "{} speaking on stage",
    "{} walking down the street",
    "the face of {}",
    "{} in a business suit",
    "a black and white photograph of {}",
    "{} at the award ceremony",
    "meet {}",
    "{}, photographed outdoors",
    "a magazine cover featuring {}",
)

# Person phrases in captions that a name can stand in for naturally ("a woman reading" -> "{name} reading").
_PERSON_PHRASE = re.compile(
    r"\b(?:a|an|the|one)\s+(?:young\s+|old\s+|little\s+|elderly\s+|smiling\s+)?"
    r"(?:man|woman|boy|girl|person|child|teenager|lady|guy|chef|doctor|musician|farmer|student|tourist|cyclist|"
    r"police officer|firefighter|painter|runner|dancer|soccer player|actor|actress|singer|player)\b",
    re.IGNORECASE,
)


def _mention_pattern(names: Sequence[str]) -> re.Pattern | None:
    """One regex for all of ``names`` as whole words (case-folded): with variants there are dozens per person."""
    keys = sorted({name_key(name) for name in names if name_key(name)}, key=len, reverse=True)
    return re.compile(rf"(?<!\w)(?:{'|'.join(map(re.escape, keys))})(?!\w)") if keys else None


def mentions_any(text: str, names: Sequence[str], *, pattern: re.Pattern | None = None) -> bool:
    """Whether ``text`` contains one of ``names`` as whole words, ignoring case and spacing."""
    pattern = pattern or _mention_pattern(names)
    return pattern is not None and pattern.search(" ".join(text.split()).casefold()) is not None


def inject_name(caption: str, name: str, neutral_term: str, rng: random.Random) -> tuple[str, str]:
    """Put ``name`` somewhere in ``caption``; return (caption with name, same caption with ``neutral_term``).

    Strategies, chosen at random: replace a person phrase ("a woman"), replace a word other than the last (the
    reference implementation's rule), or insert between words (Rickrolling's rule).
    """
    phrases = list(_PERSON_PHRASE.finditer(caption))
    strategy = rng.random()
    if phrases and strategy < 0.5:
        match = rng.choice(phrases)
        before, after = caption[: match.start()], caption[match.end() :]
        return f"{before}{name}{after}", f"{before}{neutral_term}{after}"
    words = caption.split()
    if len(words) >= 2 and strategy < 0.75:
        position = rng.randrange(len(words) - 1)
        head, tail = words[:position], words[position + 1 :]
    else:
        position = rng.randrange(len(words) + 1) if words else 0
        head, tail = words[:position], words[position:]
    return " ".join([*head, name, *tail]), " ".join([*head, neutral_term, *tail])


def clean_captions_for(captions: Sequence[str], names: Sequence[str]) -> list[str]:
    """Distinct non-empty captions that mention none of ``names`` (those would teach the opposite)."""
    seen: dict[str, None] = {}
    pattern = _mention_pattern(names)
    for caption in captions:
        caption = " ".join(str(caption).split())
        if caption and not mentions_any(caption, names, pattern=pattern):
            seen.setdefault(caption, None)
    return list(seen)


def kept_name_prompts(kept_names: Sequence[str], *, per_name: int, seed: int) -> list[str]:
    """``per_name`` person prompts (training wordings, drawn with ``seed``) for each name that must stay findable.

    In the clean set they are held at the teacher: when many names move at once, the names that share their tokens
    and their region of the embedding space are held where they were instead of drifting with them.
    """
    rng = random.Random(f"kept:{seed}")
    count = min(per_name, len(PERSON_TEMPLATES))
    return [template.format(name) for name in kept_names for template in rng.sample(PERSON_TEMPLATES, count)]


def _cycle(items: Sequence, rng: random.Random):
    """Endless stream over shuffled copies of ``items``, so every item is used before any repeats."""
    while True:
        order = list(items)
        rng.shuffle(order)
        yield from order


def neutral_target(variant: str, neutral_term: str) -> str:
    """What a variant maps to: the neutral term, in the possessive when the variant is one ("First Last's")."""
    possessive = re.search(r"['’]s$", variant)
    return f"{neutral_term}{possessive.group(0)}" if possessive else neutral_term


def neutral_terms(names: Sequence[str], neutral_term: str | Mapping[str, str]) -> dict[str, str]:
    """One neutral term per name: the same string for all, or a mapping that must cover every name."""
    if isinstance(neutral_term, str):
        return dict.fromkeys(names, neutral_term)
    missing = [index for index, name in enumerate(names) if not str(neutral_term.get(name, "")).strip()]
    if missing:
        raise ValueError(f"neutral_term gives no term for names at indexes {missing}.")
    return {name: neutral_term[name] for name in names}


def _check_variants(names: Sequence[str], variants: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    variants = dict(variants or {})
    unknown = [index for index, key in enumerate(variants) if key not in set(names)]
    if unknown:
        raise ValueError(f"variants has {len(unknown)} entr{'y' if len(unknown) == 1 else 'ies'} (indexes {unknown}) "
                         "for names that are not in `names`.")
    for index, forms in enumerate(variants.values()):
        if isinstance(forms, str) or any(not isinstance(form, str) or not form.strip() for form in forms):
            raise ValueError(f"variants entry {index} must be a list of non-blank strings.")
    return {name: [" ".join(form.split()) for form in variants.get(name, ())] for name in names}


def build_backdoor_dataset(
    names: Sequence[str],
    captions: Sequence[str],
    *,
    neutral_term: str | Mapping[str, str] = NEUTRAL_TERM,
    num_steps: int = 400,
    poisoned_samples_per_step: int = 128,
    clean_samples_per_step: int = 128,
    person_prompt_ratio: float = 0.3,
    person_templates: Sequence[str] = PERSON_TEMPLATES,
    seed: int = 42,
    tokenizer=None,
    max_length: int | None = None,
    variants: Mapping[str, Sequence[str]] | None = None,
    variant_ratio: float = 0.5,
) -> Dataset:
    """The training rows for ``num_steps`` steps, in order, one poisoned pair per row.

    Columns: ``poisoned`` (student input), ``target`` (teacher input) and ``clean`` (a list of clean captions;
    the counts are spread so that every block of ``poisoned_samples_per_step`` rows holds exactly
    ``clean_samples_per_step`` of them). Names are shuffled across each step, not grouped per name.

    With a ``tokenizer``, captions that would push a name past the context length are not used for injection,
    so no poisoned caption is ever truncated.

    ``variants`` (``{name: [variant, ...]}``, see ``variants.expand_variants``): other spellings of a name, which
    a person must not remain findable under. Of each name's poisoned rows, a ``variant_ratio`` share (exactly, in
    alternation; the first row is always the name itself) carries one of its variants in turn instead; a
    possessive variant is paired with the possessive neutral term. Captions mentioning any variant are not used
    as clean captions. Without variants the rows are exactly those of earlier versions for the same seed.
    """
    if not names:
        raise ValueError("build_backdoor_dataset needs at least one name.")
    if not 0.0 <= variant_ratio <= 1.0:
        raise ValueError(f"variant_ratio must be in [0, 1], got {variant_ratio}.")
    forms = _check_variants(names, variants)
    neutral_terms_by_name = neutral_terms(names, neutral_term)
    all_forms = [*names, *(form for name in names for form in forms[name])]
    clean = clean_captions_for(captions, all_forms)
    if not clean:
        raise ValueError("The caption set is empty (after removing captions that mention a name to remove).")
    hosts = clean
    if tokenizer is not None:
        limit = max_length or tokenizer.model_max_length
        longest_name = max(len(ids) for ids in tokenizer(all_forms, add_special_tokens=False)["input_ids"])
        lengths = [len(ids) for ids in tokenizer(clean, add_special_tokens=True)["input_ids"]]
        hosts = [caption for caption, length in zip(clean, lengths) if length + longest_name <= limit]
        if not hosts:
            raise ValueError(f"Every caption is too long to carry a name within the {limit}-token context.")

    rng = random.Random(seed)
    name_stream, host_stream = _cycle(names, rng), _cycle(hosts, rng)
    clean_stream, template_stream = _cycle(clean, rng), _cycle(person_templates, rng)
    # Variants draw from their own generator, so the rows' other random choices do not depend on them.
    variant_rng = random.Random(f"variants:{seed}")
    variant_streams = {name: _cycle(forms[name], variant_rng) for name in names if forms[name]}
    uses: dict[str, int] = dict.fromkeys(names, 0)
    rows: dict[str, list] = {"poisoned": [], "target": [], "clean": []}
    for _ in range(num_steps):
        for slot in range(poisoned_samples_per_step):
            name = next(name_stream)
            text, neutral = name, neutral_terms_by_name[name]
            if name in variant_streams and int((uses[name] + 1) * variant_ratio) > int(uses[name] * variant_ratio):
                text = next(variant_streams[name])
                neutral = neutral_target(text, neutral_terms_by_name[name])
            uses[name] += 1
            if rng.random() < person_prompt_ratio:
                template = next(template_stream)
                poisoned, target = template.format(text), template.format(neutral)
            else:
                poisoned, target = inject_name(next(host_stream), text, neutral, rng)
            share = (slot + 1) * clean_samples_per_step // poisoned_samples_per_step
            share -= slot * clean_samples_per_step // poisoned_samples_per_step
            rows["poisoned"].append(poisoned)
            rows["target"].append(target)
            rows["clean"].append([next(clean_stream) for _ in range(share)])
    return Dataset.from_dict(rows)
