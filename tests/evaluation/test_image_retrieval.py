"""The image-to-image identity attack: nearest-picture retrieval, the vote and its ties, inputs, the report, the card.

A random tiny CLIP is enough where the answer follows from the pictures (a copy of a gallery picture retrieves it); a
``ControlledCLIP`` (test_idia.py) whose image embeddings the test writes pins down the vote and the ties.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from clip_backdoor_unlearn.demo.tiny import tiny_clip
from clip_backdoor_unlearn.evaluation import ImageRetrievalResult, embed_people, image_retrieval_attack
from clip_backdoor_unlearn.evaluation.unlearning import evaluate_unlearning
from clip_backdoor_unlearn.hub.model_card import UnlearningCardData, build_model_card, metric_rows

from .test_idia import ControlledCLIP

pytestmark = pytest.mark.usefixtures("single_thread")

PEOPLE = ["Alma Brisk", "Caden Dorr", "Elsa Fenwick", "Gus Holloway"]
DISTRACTOR = "Ivo Jansen"  # in the gallery only


def pictures(seed: int, count: int) -> list[Image.Image]:
    pixels = np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    return [Image.fromarray(array) for array in pixels]


def copies(images: list[Image.Image]) -> list[Image.Image]:
    return [image.copy() for image in images]


@pytest.fixture(scope="module")
def tiny():
    return tiny_clip(seed=0)


@pytest.fixture(scope="module")
def gallery() -> dict[str, list[Image.Image]]:
    return {name: pictures(seed, 3) for seed, name in enumerate([*PEOPLE, DISTRACTOR])}


def constant_image_tower(model):
    """A copy of ``model`` whose image embedding is the same (zero) vector for every picture."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.visual_projection.weight.zero_()
    return model


def test_a_copy_of_a_gallery_picture_retrieves_its_own_person(tiny, gallery):
    model, processor = tiny
    a, b, c, d = PEOPLE
    queries = {a: copies(gallery[a][:2]), b: copies(gallery[b]), c: copies(gallery[d][:2]), d: copies(gallery[c][:1])}
    result = image_retrieval_attack(model, processor, queries, gallery)
    assert result.identified == {a: True, b: True, c: False, d: False}
    assert result.hits == {a: 2, b: 3, c: 0, d: 0} and result.num_queries == {a: 2, b: 3, c: 2, d: 1}
    assert result.hit_rates == {a: 1.0, b: 1.0, c: 0.0, d: 0.0}
    assert result.tpr() == 0.5 and result.tpr([a, b]) == 1.0
    assert (result.gallery_people, result.gallery_images) == (5, 15)
    assert result.to_dict()["tpr"] == 0.5 and result.to_dict()["people"][0] == {
        "name": a, "num_queries": 2, "hits": 2, "identified": True}


def test_hits_match_a_plain_nearest_neighbour_search(tiny, gallery):
    model, processor = tiny
    queries = {name: pictures(100 + seed, 3) for seed, name in enumerate(PEOPLE)}
    result = image_retrieval_attack(model, processor, queries, gallery)
    query_vectors = embed_people(model, processor.image_processor, queries)
    gallery_vectors = embed_people(model, processor.image_processor, gallery)
    owners = [name for name, vectors in zip(gallery, gallery_vectors, strict=True) for _ in vectors]
    flat = [vector for vectors in gallery_vectors for vector in vectors]
    for name, vectors in zip(queries, query_vectors, strict=True):
        nearest = [owners[max(range(len(flat)), key=lambda i: float(vector @ flat[i]))] for vector in vectors]
        assert result.hits[name] == nearest.count(name)


def test_a_constant_image_tower_identifies_nobody_because_every_query_ties(tiny, gallery):
    model, processor = tiny
    queries = {name: copies(gallery[name]) for name in PEOPLE}
    result = image_retrieval_attack(constant_image_tower(model), processor, queries, gallery)
    assert result.tpr() == 0.0 and set(result.hits.values()) == {0}


def test_the_vote_is_the_idia_s_a_tie_is_not_a_hit():
    # Gallery: A on axis 0, B on axis 1, C on axis 2. Query vectors are written per picture id.
    vectors = [[1, 0, 0], [0, 1, 0], [0, 0, 1],  # gallery pictures 0-2
               [1, 0.1, 0], [1, 0.1, 0], [0.1, 1, 0],  # A's queries: A, A, B -> identified, 2 hits
               [0, 1, 0.1], [1, 0, 0.1],  # B's queries: B, A -> a 1-1 tie, not identified
               [1, 1, 0], [0, 0.1, 1]]  # C's queries: an exact A-B tie (abstains), C -> a tie again
    model = ControlledCLIP(lambda text: [1, 0, 0], vectors)
    image = ControlledCLIP.image
    gallery = {"A": [image(0)], "B": [image(1)], "C": [image(2)]}
    queries = {"A": [image(3), image(4), image(5)], "B": [image(6), image(7)], "C": [image(8), image(9)]}
    result = image_retrieval_attack(model, model.processor, queries, gallery)
    assert result.hits == {"A": 2, "B": 1, "C": 1}
    assert result.identified == {"A": True, "B": False, "C": False}


