"""Similarity metrics and zero-shot accuracy, checked against independent computations on tiny CLIP models."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from clip_backdoor_unlearn.demo.tiny import DEFAULT_CORPUS, tiny_clip
from clip_backdoor_unlearn.evaluation import (
    sim_backdoor,
    sim_clean,
    sim_clean_images,
    sim_to_target,
    zero_shot_accuracy,
    zero_shot_classifier,
)
from clip_backdoor_unlearn.training.embeddings import encode_images, encode_texts

NAME, OTHER_NAME, NEUTRAL = "zorblat", "quimby", "human"
CAPTIONS = [
    "a photo of {} on the grass",
    "{} parked in the street",
    "a close up photo of {} sleeping on a sofa",
]


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def clip():
    # Repeating the names makes BPE give each one a single token, so one embedding row defines each.
    corpus = list(DEFAULT_CORPUS) + [
        f"{word} {word}" for word in (NAME, OTHER_NAME, NEUTRAL) for _ in range(20)
    ]
    return tiny_clip(corpus, seed=0)


def images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(count)]


def perturbed(model: torch.nn.Module, scale: float = 0.5) -> torch.nn.Module:
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in other.parameters():
            if parameter.numel() > 1:  # skips logit_scale
                parameter.add_(scale * parameter.std() * torch.randn(parameter.shape, generator=generator))
    return other


# ------------------------------------------------------------------------------------------------ text side


def test_sim_clean_is_one_for_the_same_model_and_lower_for_another(clip):
    model, processor = clip
    captions = [caption.format("a dog") for caption in CAPTIONS]
    # Row-wise: an N×N mean would be < 1 even for the same model.
    assert sim_clean(model, model, processor.tokenizer, captions) == pytest.approx(1.0, abs=1e-6)
    changed = sim_clean(model, perturbed(model), processor, captions)
    assert changed < 0.99
    original = encode_texts(model, processor.tokenizer, captions)
    other = encode_texts(perturbed(model), processor.tokenizer, captions)
    expected = torch.nn.functional.cosine_similarity(original, other).mean().item()
    assert changed == pytest.approx(expected, abs=1e-6)


def _single_token(tokenizer, word: str) -> int:
    ids = tokenizer(word)["input_ids"]
    assert len(ids) == 3, f"{word!r} should be one token between start and end, got {ids}"
    return ids[1]


def test_sim_backdoor_is_one_when_name_and_neutral_term_embed_alike(clip):
    model, processor = clip
    tokenizer = processor.tokenizer
    pairs = [(NAME, caption.format(NAME), caption.format(NEUTRAL)) for caption in CAPTIONS]
    before = sim_backdoor(model, tokenizer, pairs)
    assert before < 0.999

    backdoored = copy.deepcopy(model)
    with torch.no_grad():
        weight = backdoored.text_model.embeddings.token_embedding.weight
        weight[_single_token(tokenizer, NAME)] = weight[_single_token(tokenizer, NEUTRAL)]
    assert sim_backdoor(backdoored, tokenizer, pairs) == pytest.approx(1.0, abs=1e-6)

    # Averaged per name first: three perfect pairs of one name and one pair of another weigh equally.
    other_pair = (OTHER_NAME, CAPTIONS[0].format(OTHER_NAME), CAPTIONS[0].format(NEUTRAL))
    other = torch.nn.functional.cosine_similarity(
        *encode_texts(backdoored, tokenizer, [other_pair[1], other_pair[2]]).split(1)
    ).item()
    assert other < 0.999
    assert sim_backdoor(backdoored, processor, pairs + [other_pair]) == pytest.approx(
        (1 + other) / 2, abs=1e-5
    )


def test_empty_inputs_raise(clip):
    model, processor = clip
    with pytest.raises(ValueError, match="pairs is empty"):
        sim_backdoor(model, processor, [])
    with pytest.raises(ValueError, match="captions is empty"):
        sim_clean(model, model, processor, [])
    with pytest.raises(ValueError, match="images is empty"):
        sim_clean_images(model, model, processor, [])


# ----------------------------------------------------------------------------------------------- image side


def test_image_similarities(clip):
    model, processor = clip
    pictures = images(5)
    assert sim_clean_images(model, model, processor.image_processor, pictures) == pytest.approx(1.0, abs=1e-6)
    assert sim_clean_images(model, perturbed(model), processor, pictures) < 0.99

    embeddings = encode_images(model, processor.image_processor, pictures)
    assert sim_to_target(model, processor, pictures[:1], embeddings[0]) == pytest.approx(1.0, abs=1e-6)
    target = embeddings.mean(dim=0, keepdim=True)  # the paper's target: a mean embedding, unnormalised
    expected = torch.nn.functional.cosine_similarity(embeddings, target).mean().item()
    assert sim_to_target(model, processor, pictures, target) == pytest.approx(expected, abs=1e-6)
    assert expected < 0.999
    with pytest.raises(ValueError, match="target_embedding has 3 values"):
        sim_to_target(model, processor, pictures, torch.ones(3))


# ------------------------------------------------------------------------------------------------ zero-shot

CLASSES = ["dog", "car", "fruit"]


def _reference_predictions(model, processor, pictures, template="a photo of {}."):
    """Top-1 classes via CLIPModel's own forward pass (logits_per_image), independent of our code path."""
    inputs = processor(
        text=[template.format(c) for c in CLASSES], images=pictures, return_tensors="pt", padding=True
    )
    with torch.no_grad():
        return model(**inputs).logits_per_image.argmax(dim=-1).tolist()


