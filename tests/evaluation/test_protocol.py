"""IDIA protocols, the default candidate pool, top-k zero-shot accuracy and the card's protocol sentence."""

from __future__ import annotations

import pytest
from PIL import Image

from clip_backdoor_unlearn.evaluation.protocol import (
    IDIA_PROTOCOLS,
    apply_protocol,
    default_candidate_pool,
    idia_protocol,
)
from clip_backdoor_unlearn.evaluation.templates import OPENAI_IMAGENET_TEMPLATES, validate_templates
from clip_backdoor_unlearn.hub.model_card import idia_protocol_text, metric_rows


def test_default_pool_holds_the_people_and_invented_names_of_the_same_shape():
    people = ["Ada Lovelace", "Zorbo Quill"]
    pool = default_candidate_pool(people, 1000)
    assert pool[:2] == people and len(pool) == len(set(pool)) == 1000
    assert all(len(name.split()) == 2 for name in pool)
    words = {"ada", "lovelace", "zorbo", "quill"}
    assert not any(word.lower() in words for name in pool[2:] for word in name.split())
    assert default_candidate_pool(people, 1000) == pool  # the same for the same inputs


def test_paper_protocol_fills_the_pool_and_caps_the_pictures():
    faces = {"Ada Lovelace": [Image.new("RGB", (4, 4))] * 30}
    paper = idia_protocol("paper")
    assert (paper.pool_size, paper.images_per_person, paper.min_correct_prompts, len(paper.templates)) == (
        1000, 20, 1, 21)
    capped, pool = apply_protocol(paper, faces, ["Ada Lovelace", "Zorbo Quill"])
    assert len(capped["Ada Lovelace"]) == 20 and len(pool) == 1000 and pool[:2] == ["Ada Lovelace", "Zorbo Quill"]
    kept, pool = apply_protocol(IDIA_PROTOCOLS["project"], faces, ["Ada Lovelace", "Zorbo Quill"])
    assert len(kept["Ada Lovelace"]) == 30 and pool == ["Ada Lovelace", "Zorbo Quill"]
    _, pool = apply_protocol(IDIA_PROTOCOLS["project"], faces, None)
    assert len(pool) == 1000
    with pytest.raises(ValueError, match="Unknown IDIA protocol"):
        idia_protocol("nope")


def test_eighty_prompt_ensemble_is_valid():
    assert len(validate_templates(OPENAI_IMAGENET_TEMPLATES)) == 80


def test_card_states_the_protocol_and_keeps_it_out_of_the_figures():
    metrics = {"idia_tpr_removed_before": 1.0, "idia_tpr_removed_after": 0.0, "idia_protocol": "paper",
               "idia_protocol_pool_size": 1000, "idia_protocol_default_pool": True, "idia_protocol_num_prompts": 21,
               "idia_protocol_images_per_person": 20, "idia_protocol_images_per_person_max": 20,
               "idia_protocol_min_correct_prompts": 1}
    text = idia_protocol_text(metrics)
    assert "`paper` protocol: a pool of 1000 candidate names" in text and "20 pictures per person" in text
    assert [row.after for row, _, _ in metric_rows(metrics)] == ["idia_tpr_removed_after"]
    assert idia_protocol_text({"idia_tpr_removed_after": 0.0}) is None


def test_top5_accuracy_counts_the_five_nearest_classes(tiny_model_and_processor):
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    from clip_backdoor_unlearn.evaluation.zero_shot import zero_shot_accuracy, zero_shot_topk_accuracy

    model, processor = tiny_model_and_processor
    names = ["dog", "cat", "bird", "car", "tree", "house", "boat"]
    images = [Image.new("RGB", (32, 32), (index * 30, 0, 0)) for index in range(7)]
    dataset = Dataset.from_dict({"image": images, "label": list(range(7))},
                                features=Features({"image": ImageFeature(), "label": ClassLabel(names=names)}))
    accuracy = zero_shot_topk_accuracy(model, processor, dataset, top_k=(1, 5), templates="openai_imagenet_80")
    assert set(accuracy) == {1, 5} and accuracy[1] <= accuracy[5]
    assert accuracy[1] == zero_shot_accuracy(model, processor, dataset, templates=OPENAI_IMAGENET_TEMPLATES)