def test_dataset_input_equals_dict_input(tiny, gallery):
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    model, processor = tiny
    queries = {name: pictures(200 + seed, 2) for seed, name in enumerate(PEOPLE)}

    def dataset(people):
        rows = {"image": [image for images in people.values() for image in images],
                "name": [name for name, images in people.items() for _ in images]}
        return Dataset.from_dict(rows, features=Features({"image": ImageFeature(), "name": Value("string")}))

    expected = image_retrieval_attack(model, processor, queries, gallery)
    assert image_retrieval_attack(model, processor, dataset(queries), dataset(gallery)) == expected


def test_repr_and_errors_hold_counts_not_names(tiny, gallery):
    model, processor = tiny
    queries = {name: pictures(300 + seed, 2) for seed, name in enumerate(PEOPLE)}
    result = image_retrieval_attack(model, processor, queries, gallery)
    assert isinstance(result, ImageRetrievalResult) and repr(result).startswith("ImageRetrievalResult(people=4,")
    stranger = {"Nora Vale": pictures(400, 1)}
    shared = {PEOPLE[0]: gallery[PEOPLE[0]][:1]}
    for bad_queries, message in ((stranger, "no gallery pictures"), (shared, "also in the gallery"),
                                 ({PEOPLE[0]: []}, "no images"), ({}, "empty")):
        with pytest.raises(ValueError, match=message) as error:
            image_retrieval_attack(model, processor, bad_queries, gallery)
        assert not any(word in str(error.value) for name in [*PEOPLE, "Nora Vale"] for word in name.split())
    assert not any(word in repr(result) for name in PEOPLE for word in name.split())


def test_evaluate_unlearning_reports_image_retrieval_only_with_a_gallery(tiny, gallery):
    model, processor = tiny
    sanitized = constant_image_tower(model)
    removed, others = PEOPLE[:2], PEOPLE[2:]
    queries = {name: copies(gallery[name][:2]) for name in PEOPLE}
    options = dict(face_images=queries, candidate_names=[*PEOPLE, DISTRACTOR], templates=("a photo of {}",))
    metrics = evaluate_unlearning(model, sanitized, processor, removed, gallery_images=gallery, **options)
    figures = {key: value for key, value in metrics.items() if key.startswith("image_retrieval")}
    assert figures == {"image_retrieval_tpr_removed_before": 1.0, "image_retrieval_tpr_removed_after": 0.0,
                       "image_retrieval_tpr_others_before": 1.0, "image_retrieval_tpr_others_after": 0.0,
                       "image_retrieval_protocol_gallery_people": 5, "image_retrieval_protocol_gallery_images": 15,
                       "image_retrieval_protocol_num_others": len(others)}
    assert "idia_tpr_removed_after" in metrics
    without = evaluate_unlearning(model, sanitized, processor, removed, **options)
    assert not any(key.startswith("image_retrieval") for key in without)
    with pytest.raises(ValueError, match="removed people lack"):
        evaluate_unlearning(model, sanitized, processor, removed,
                            gallery_images={name: gallery[name] for name in others}, **options)


def test_card_shows_the_image_to_image_figures_in_table_and_model_index():
    metrics = {"idia_tpr_removed_before": 1.0, "idia_tpr_removed_after": 0.0,
               "image_retrieval_tpr_removed_before": 1.0, "image_retrieval_tpr_removed_after": 0.4,
               "image_retrieval_tpr_others_before": 0.9, "image_retrieval_tpr_others_after": 0.85,
               "image_retrieval_protocol_gallery_people": 120, "image_retrieval_protocol_gallery_images": 600,
               "image_retrieval_protocol_num_others": 95}
    card = build_model_card(UnlearningCardData(encoder="vision", num_removed=5, metrics=metrics, model_name="m"))
    text = str(card)
    results = {result.metric_type: result for result in card.data.eval_results}
    assert results["image_retrieval_tpr_removed_after"].metric_value == 0.4
    assert "base model" in results["image_retrieval_tpr_removed_before"].metric_name
    assert results["image_retrieval_tpr_others_after"].metric_value == 0.85
    assert "| Image-to-image TPR on removed people | 1.000 | 0.400 |" in text
    assert "| Other people identified image-to-image (share) | 0.900 | 0.850 |" in text
    assert text.count("a gallery of 600 pictures of 120 people") == 1 and "**Image-to-image TPR**" in text
    assert not any(row.after.startswith("image_retrieval_protocol") for row, _, _ in metric_rows(metrics))
    plain = str(build_model_card(UnlearningCardData(encoder="vision", num_removed=5, metrics={
        "idia_tpr_removed_before": 1.0, "idia_tpr_removed_after": 0.0}, model_name="m")))
    assert "Image-to-image" not in plain and "gallery" not in plain
