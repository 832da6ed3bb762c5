"""Named settings of the identity inference attack, and the default pool of candidate names.

An IDIA figure means little without its protocol: how many names the model chooses from, which prompts, how many
pictures of each person and how many prompts must find them. ``IDIA_PROTOCOLS`` names the two used here:

- ``"project"``: the pool as given (the default pool below when none is), every picture given, 21 prompts, τ = 1;
- ``"paper"``: the defence paper's (arXiv 2310.08320; docs/method.md): 21 prompts, a 1,000-name pool (the given pool
  filled up with invented names), 20 pictures per person, τ = 1.

Without a pool of candidate names the attack is still possible: ``default_candidate_pool`` invents names of the same
shape ("First Last") around the evaluated people, so that a model must single each person out among many.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..data.pseudonyms import _free_parts, _words
from .templates import IDIA_TEMPLATES

DEFAULT_POOL_SIZE = 1000


@dataclass(frozen=True)
class IDIAProtocol:
    """How the attack is run. ``pool_size``: the pool is filled with invented names up to this size (``None``: the
    pool as given); ``images_per_person``: at most this many pictures each (``None``: all)."""

    name: str
    templates: tuple[str, ...] = IDIA_TEMPLATES
    pool_size: int | None = None
    images_per_person: int | None = None
    min_correct_prompts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "templates": list(self.templates)}


IDIA_PROTOCOLS: dict[str, IDIAProtocol] = {
    "project": IDIAProtocol("project"),
    "paper": IDIAProtocol("paper", pool_size=DEFAULT_POOL_SIZE, images_per_person=20),
}
ProtocolName = Literal["project", "paper"]


def idia_protocol(protocol: str | IDIAProtocol) -> IDIAProtocol:
    """The protocol named ``protocol`` (``"project"`` or ``"paper"``), or ``protocol`` itself."""
    if isinstance(protocol, IDIAProtocol):
        return protocol
    if protocol not in IDIA_PROTOCOLS:
        raise ValueError(f"Unknown IDIA protocol {protocol!r}; choose one of {sorted(IDIA_PROTOCOLS)}.")
    return IDIA_PROTOCOLS[protocol]


def default_candidate_pool(people: Sequence[str], size: int = DEFAULT_POOL_SIZE, *, seed: int = 0,
                           reserved: Sequence[str] = ()) -> list[str]:
    """``people`` plus invented "First Last" names up to ``size`` names, the same for the same inputs.

    The invented names share no word with ``people`` or ``reserved``, so none is a spelling of an evaluated person.
    """
    people = list(dict.fromkeys(people))
    missing = max(0, size - len(people))
    firsts, lasts = _free_parts(_words([*people, *reserved]))
    combinations = [f"{first} {last}" for first in firsts for last in lasts]
    if missing > len(combinations):
        raise ValueError(f"Can invent at most {len(combinations)} names for the pool; ask for a smaller pool.")
    random.Random(f"idia-pool:{seed}").shuffle(combinations)
    return people + combinations[:missing]


def apply_protocol(protocol: IDIAProtocol, face_images: Mapping[str, Sequence], candidate_names: Sequence[str] | None,
                   ) -> tuple[dict[str, list], list[str]]:
    """The faces and pool the attack uses under ``protocol``: at most ``images_per_person`` pictures each; the given
    pool filled up to ``pool_size``, or the default pool around the people with faces when no pool is given."""
    faces = {name: list(images)[: protocol.images_per_person] for name, images in face_images.items()}
    if candidate_names is None:
        pool = default_candidate_pool(list(faces), protocol.pool_size or DEFAULT_POOL_SIZE)
    else:
        pool = list(candidate_names)
        if protocol.pool_size and len(pool) < protocol.pool_size:
            pool = default_candidate_pool(pool, protocol.pool_size)
    return faces, pool


def protocol_metrics(protocol: IDIAProtocol, faces: Mapping[str, Sequence], pool: Sequence[str],
                     default_pool: bool) -> dict[str, Any]:
    """The protocol as report entries (``idia_protocol_*``): the card states them next to the figures."""
    counts = [len(images) for images in faces.values()]
    return {
        "idia_protocol": protocol.name,
        "idia_protocol_pool_size": len(pool),
        "idia_protocol_default_pool": default_pool,
        "idia_protocol_num_prompts": len(protocol.templates),
        "idia_protocol_images_per_person": min(counts) if counts else 0,
        "idia_protocol_images_per_person_max": max(counts) if counts else 0,
        "idia_protocol_min_correct_prompts": protocol.min_correct_prompts,
    }
