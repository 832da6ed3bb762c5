"""Pseudonyms: an invented name of its own for each removed person, the text tower's target with both towers and
with long lists (``use_pseudonyms``).

Why not "a person" there: the paper maps every removed *name* to one neutral caption and every removed *face* to
one anonymous face (the mean of many faces). Edit both towers and the two points meet: a model that saw unnamed
faces captioned "a person" embeds the anonymous face closest to "a photo of a person", so it retrieves the removed
names before anybody else's, and the small identity left in both towers picks the right one among them. Mapping
each name to an invented name the model never learned makes a removed name look like the name of someone the
model never saw, one among the many such names an attacker must try, and the anonymous face no longer singles it
out. The same happens with one tower and many names: the more names sit at "a person", the better a face matches
that one point, and the removed names win as a group. Measured figures: ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence

from .prompts import PERSON_TEMPLATES

# Above this many names the text tower maps names to pseudonyms by default (``use_pseudonyms``). With the demo's
# text settings on two full demo worlds, "a person" left TPR 0.0 and 0.10 at 10 names and 0.06–0.28 at 16 to 64,
# pseudonyms 0.00–0.03 at every count from 10 to 64, and at 1,000 names "a person" stays at 0.16–0.30
# (benchmarks/RESULTS.md, issue 17).
PSEUDONYMS_ABOVE = 10


def use_pseudonyms(pseudonyms: bool | None, num_names: int, encoder: str, neutral_term_given: bool = False) -> bool:
    """Whether the text tower maps names to pseudonyms: ``pseudonyms`` when set; by default with both towers, and
    with more than ``PSEUDONYMS_ABOVE`` names unless the caller chose a ``neutral_term``."""
    if pseudonyms is not None:
        return bool(pseudonyms)
    return encoder == "both" or (num_names > PSEUDONYMS_ABOVE and not neutral_term_given)


# Name parts.  Invented, uncommon-looking names: any match with a real person is accidental.  The demo world draws
# its people's names from the same parts (``demo.world.generate_names``), so its pseudonyms look like its names.
# fmt: off
FIRST_NAME_STARTS = (
    "Al", "Bel", "Cor", "Dar", "El", "Fen", "Gal", "Hal", "Is", "Jor", "Kel", "Lor", "Mar", "Nev", "Or",
    "Per", "Quen", "Ros", "Sel", "Tor", "Ul", "Val", "Wyn", "Xan", "Yor", "Zel", "Bram", "Cael", "Dov", "Eir",
    "Fio", "Gry", "Hes", "Iv", "Jas", "Kav", "Lys", "Myr", "Nim", "Oph", "Pel", "Ril", "Sab", "Tam", "Vey",
    "Wil", "Zor", "Ald", "Bry", "Cas",
)
FIRST_NAME_ENDS = (
    "a", "ia", "en", "ric", "wen", "ion", "ora", "ette", "anne", "ius", "ey", "ith", "dra", "mir", "ona",
    "el", "ynn", "ara", "ivan", "ho", "ulf", "ine", "os", "ek",
)
LAST_NAME_STARTS = (
    "Ash", "Bramble", "Cinder", "Dun", "Elder", "Fern", "Gold", "Hollow", "Iron", "Juniper", "Kettle",
    "Larch", "Moss", "North", "Oak", "Pebble", "Quill", "Raven", "Stone", "Thorn", "Umber", "Vale", "Willow",
    "Yarrow", "Amber", "Birch", "Copper", "Drift", "Ember", "Frost", "Glen", "Heather", "Ivy", "Kestrel",
    "Lark", "Marsh", "Nettle", "Orchard", "Pine", "Rook", "Sorrel", "Tansy", "Wren", "Alder", "Bracken",
    "Corrie",
)
LAST_NAME_ENDS = (
    "wick", "more", "ford", "holt", "mere", "stead", "ridge", "vane", "by", "worth", "well", "field", "combe",
    "ley", "shaw", "ton", "dale", "brook", "hurst", "gate",
)
# fmt: on
# A middle syllable grows each pool about eightfold (start + middle + end), for the many names of a large world or a
# large batch of removals; the two-part names come first, so small draws stay as they were.
MIDDLE_SYLLABLES = ("an", "er", "ol", "is", "ur", "en", "ar", "il")


def name_parts(starts: Sequence[str], ends: Sequence[str], needed: int = 0) -> list[str]:
    """Sorted ``start + end`` parts, followed by sorted ``start + middle + end`` ones when fewer than ``needed``."""
    parts = sorted({start + end for start in starts for end in ends})
    if len(parts) < needed:
        known = set(parts)
        parts += sorted(
            {start + middle + end for start in starts for middle in MIDDLE_SYLLABLES for end in ends} - known
        )
    return parts


def _words(texts: Iterable[str]) -> set[str]:
    return {word.lower() for text in texts for word in re.findall(r"\w+", text)}


def _free_parts(blocked: set[str], needed: int = 0) -> tuple[list[str], list[str]]:
    """First and last name parts none of which is a ``blocked`` word; no part is both a first and a last name.

    Three-syllable parts join the two-syllable ones when fewer than ``needed`` of either are free.
    """

    def free(extended: bool) -> tuple[list[str], list[str]]:
        size = needed + len(blocked) if extended else 0
        firsts = [part for part in name_parts(FIRST_NAME_STARTS, FIRST_NAME_ENDS, size) if part.lower() not in blocked]
        lasts = [part for part in name_parts(LAST_NAME_STARTS, LAST_NAME_ENDS, size)
                 if part.lower() not in blocked and part not in firsts]
        return firsts, lasts

    firsts, lasts = free(extended=False)
    return (firsts, lasts) if min(len(firsts), len(lasts)) >= needed else free(extended=True)


def _draw(count: int, blocked: set[str], stream: str) -> list[str]:
    firsts, lasts = _free_parts(blocked, count)
    if count > min(len(firsts), len(lasts)):
        raise ValueError(f"Can invent at most {min(len(firsts), len(lasts))} pseudonyms with distinct parts here, "
                         f"for {count} names; remove the people in several runs or pass pseudonyms=False (every "
                         "name maps to neutral_term).")
    rng = random.Random(stream)
    rng.shuffle(firsts)
    rng.shuffle(lasts)
    return [f"{first} {last}" for first, last in zip(firsts[:count], lasts[:count])]


def invent_pseudonyms(names: Sequence[str], *, seed: int = 42, reserved: Iterable[str] = ()) -> dict[str, str]:
    """``{name: "First Last"}``: a distinct invented name for each of ``names``, the same for the same inputs.

    No part of a pseudonym is a word of ``names`` or of ``reserved`` (pass the training captions and the names
    that must stay findable: a pseudonym sharing a kept person's surname would pull the removed name toward them),
    and no two pseudonyms share a part.

    Raises:
        ValueError: more names than distinct parts are left to invent from.
    """
    drawn = _draw(len(names), _words([*names, *reserved]), f"pseudonyms:{seed}")
    return dict(zip(names, drawn))


def anchor_captions(pseudonyms: Mapping[str, str], *, count: int = 128, seed: int = 42, reserved: Iterable[str] = (),
                    templates: Sequence[str] = PERSON_TEMPLATES) -> list[str]:
    """Clean captions naming ``count`` *other* invented people (fewer if parts run out), two templates each.

    Why: the backdoor moves each removed name onto its pseudonym, and nothing else holds the names the model never
    learned in place; they drift with it, and faces the image tower has blurred then match them (full demo world,
    both towers, 16 removed: 14 other members lost, 8 with these captions in the utility loss, which keeps them at
    the teacher). Their parts avoid the pseudonyms, the names and ``reserved``.
    """
    blocked = _words([*pseudonyms, *pseudonyms.values(), *reserved])
    count = min(count, *map(len, _free_parts(blocked, count)))
    people = _draw(count, blocked, f"anchors:{seed}")
    return [templates[(index + offset) % len(templates)].format(person)
            for index, person in enumerate(people) for offset in (0, 1)]