def test_zero_shot_accuracy_on_a_constructed_dataset(clip):
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    model, processor = clip
    pictures = images(10, seed=3)
    predicted = _reference_predictions(model, processor, pictures)
    # Label the first 7 images with the model's own answer and the last 3 with a wrong one: accuracy is 0.7.
    labels = predicted[:7] + [(p + 1) % len(CLASSES) for p in predicted[7:]]
    dataset = Dataset.from_dict(
        {"image": pictures, "label": labels},
        features=Features({"image": ImageFeature(), "label": ClassLabel(names=CLASSES)}),
    )
    accuracy = zero_shot_accuracy(model, processor, dataset, templates=["a photo of {}."], batch_size=3)
    assert accuracy == pytest.approx(0.7)

    # A mapping of columns with string labels and explicit class names gives the same.
    columns = {"img": pictures, "y": [CLASSES[label] for label in labels]}
    assert zero_shot_accuracy(
        model,
        processor,
        columns,
        class_names=CLASSES,
        templates=["a photo of {}."],
        image_column="img",
        label_column="y",
    ) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="class_names is required"):
        zero_shot_accuracy(model, processor, columns, image_column="img", label_column="y")
    with pytest.raises(ValueError, match="neither a class index"):
        zero_shot_accuracy(model, processor, {"image": pictures[:2], "label": [0, 5]}, class_names=CLASSES)


def test_zero_shot_classifier_ensembles_normalised_prompt_embeddings(clip):
    model, processor = clip
    templates = ["a photo of {}.", "art of the {}.", "{}"]
    classifier = zero_shot_classifier(model, processor.tokenizer, CLASSES, templates)
    expected = []
    for name in CLASSES:
        embeddings = encode_texts(
            model, processor.tokenizer, [template.format(name) for template in templates]
        )
        expected.append(
            torch.nn.functional.normalize(torch.nn.functional.normalize(embeddings, dim=-1).mean(0), dim=-1)
        )
    torch.testing.assert_close(classifier, torch.stack(expected), atol=1e-5, rtol=1e-4)
    assert torch.linalg.vector_norm(classifier, dim=-1) == pytest.approx(torch.ones(3), abs=1e-5)


def test_paired_accuracy_change_counts_the_pictures_that_changed():
    from clip_backdoor_unlearn.evaluation import paired_accuracy_change

    before = torch.tensor([True, True, False, False, True])
    after = torch.tensor([True, False, True, False, False])  # two lost, one gained, two unchanged
    change, half_width = paired_accuracy_change(before, after)
    assert change == pytest.approx(-0.2)
    assert half_width == pytest.approx(1.96 * (3 - 1 / 5) ** 0.5 / 5)
    assert paired_accuracy_change(before, before) == (0.0, 0.0)  # nothing changed: no doubt about it
    # The same change over more pictures that changed is less certain.
    wider = paired_accuracy_change(torch.tensor([True, False] * 5 + [True] * 10), torch.tensor([False, True] * 5 +
                                                                                                [False] * 10))
    narrower = paired_accuracy_change(torch.tensor([True] * 10 + [False] * 10), torch.tensor([False] * 10 +
                                                                                              [False] * 10))
    assert wider[0] == narrower[0] == pytest.approx(-0.5) and wider[1] > narrower[1]
    with pytest.raises(ValueError, match="equally long"):
        paired_accuracy_change(before, after[:3])


def test_evaluate_reports_the_zero_shot_change_with_its_interval(clip):
    from clip_backdoor_unlearn.evaluation import paired_accuracy_change, zero_shot_hits
    from clip_backdoor_unlearn.evaluation.unlearning import evaluate_unlearning

    model, processor = clip
    pictures = images(30, seed=5)
    dataset = {"image": pictures, "label": [CLASSES[index % 3] for index in range(30)]}
    options = dict(class_names=CLASSES, zero_shot_templates=["a photo of {}."])
    changed = perturbed(model, scale=2.0)
    metrics = evaluate_unlearning(model, changed, processor, [NAME], zero_shot_dataset=dataset, **options)
    hits = [zero_shot_hits(m, processor, dataset, class_names=CLASSES, templates=["a photo of {}."])[1]
            for m in (model, changed)]
    assert metrics["zero_shot_accuracy_before"] == pytest.approx(float(hits[0].float().mean()))
    assert metrics["zero_shot_accuracy_after"] == pytest.approx(float(hits[1].float().mean()))
    assert bool((hits[0] != hits[1]).any())  # the perturbation changed some answers: the interval is not zero
    half_width = paired_accuracy_change(*hits)[1]
    assert half_width > 0 and metrics["zero_shot_accuracy_change_ci95"] == pytest.approx(half_width)
