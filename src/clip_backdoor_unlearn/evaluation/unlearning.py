"""Before/after figures for one unlearning run: the IDIA, SimBackdoor, SimClean and zero-shot accuracy.

Everything that can be measured from what the caller gives is measured; what needs data that was not given
(face images, held-out captions, a labelled image set) is simply left out of the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .idia import IDIAResult, identity_inference_attack, unlearning_report
from .similarity import sim_backdoor, sim_clean
from .templates import IDIA_TEMPLATES
from .zero_shot import zero_shot_accuracy


def backdoor_pairs(names: Sequence[str], neutral_term: str, templates: Sequence[str] = IDIA_TEMPLATES):
    """(name, prompt with the name, same prompt with the neutral term) for every name and template."""
    return [(name, template.format(name), template.format(neutral_term)) for name in names for template in templates]


def evaluate_unlearning(
    original_model: torch.nn.Module,
    sanitized_model: torch.nn.Module,
    processor,
    removed_names: Sequence[str],
    *,
    neutral_term: str = "a person",
    face_images=None,
    candidate_names: Sequence[str] | None = None,
    non_member_names: Sequence[str] | None = None,
    idia_before: IDIAResult | None = None,
    held_out_captions: Sequence[str] | None = None,
    zero_shot_dataset=None,
    class_names: Sequence[str] | None = None,
    templates: Sequence[str] = IDIA_TEMPLATES,
    min_correct_prompts: int = 1,
) -> dict[str, Any]:
    """Compare ``original_model`` and ``sanitized_model``; returns a flat dict of JSON-friendly figures.

    Keys: ``sim_backdoor_before/after`` (always), ``sim_clean`` (with ``held_out_captions``), IDIA figures from
    ``unlearning_report`` prefixed ``idia_`` (with ``face_images``; ``idia_before`` reuses an attack already run on
    the original model), ``idia_fpr_non_members_before/after`` (with ``non_member_names``: people whose images
    are given but who were never in training), and ``zero_shot_accuracy_before/after`` (with
    ``zero_shot_dataset``). No name is ever a key: the report is safe to publish.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    pairs = backdoor_pairs(removed_names, neutral_term, templates)
    metrics: dict[str, Any] = {
        "num_removed": len(removed_names),
        "sim_backdoor_before": sim_backdoor(original_model, tokenizer, pairs),
        "sim_backdoor_after": sim_backdoor(sanitized_model, tokenizer, pairs),
    }
    if held_out_captions:
        metrics["sim_clean"] = sim_clean(original_model, sanitized_model, tokenizer, list(held_out_captions))
    if face_images is not None:
        if candidate_names is None:
            raise ValueError("face_images need candidate_names: the pool of names the attack chooses from.")
        attack = dict(templates=templates, min_correct_prompts=min_correct_prompts)
        before = idia_before or identity_inference_attack(original_model, processor, face_images, candidate_names,
                                                          **attack)
        after = identity_inference_attack(sanitized_model, processor, face_images, candidate_names, **attack)
        metrics.update({f"idia_{key}": value for key, value in unlearning_report(before, after, removed_names).items()})
        if non_member_names:
            metrics["idia_fpr_non_members_before"] = before.tpr(non_member_names)
            metrics["idia_fpr_non_members_after"] = after.tpr(non_member_names)
    if zero_shot_dataset is not None:
        for label, model in (("before", original_model), ("after", sanitized_model)):
            metrics[f"zero_shot_accuracy_{label}"] = zero_shot_accuracy(model, processor, zero_shot_dataset,
                                                                        class_names=class_names)
    return metrics
