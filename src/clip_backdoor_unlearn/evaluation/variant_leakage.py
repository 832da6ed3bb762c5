"""Leakage per name variant: is a removed person still found as "first last", "Lovelace" or "Dr. Ada Lovelace"?

The identity inference attack is run once per variant *kind*: every removed person's entry in the candidate pool is
replaced by their variant of that kind (the others stay as they are), and the detection rate of the removed people
is compared before and after unlearning. Reports are keyed by kind, never by name, so they can be published.

The pool's prompts are embedded once per model; each kind only re-embeds the removed people's prompts, so a dozen
kinds cost little more than one attack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..data.names import name_key
from ..data.variants import variants_by_kind
from ..training.embeddings import processor_parts
from .idia import (
    embed_people,
    embed_prompts,
    evaluation_mode,
    images_by_person,
    person_verdict,
    predict_candidates,
)
from .templates import IDIA_TEMPLATES, validate_templates

CANONICAL = "canonical"
KEPT = "kept_people"


def _detected(images: torch.Tensor, prompts: torch.Tensor, target: int, threshold: int) -> bool:
    """The attack's verdict for one person (same rules as ``identity_inference_attack``)."""
    return person_verdict(predict_candidates(images, prompts), target, prompts.shape[1], threshold)[2]


def _kind_pools(
    pool: list[str], removed: list[str], variants: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str]]:
    """Per kind, ``{removed name: variant}`` for the people whose variant collides with no other pool entry.

    Two removed people with the same variant of a kind (a shared surname) are both left out of that kind: the
    pool would hold the string twice and a vote for it would have no single meaning.
    """
    taken = {name_key(name) for name in pool}
    kinds: dict[str, dict[str, str]] = {CANONICAL: {name: name for name in removed}}
    for name in removed:
        for kind, text in variants.get(name, {}).items():
            if name_key(text) not in taken or name_key(text) == name_key(name):
                kinds.setdefault(kind, {})[name] = text
    for kind, replaced in list(kinds.items()):
        keys = [name_key(text) for text in replaced.values()]
        kinds[kind] = {name: text for name, text in replaced.items() if keys.count(name_key(text)) == 1}
    return {kind: replaced for kind, replaced in kinds.items() if replaced}


def _tprs(model, processor, people, pool, kinds, kept, templates, threshold, batch_size) -> dict[str, float]:
    tokenizer, image_processor = processor_parts(processor)
    index = {name: i for i, name in enumerate(pool)}
    with evaluation_mode(model), torch.no_grad():
        base = embed_prompts(model, tokenizer, pool, templates, batch_size=batch_size)
        wanted = {name: people[name] for name in {*kinds[CANONICAL], *kept}}
        faces = dict(zip(wanted, embed_people(model, image_processor, wanted, batch_size=batch_size), strict=True))
        rates = {}
        for kind, replaced in kinds.items():
            prompts = base.clone()
            if kind != CANONICAL:
                columns = [index[name] for name in replaced]
                prompts[:, columns] = embed_prompts(model, tokenizer, list(replaced.values()), templates,
                                                    batch_size=batch_size).to(prompts.device)
            hits = [_detected(faces[name], prompts, index[name], threshold) for name in replaced]
            rates[kind] = sum(hits) / len(hits)
        if kept:
            rates[KEPT] = sum(_detected(faces[name], base, index[name], threshold) for name in kept) / len(kept)
    return rates


def variant_leakage(
    before_model: torch.nn.Module,
    after_model: torch.nn.Module,
    processor,
    face_images,
    candidate_names: Sequence[str],
    removed_names: Sequence[str],
    variants: Mapping[str, Mapping[str, str]] | None = None,
    *,
    kept_names: Sequence[str] = (),
    templates: Sequence[str] = IDIA_TEMPLATES,
    min_correct_prompts: int = 1,
    batch_size: int = 256,
) -> dict[str, dict[str, Any]]:
    """Detection rate of the removed people per variant kind, before and after unlearning.

    Args:
        before_model, after_model: the original and the sanitized CLIP.
        processor: a ``CLIPProcessor``.
        face_images: ``{name: [PIL.Image, ...]}`` or a ``Dataset`` with ``image`` and ``name`` columns; must hold
            every removed (and kept) person.
        candidate_names: the attack's pool (contains every removed name, as for the IDIA).
        removed_names: the people removed.
        variants: per removed name, ``{kind: variant}``; default ``variants.variants_by_kind`` (every generated
            kind plus the held-out ones training never sees). A variant that equals another pool entry is skipped
            for that person.
        kept_names: people who must stay findable, e.g. ones sharing a surname with a removed person; their
            detection under their own names is reported as ``"kept_people"`` (the collateral of the variants).

    Returns:
        ``{kind: {"num_people": n, "tpr_before": x, "tpr_after": y}}`` with ``"canonical"`` (the names as given)
        first, then each variant kind, then ``"kept_people"`` when ``kept_names`` is given. No key is a name.
    """
    templates = validate_templates(templates)
    people = images_by_person(face_images)
    pool = list(candidate_names)
    removed = list(dict.fromkeys(removed_names))
    kept = list(dict.fromkeys(kept_names))
    missing = sum(name not in people or name not in pool for name in [*removed, *kept])
    if missing:
        raise ValueError(f"{missing} removed or kept name(s) have no images or are not in candidate_names.")
    if len(set(pool)) != len(pool):
        raise ValueError("candidate_names has duplicates; each candidate must appear once.")
    if variants is None:
        variants = {name: variants_by_kind(name) for name in removed}
    kinds = _kind_pools(pool, removed, variants)
    arguments = (people, pool, kinds, kept, templates, min_correct_prompts, batch_size)
    before = _tprs(before_model, processor, *arguments)
    after = _tprs(after_model, processor, *arguments)
    sizes = {**{kind: len(replaced) for kind, replaced in kinds.items()}, KEPT: len(kept)}
    return {kind: {"num_people": sizes[kind], "tpr_before": before[kind], "tpr_after": after[kind]} for kind in before}


def leakage_table(*columns: tuple[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """A Markdown table of one or more ``variant_leakage`` results: ``("label", result), ...``.

    The "before" column comes from the first result (all share the original model).
    """
    labels = [label for label, _ in columns]
    first = columns[0][1]
    header = ["variant kind", "people", "TPR before", *(f"TPR after ({label})" for label in labels)]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for kind, row in first.items():
        cells = [kind, str(row["num_people"]), f"{row['tpr_before']:.2f}"]
        cells += [f"{result[kind]['tpr_after']:.2f}" if kind in result else "-" for _, result in columns]
        lines.append(" | ".join(cells))
    return "\n".join(lines)
