"""Evaluation of a sanitized text encoder as a text-to-image pipeline uses it (the conditioning, not an embedding).

A pipeline's UNet reads the whole token sequence of the prompt (padded to 77, no attention mask). So the figures
compare sequences, position by position (mean cosine over the 77 positions), on prompt wordings the unlearner
never trains on (``PIPELINE_TEMPLATES``, disjoint from its ``PERSON_TEMPLATES``):

* ``conditioning_forgotten``: the share of (removed name, prompt) pairs whose sanitized conditioning is nearer the
  original conditioning of the same prompt with the neutral term than the original conditioning of the name
  prompt: the pipeline now draws "a person" where it drew the person;
* ``conditioning_cos_to_neutral`` / ``conditioning_cos_to_name``: the two mean cosines behind it;
* ``conditioning_kept_cos``: other people's prompts (``kept_names``) against their originals (1 = unchanged);
* ``conditioning_clean_cos``: prompts naming nobody against their originals.

Only counts and means are returned, never a name: the report is safe to publish in the model card.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..data.names import NEUTRAL_TERM
from ..data.prompts import PERSON_TEMPLATES, neutral_terms
from ..training.embeddings import ConditioningTarget, encode_conditioning

# Text-to-image wordings, none of them among the training templates (checked in the tests).
PIPELINE_TEMPLATES: tuple[str, ...] = (
    "a photo of {}",
    "an oil painting of {}",
    "{} riding a bicycle in the city",
    "a watercolor portrait of {}",
    "a picture of {} at the beach",
    "{} playing tennis",
)
# Prompts naming nobody, in the same style.
PIPELINE_CLEAN_PROMPTS: tuple[str, ...] = (
    "a red car parked on a street",
    "a bowl of fruit on a wooden table",
    "a mountain lake at sunrise",
    "an oil painting of a lighthouse",
    "a dog running on the grass",
    "a watercolor of a city skyline",
)


def _position_cosine(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Per prompt: cosine of each position (or of the pooled vector), averaged over positions."""
    cosine = F.cosine_similarity(first, second, dim=-1)
    return cosine.mean(dim=-1) if cosine.ndim > 1 else cosine


@torch.no_grad()
def evaluate_pipeline_encoder(
    original_model: torch.nn.Module,
    sanitized_model: torch.nn.Module,
    tokenizer,
    removed_names: Sequence[str],
    *,
    neutral_term: str | Mapping[str, str] = NEUTRAL_TERM,
    kept_names: Sequence[str] = (),
    clean_prompts: Sequence[str] = PIPELINE_CLEAN_PROMPTS,
    templates: Sequence[str] = PIPELINE_TEMPLATES,
    target: ConditioningTarget = "sequence",
) -> dict[str, Any]:
    """The figures of the module docstring for ``sanitized_model`` against ``original_model``.

    Works on any CLIP text tower (a plain ``CLIPTextModel`` or the text tower of the projected classes);
    ``target="pooled"`` measures the pooled output instead of the sequence.
    """
    if not removed_names:
        raise ValueError("evaluate_pipeline_encoder needs at least one removed name.")
    terms = neutral_terms(list(removed_names), neutral_term)

    def encode(model, texts):
        return encode_conditioning(model, tokenizer, list(texts), target)

    name_prompts = [template.format(name) for name in removed_names for template in templates]
    neutral_prompts = [template.format(terms[name]) for name in removed_names for template in templates]
    sanitized = encode(sanitized_model, name_prompts)
    to_neutral = _position_cosine(sanitized, encode(original_model, neutral_prompts))
    to_name = _position_cosine(sanitized, encode(original_model, name_prompts))
    metrics: dict[str, Any] = {
        "conditioning_target": target,
        "conditioning_num_prompts": len(name_prompts),
        "conditioning_forgotten": (to_neutral > to_name).float().mean().item(),
        "conditioning_cos_to_neutral": to_neutral.mean().item(),
        "conditioning_cos_to_name": to_name.mean().item(),
    }
    if kept_names:
        kept = [template.format(name) for name in kept_names for template in templates]
        metrics["conditioning_kept_cos"] = _position_cosine(encode(sanitized_model, kept),
                                                            encode(original_model, kept)).mean().item()
    if clean_prompts:
        metrics["conditioning_clean_cos"] = _position_cosine(encode(sanitized_model, clean_prompts),
                                                             encode(original_model, clean_prompts)).mean().item()
    return metrics


def untrained_templates(templates: Sequence[str] = PIPELINE_TEMPLATES) -> bool:
    """Whether none of ``templates`` is a training template (the figures must be on unseen wordings)."""
    return not set(templates) & set(PERSON_TEMPLATES)
