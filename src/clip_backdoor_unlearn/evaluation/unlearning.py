"""Before/after figures for one unlearning run: the IDIA, image-to-image retrieval, SimBackdoor, SimClean, zero-shot.

Everything that can be measured from what the caller gives is measured; what needs data that was not given
(face images, held-out captions, a labelled image set) is simply left out of the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..data.names import NEUTRAL_TERM
from ..data.prompts import neutral_terms
from ..training.embeddings import processor_parts
from .idia import IDIAResult, identity_inference_attack, images_by_person, unlearning_report
from .image_retrieval import image_retrieval_attack
from .protocol import IDIAProtocol, apply_protocol, protocol_metrics
from .protocol import idia_protocol as resolve_protocol
from .similarity import sim_backdoor, sim_clean, sim_clean_images, sim_to_target
from .templates import IDIA_TEMPLATES
from .variant_leakage import variant_leakage
from .zero_shot import paired_accuracy_change, zero_shot_hits


def backdoor_pairs(names: Sequence[str], neutral_term: str | Mapping[str, str],
                   templates: Sequence[str] = IDIA_TEMPLATES):
    """(name, prompt with the name, same prompt with its neutral term) for every name and template.

    ``neutral_term``: one term for every name, or ``{name: term}`` (the pseudonyms of ``encoder="both"``).
    """
    terms = neutral_terms(names, neutral_term)
    return [(name, template.format(name), template.format(terms[name])) for name in names for template in templates]


def evaluate_unlearning(
    original_model: torch.nn.Module,
    sanitized_model: torch.nn.Module,
    processor,
    removed_names: Sequence[str],
    *,
    neutral_term: str | Mapping[str, str] = NEUTRAL_TERM,
    face_images=None,
    gallery_images=None,
    candidate_names: Sequence[str] | None = None,
    non_member_names: Sequence[str] | None = None,
    idia_before: IDIAResult | None = None,
    held_out_captions: Sequence[str] | None = None,
    zero_shot_dataset=None,
    class_names: Sequence[str] | None = None,
    zero_shot_templates: Sequence[str] | None = None,
    target_embedding: torch.Tensor | None = None,
    clean_images: Sequence | None = None,
    templates: Sequence[str] | None = None,
    min_correct_prompts: int | None = None,
    name_variants: bool = False,
    kept_names: Sequence[str] = (),
    idia_protocol: str | IDIAProtocol = "project",
    show_progress_bar: bool = False,
) -> dict[str, Any]:
    """Compare ``original_model`` and ``sanitized_model``; returns a flat dict of JSON-friendly figures.

    Keys: ``sim_backdoor_before/after`` (when there is a text tower), ``sim_clean`` (with ``held_out_captions``),
    IDIA figures from ``unlearning_report`` prefixed ``idia_`` (with ``face_images``; ``idia_before`` reuses an
    attack already run on the original model), ``idia_fpr_non_members_before/after`` (with ``non_member_names``:
    people whose images are given but who were never in training), and ``zero_shot_accuracy_before/after`` (with
    ``zero_shot_dataset``, prompts from ``zero_shot_templates`` when given) with
    ``zero_shot_accuracy_change_ci95``, the 95 % half-width of their difference picture by picture
    (``paired_accuracy_change``: how far the change can be from the truth by the luck of the pictures drawn);
    ``sim_target_before/after`` and
    ``sim_clean_images`` for the image tower (see ``_image_tower_metrics``). With ``name_variants=True`` (and
    ``face_images``) the attack is repeated with each removed person's name replaced by a variant of each kind
    (``variant_leakage``): ``idia_variant_{kind}_tpr_before/after``; ``kept_names`` adds
    ``idia_variant_kept_people_tpr_before/after`` for people who must stay findable (e.g. sharing a surname with a
    removed person). With ``gallery_images`` too (many people's pictures, each removed person's *other* pictures
    among them) the image-to-image attack (``evaluation.image_retrieval``) runs with all of ``face_images`` as the
    queries (the IDIA protocol's cap on pictures does not apply): ``image_retrieval_tpr_removed_before/after`` and
    ``image_retrieval_tpr_others_before/after`` (see ``_image_retrieval_metrics``). No name is ever a key: the
    report is safe to publish.

    The attack follows ``idia_protocol`` (``"project"`` or ``"paper"``, ``evaluation.protocol``; ``templates`` and
    ``min_correct_prompts`` override its own); without ``candidate_names`` it uses ``default_candidate_pool``. The
    protocol is reported as ``idia_protocol_*`` entries (pool size, prompts, pictures per person, threshold).
    ``idia_before`` must come from the same faces and pool. ``zero_shot_top5_accuracy_before/after`` come with the
    top-1 figures when there are more than five classes.
    """
    protocol = resolve_protocol(idia_protocol)
    templates = tuple(templates) if templates is not None else protocol.templates
    min_correct_prompts = min_correct_prompts or protocol.min_correct_prompts
    tokenizer, _ = processor_parts(processor)
    metrics: dict[str, Any] = {"num_removed": len(removed_names)}
    if hasattr(tokenizer, "tokenize"):  # a standalone image tower has no text side to compare
        pairs = backdoor_pairs(removed_names, neutral_term, templates)
        metrics["sim_backdoor_before"] = sim_backdoor(original_model, tokenizer, pairs)
        metrics["sim_backdoor_after"] = sim_backdoor(sanitized_model, tokenizer, pairs)
    if held_out_captions:
        metrics["sim_clean"] = sim_clean(original_model, sanitized_model, tokenizer, list(held_out_captions))
    if gallery_images is not None:
        metrics.update(_image_retrieval_metrics(original_model, sanitized_model, processor, removed_names,
                                                face_images, gallery_images, show_progress_bar))
    if face_images is not None:
        face_images, candidate_names, default_pool = _attack_inputs(protocol, face_images, candidate_names)
        metrics.update(protocol_metrics(protocol, face_images, candidate_names, default_pool))
        metrics["idia_protocol_num_prompts"] = len(templates)
        metrics["idia_protocol_min_correct_prompts"] = min_correct_prompts
        attack = dict(templates=templates, min_correct_prompts=min_correct_prompts,
                      show_progress_bar=show_progress_bar)
        before = idia_before or identity_inference_attack(original_model, processor, face_images, candidate_names,
                                                          **attack)
        after = identity_inference_attack(sanitized_model, processor, face_images, candidate_names, **attack)
        metrics.update({f"idia_{key}": value for key, value in unlearning_report(before, after, removed_names).items()})
        if non_member_names:
            metrics["idia_fpr_non_members_before"] = before.tpr(non_member_names)
            metrics["idia_fpr_non_members_after"] = after.tpr(non_member_names)
        if name_variants:
            leakage = variant_leakage(original_model, sanitized_model, processor, face_images, candidate_names,
                                      removed_names, kept_names=kept_names, templates=templates,
                                      min_correct_prompts=min_correct_prompts)
            for kind, row in leakage.items():
                metrics[f"idia_variant_{kind}_tpr_before"] = row["tpr_before"]
                metrics[f"idia_variant_{kind}_tpr_after"] = row["tpr_after"]
    metrics.update(_image_tower_metrics(original_model, sanitized_model, processor, removed_names, face_images,
                                        target_embedding, clean_images))
    if zero_shot_dataset is not None:
        hits = {}
        for label, model in (("before", original_model), ("after", sanitized_model)):
            options = {"templates": zero_shot_templates} if zero_shot_templates else {}
            hits[label] = zero_shot_hits(model, processor, zero_shot_dataset, class_names=class_names, top_k=(1, 5),
                                         show_progress_bar=show_progress_bar, **options)
            metrics[f"zero_shot_accuracy_{label}"] = float(hits[label][1].float().mean())
            if 5 in hits[label]:
                metrics[f"zero_shot_top5_accuracy_{label}"] = float(hits[label][5].float().mean())
        metrics["zero_shot_accuracy_change_ci95"] = paired_accuracy_change(hits["before"][1], hits["after"][1])[1]
    return metrics


def _attack_inputs(protocol: IDIAProtocol, face_images, candidate_names):
    """Faces as ``{name: images}`` and the pool, under ``protocol``; whether the pool is the default one."""
    faces, pool = apply_protocol(protocol, images_by_person(face_images), candidate_names)
    return faces, pool, candidate_names is None


def _image_retrieval_metrics(original_model, sanitized_model, processor, removed_names, face_images, gallery_images,
                             show_progress_bar: bool) -> dict[str, Any]:
    """The image-to-image attack before and after: each person in both ``face_images`` and ``gallery_images`` queries.

    Every removed person must be in both. ``image_retrieval_tpr_others_*`` is the share of the other query people
    identified; ``image_retrieval_protocol_*`` gives the gallery's size and the number of others (counts only).
    """
    if face_images is None or gallery_images is face_images:
        raise ValueError("gallery_images needs face_images as the queries, and other pictures than the gallery's.")
    gallery = images_by_person(gallery_images)
    queries = {name: images for name, images in images_by_person(face_images).items() if name in gallery}
    removed = list(dict.fromkeys(removed_names))
    missing = sum(name not in queries for name in removed)
    if missing:
        raise ValueError(f"{missing} of the {len(removed)} removed people lack face_images or gallery_images; the "
                         "image-to-image attack needs both for each.")
    removed_set = set(removed)
    others = [name for name in queries if name not in removed_set]
    metrics: dict[str, Any] = {"image_retrieval_protocol_gallery_people": len(gallery),
                               "image_retrieval_protocol_gallery_images": sum(map(len, gallery.values())),
                               "image_retrieval_protocol_num_others": len(others)}
    for label, model in (("before", original_model), ("after", sanitized_model)):
        result = image_retrieval_attack(model, processor, queries, gallery, show_progress_bar=show_progress_bar)
        metrics[f"image_retrieval_tpr_removed_{label}"] = result.tpr(removed)
        if others:
            metrics[f"image_retrieval_tpr_others_{label}"] = result.tpr(others)
    return metrics


def _image_tower_metrics(original_model, sanitized_model, processor, removed_names, face_images, target_embedding,
                         clean_images) -> dict[str, float]:
    """Image-tower figures: the removed people's (fresh) faces against the anonymous target, and clean images.

    ``sim_target_before/after``: mean cosine of the removed people's images in ``face_images`` to
    ``target_embedding`` (goal after: close to 1); ``sim_clean_images``: cosine of each clean image's embedding
    under the original and the sanitized model (goal: 1).
    """
    metrics: dict[str, float] = {}
    if target_embedding is not None and face_images is not None:
        grouped = images_by_person(face_images)
        removed_faces = [image for name in removed_names for image in grouped.get(name, [])]
        if removed_faces:
            for label, model in (("before", original_model), ("after", sanitized_model)):
                metrics[f"sim_target_{label}"] = sim_to_target(model, processor, removed_faces, target_embedding)
    if clean_images is not None:
        metrics["sim_clean_images"] = sim_clean_images(original_model, sanitized_model, processor, list(clean_images))
    return metrics
